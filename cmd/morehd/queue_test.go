package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// TestQueueSurvivesSIGKILL: jobs waiting in the queue keep their order,
// positions and waiting time across a SIGKILL of the daemon, their
// processes are still confined, and the first of them starts when the
// running job ends after the restart.
func TestQueueSurvivesSIGKILL(t *testing.T) {
	d := morehdtest.Start(t, "--gpus", "sim:1x64GB")
	for range 4 {
		if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	running, _ := startJobProc(t)
	attach(t, d, "2026", running.Process.Pid)
	for _, id := range []string{"2027", "2028", "2029"} {
		p, _ := startJobProc(t)
		attach(t, d, id, p.Process.Pid)
	}
	before := read(t, d.Path("queue"))
	if lines := strings.Split(strings.TrimSuffix(before, "\n"), "\n"); len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "1 2 default 2027 Small.64GB 1 ") || !strings.HasPrefix(lines[2], "3 4 default 2029 Small.64GB 1 ") {
		t.Fatalf("queue before the kill:\n%s", before)
	}
	d.Kill()
	d.Restart()
	if after := read(t, d.Path("queue")); after != before {
		t.Fatalf("queue after SIGKILL and restart:\n%s\nwant:\n%s", after, before)
	}
	running.Process.Kill()
	running.Wait()
	morehdtest.Eventually(t, 10*time.Second, "the head starts once the running job ended", func() bool {
		return read(t, d.Path("devices", "2027", "gpus")) != ""
	})
	q := strings.Split(strings.TrimSuffix(read(t, d.Path("queue")), "\n"), "\n")
	if len(q) != 2 || !strings.HasPrefix(q[0], "1 3 default 2028 ") || !strings.HasPrefix(q[1], "2 4 default 2029 ") {
		t.Errorf("queue after the head started = %q, want jobs 3 and 4 at positions 1 and 2", q)
	}
}

// TestNoStarvation: on a pool of 4 GPUs, three shells run 1-GPU jobs of
// about a second back to back with moreh-run; a 4-GPU job that arrives
// starts within a second of the end of the last small job that was running
// when it came (the head's hold: without it the small jobs would take each
// freed GPU), and the small jobs run again after it.
func TestNoStarvation(t *testing.T) {
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	run, err := filepath.Abs("../../scripts/moreh-run")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(d.Path("devices", "Large.256GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "MOREH_ROOT="+d.Mount)
	for _, id := range []string{"2026", "2027", "2028"} {
		loop := exec.Command("bash", "-c", `while :; do "$1" -i "$2" -- sleep 1 2>/dev/null || exit 1; done`, "loop", run, id)
		loop.Env = env
		loop.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := loop.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-loop.Process.Pid, syscall.SIGKILL); loop.Wait() })
	}
	history := func() []store.HistoryEntry {
		var h []store.HistoryEntry
		if err := json.Unmarshal([]byte(read(t, d.Path("tokens", "default", "history.json"))), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	morehdtest.Eventually(t, 30*time.Second, "the small jobs run back to back", func() bool { return len(history()) >= 3 })
	big := exec.Command(run, "-i", "2029", "--", "sleep", "1")
	big.Env = env
	if out, err := big.CombinedOutput(); err != nil || !strings.Contains(string(out), "[info] Moreh Job ID: ") {
		t.Fatalf("the 4-GPU job: %v\n%s", err, out)
	}
	var bigJob store.HistoryEntry
	morehdtest.Eventually(t, 30*time.Second, "small jobs after the 4-GPU job", func() bool {
		h := history()
		for _, e := range h {
			if e.Device == 2029 {
				bigJob = e
			}
		}
		if bigJob.Job == 0 {
			return false
		}
		for _, e := range h {
			if e.Device != 2029 && e.Started.After(bigJob.Ended) {
				return true
			}
		}
		return false
	})
	arrived := bigJob.Started.Add(-time.Duration(bigJob.WaitedMillis) * time.Millisecond)
	var lastEnd time.Time
	for _, e := range history() {
		if e.Device != 2029 && e.Started.Before(arrived) && e.Ended.After(arrived) && e.Ended.After(lastEnd) {
			lastEnd = e.Ended
		}
	}
	if lastEnd.IsZero() {
		t.Fatalf("no small job ran when the 4-GPU job arrived at %v: %+v", arrived, history())
	}
	t.Logf("the 4-GPU job waited %v; it started %v after the last small job running at its arrival ended", time.Duration(bigJob.WaitedMillis)*time.Millisecond, bigJob.Started.Sub(lastEnd))
	if bigJob.Started.After(lastEnd.Add(time.Second)) {
		t.Errorf("the 4-GPU job arrived at %v and started at %v, more than a second after the running small jobs ended (%v)",
			arrived, bigJob.Started, lastEnd)
	}
	for _, e := range history() {
		if e.Device != 2029 && e.Started.After(arrived) && e.Started.Before(bigJob.Started) {
			t.Errorf("small job %d started at %v, after the 4-GPU job arrived (%v) and before it started (%v)", e.Job, e.Started, arrived, bigJob.Started)
		}
	}
}

// TestWaitingJobOpensNoGPU: a waiting job's processes are in its cgroup,
// whose device filter allows no GPU node; once the job starts (a child
// blocked on the job file returns) the filter allows its bound GPU.
func TestWaitingJobOpensNoGPU(t *testing.T) {
	devDir := t.TempDir()
	if err := syscall.Mknod(filepath.Join(devDir, "nvidia0"), syscall.S_IFCHR|0o666, int(195<<8)); err != nil {
		t.Skipf("mknod: %v", err)
	}
	d := startContained(t, "--gpus", "sim:1", "--sim-dev-dir", devDir)
	first, second := mkdev(t, d, "Small.64GB"), mkdev(t, d, "Small.64GB")
	running, _ := startJobProc(t)
	attach(t, d, first, running.Process.Pid)
	try := `python3 -c '
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR))
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
' "$D/nvidia0"`
	cmd := exec.Command("bash", "-c", `read _; `+try+`; cat "$J"; `+try)
	cmd.Env = append(os.Environ(), "D="+devDir, "J="+d.Path("devices", second, "job"))
	gate, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	attach(t, d, second, cmd.Process.Pid)
	if q := read(t, d.Path("queue")); !strings.HasPrefix(q, "1 2 default "+second+" ") {
		t.Fatalf("queue = %q, want the second job", q)
	}
	gate.Write([]byte("go\n"))
	lines := bufio.NewReader(out)
	if l, err := lines.ReadString('\n'); err != nil || l != "EPERM\n" {
		t.Fatalf("the waiting job's open of its GPU node gave %q, %v; want EPERM", l, err)
	}
	running.Process.Kill()
	running.Wait()
	rest, _ := io.ReadAll(lines)
	if want := "job 2\nstate running\nENXIO\n"; string(rest) != want {
		t.Errorf("once started the job read and opened:\n%swant (its job file, then the driver's answer):\n%s", rest, want)
	}
}
