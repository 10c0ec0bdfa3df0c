package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// peakJob is a python job that, on each line it reads, does the next step
// of steps (python code) and prints "ok".
func peakJob(t *testing.T, steps ...string) (pid int, next func()) {
	t.Helper()
	script := "import sys\nsteps = " + fmt.Sprintf("%q", steps) + "\nfor s in steps:\n    sys.stdin.readline()\n    exec(s)\n    print('ok', flush=True)\nsys.stdin.readline()\n"
	cmd := exec.Command("python3", "-c", script)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Skipf("python3: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(out)
	step := 0
	return cmd.Process.Pid, func() {
		t.Helper()
		if step == len(steps) { // the last line: the job exits
			in.Close()
			cmd.Wait()
			return
		}
		fmt.Fprintln(in, "go")
		if line, err := r.ReadString('\n'); line != "ok\n" {
			t.Fatalf("step %d of the job: %q, %v", step, line, err)
		}
		step++
	}
}

// historyPeak is the peak memory the history records for the token's one job.
func historyPeak(t *testing.T, d *morehdtest.Daemon) uint64 {
	t.Helper()
	var history []struct {
		PeakMiB uint64 `json:"peak_memory_mib"`
	}
	if err := json.Unmarshal([]byte(read(t, d.Path("tokens", "default", "history.json"))), &history); err != nil || len(history) != 1 {
		t.Fatalf("history.json: %v (%d entries), want one", err, len(history))
	}
	return history[0].PeakMiB
}

// TestJobPeakMemory: the sim shows a job's resident memory as its GPU
// memory, and the job's history records the most it held: with the memory
// controller, the cgroup's memory.peak, so memory freed before any sample
// counts; without it, the highest sample of its processes.
func TestJobPeakMemory(t *testing.T) {
	t.Run("held until sampled", func(t *testing.T) {
		d := startContained(t, "--gpus", "sim:1x64GB", "--sample-interval", "50ms")
		id := mkdev(t, d, "Small.64GB")
		pid, job := peakJob(t, "held = bytearray(96 << 20)")
		attach(t, d, id, pid)
		job() // 96 MiB, touched, held
		morehdtest.Eventually(t, 10*time.Second, "a sample shows the job's 96 MiB", func() bool {
			var used uint64
			fmt.Sscanf(read(t, d.Path("devices", id, "usage")), "memory_used_mib %d", &used)
			return used >= 96
		})
		job() // exits
		morehdtest.Eventually(t, 5*time.Second, "the job is released", func() bool { return !bound(t, d, id) })
		if peak := historyPeak(t, d); peak < 96 || peak > 1024 {
			t.Errorf("history's peak memory = %d MiB, want its 96 MiB and the interpreter's (at most 1 GiB)", peak)
		}
	})
	t.Run("freed before any sample", func(t *testing.T) {
		d := startContained(t, "--gpus", "sim:1x64GB", "--sample-interval", "1h")
		if b, err := os.ReadFile(filepath.Join(d.CgroupDir, "cgroup.subtree_control")); err != nil || !slices.Contains(strings.Fields(string(b)), "memory") {
			t.Skipf("the jobs' cgroups get no memory controller here (%q, %v): memory.peak is not kept", b, err)
		}
		id := mkdev(t, d, "Small.64GB")
		pid, job := peakJob(t, "b = bytearray(128 << 20); del b")
		attach(t, d, id, pid)
		job() // 128 MiB touched and freed: no sample ran since the attach's
		job() // exits
		morehdtest.Eventually(t, 5*time.Second, "the job is released", func() bool { return !bound(t, d, id) })
		if peak := historyPeak(t, d); peak < 128 {
			t.Errorf("history's peak memory = %d MiB, want at least the 128 MiB memory.peak kept", peak)
		}
	})
}
