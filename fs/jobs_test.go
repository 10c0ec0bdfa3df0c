package fs

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// startProc runs a real process that allocates memMiB and runs until its
// stdin closes (stop) or it is killed; it is reaped in t.Cleanup.
func startProc(t *testing.T, memMiB int) (pid int, stop func()) {
	t.Helper()
	script := "import sys\nb = bytearray(" + strconv.Itoa(memMiB) + " << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ready', flush=True)\nsys.stdin.read()\n"
	cmd := exec.Command("python3", "-c", script)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make([]byte, 6)
	if _, err := io.ReadFull(out, ready); err != nil || string(ready) != "ready\n" {
		t.Fatalf("helper process did not start: %q %v", ready, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd.Process.Pid, func() { in.Close(); <-done }
}

func mkdevice(t *testing.T, tt *testTree, model string) string {
	t.Helper()
	if err := os.Mkdir(tt.path("devices", model), 0o755); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(readFile(t, tt.path("current")))
}

func TestJobBindsAndReleasesGPUs(t *testing.T) {
	tt := mountTree(t, store.Options{})
	id := mkdevice(t, tt, "Medium.128GB")
	pid, stop := startProc(t, 200)
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if got := readFile(t, tt.path("devices", id, "procs")); got != strconv.Itoa(pid)+"\n" {
		t.Errorf("procs = %q", got)
	}
	if got := readFile(t, tt.path("devices", id, "gpus")); got != "0\tSIM-00000000\tSimulated GPU\n1\tSIM-00000001\tSimulated GPU\n" {
		t.Errorf("gpus = %q", got)
	}
	if got := readFile(t, tt.path("devices", id, "env")); got != "CUDA_VISIBLE_DEVICES=0,1\nHIP_VISIBLE_DEVICES=0,1\nMOREH_DEVICE=2026\n" {
		t.Errorf("env = %q", got)
	}
	pool := readFile(t, tt.path("pool"))
	if !strings.HasPrefix(pool, "0 1 2026 ") || !strings.Contains(pool, "\n1 1 2026 ") || !strings.Contains(pool, "\n2 1 - 0 65536 ") {
		t.Errorf("pool does not show GPUs 0 and 1 bound to 2026:\n%s", pool)
	}
	// The sim reports the process's resident memory as its GPU memory.
	morehdtest.Eventually(t, 5*time.Second, "the process's memory shows in usage", func() bool {
		var used int
		for _, line := range strings.Split(readFile(t, tt.path("devices", id, "usage")), "\n") {
			if v, ok := strings.CutPrefix(line, "memory_used_mib "); ok {
				used, _ = strconv.Atoi(v)
			}
		}
		return used >= 190
	})
	status := readFile(t, tt.path("devices", id, "status"))
	row := "|    2026  |       1  |  " + strconv.Itoa(pid) + "  |  python3  |"
	if !strings.Contains(status, row) {
		t.Errorf("status lacks the process row %q:\n%s", row, status)
	}
	if strings.Contains(status, "|  -            |") {
		t.Errorf("a running job still shows no utilisation:\n%s", status)
	}

	stop()
	morehdtest.Eventually(t, time.Second, "the GPUs are back in the pool within a second", func() bool {
		return !strings.Contains(readFile(t, tt.path("pool")), "2026")
	})
	if got := readFile(t, tt.path("devices", id, "gpus")); got != "" {
		t.Errorf("gpus after the job = %q", got)
	}
	if got := readFile(t, tt.path("devices", id, "usage")); got != "memory_used_mib 0\nmemory_total_mib 131040\nutilization -\n" {
		t.Errorf("usage after the job = %q", got)
	}
}

func TestJobFollowsChildren(t *testing.T) {
	tt := mountTree(t, store.Options{})
	id := mkdevice(t, tt, "Small.64GB")
	// The shell attaches itself, starts a child that outlives it, and exits.
	script := `echo $$ > "$1/devices/$2/procs" || exit 1
sleep 30 >/dev/null 2>&1 &
echo $!
sleep 0.3`
	out, err := exec.Command("bash", "-c", script, "bash", tt.dir, id).Output()
	if err != nil {
		t.Fatalf("attach script: %v", err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	defer syscall.Kill(child, syscall.SIGKILL)
	morehdtest.Eventually(t, 2*time.Second, "the child alone is the job", func() bool {
		return readFile(t, tt.path("devices", id, "procs")) == strconv.Itoa(child)+"\n"
	})
	if !strings.Contains(readFile(t, tt.path("pool")), " 2026 ") {
		t.Fatal("the job ended although its child runs")
	}
	syscall.Kill(child, syscall.SIGKILL)
	morehdtest.Eventually(t, time.Second, "the job ends with its last process", func() bool {
		return !strings.Contains(readFile(t, tt.path("pool")), "2026")
	})
}

func TestJobErrnos(t *testing.T) {
	tt := mountTree(t, store.Options{}) // the pool: 4 simulated 64 GB GPUs, 4 units
	large := mkdevice(t, tt, "Large.256GB")
	small := mkdevice(t, tt, "Small.64GB")
	huge := mkdevice(t, tt, "xLarge.512GB")
	pid, _ := startProc(t, 1)
	if err := writeFile(tt.path("devices", large, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	other, _ := startProc(t, 1)
	cases := []struct {
		name   string
		op     func() error
		errno  syscall.Errno
		logged string
	}{
		{"rmdir while running", func() error { return syscall.Rmdir(tt.path("devices", large)) }, syscall.EBUSY, "Device 2026 is running job 1: stop it first (moreh-smi -r)."},
		{"model change while running", func() error { return writeFile(tt.path("devices", large, "model"), "Small.64GB") }, syscall.EBUSY, "The model cannot be switched while the KT AI Accelerator is in use."},
		{"job of a process in none", func() error { _, err := os.ReadFile(tt.path("devices", small, "job")); return err }, syscall.ESRCH, "is in no job of device 2027: write its pid to procs first."},
		{"never fits", func() error { return writeFile(tt.path("devices", huge, "procs"), strconv.Itoa(other)) }, syscall.ENOSPC, "Device 2028 (xLarge.512GB) needs 8 GPU units; the whole pool has 4."},
		{"no such pid", func() error { return writeFile(tt.path("devices", small, "procs"), "999999999") }, syscall.ESRCH, "No process 999999999 is running."},
		{"not a pid", func() error { return writeFile(tt.path("devices", small, "procs"), "-5") }, syscall.EINVAL, `"-5" is not a pid`},
		{"reset without a job", func() error { return writeFile(tt.path("devices", small, "reset"), "1") }, syscall.ESRCH, "Device 2027 is not running a job."},
		{"reset with a word", func() error { return writeFile(tt.path("devices", large, "reset"), "yes") }, syscall.EINVAL, "Write 1 to reset"},
		{"read reset", func() error { _, err := os.ReadFile(tt.path("devices", large, "reset")); return err }, syscall.EACCES, "open tokens/default/devices/2026/reset: Permission denied"},
	}
	for _, c := range cases {
		before := fingerprint(t, tt)
		poolBefore := readFile(t, tt.path("pool"))
		err := c.op()
		if !errors.Is(err, c.errno) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.errno)
			continue
		}
		lines := errorLines(t, tt)
		if last := lines[len(lines)-1]; !strings.Contains(last, c.logged) {
			t.Errorf("%s: errors line %q lacks %q", c.name, last, c.logged)
		}
		if fingerprint(t, tt) != before || !samePoolBindings(poolBefore, readFile(t, tt.path("pool"))) {
			t.Errorf("%s changed the state", c.name)
		}
	}
}

// samePoolBindings compares the GPU → device columns of two pool files.
func samePoolBindings(a, b string) bool {
	cols := func(s string) (out []string) {
		for _, line := range strings.Split(s, "\n") {
			if f := strings.Fields(line); len(f) > 3 {
				out = append(out, f[0]+" "+f[2])
			}
		}
		return out
	}
	return strings.Join(cols(a), ",") == strings.Join(cols(b), ",")
}

func TestResetStopsTheJob(t *testing.T) {
	tt := mountTree(t, store.Options{}) // reset grace: 1s
	id := mkdevice(t, tt, "Small.64GB")
	// A job that ignores SIGTERM: reset must SIGKILL it after the grace.
	cmd := exec.Command("bash", "-c", `trap '' TERM; echo ready; while :; do sleep 0.05; done`)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	io.ReadFull(out, make([]byte, 6))
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(tt.path("devices", id, "reset"), "1\n"); err != nil {
		t.Fatalf("reset: %v", err)
	}
	// The write returns once the job is gone and its GPU released.
	if got := readFile(t, tt.path("devices", id, "gpus")); got != "" {
		t.Errorf("gpus after reset = %q", got)
	}
	select {
	case err := <-done:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the job ended with %v, want SIGKILL after ignoring SIGTERM", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the job still runs after reset")
	}
	if err := syscall.Rmdir(tt.path("devices", id)); err != nil {
		t.Errorf("rmdir after reset: %v", err)
	}
}

// TestAttachMovesTheProcess: a process is in one job at a time, as with
// cgroups: attaching it to another device moves it.
func TestAttachMovesTheProcess(t *testing.T) {
	tt := mountTree(t, store.Options{})
	first := mkdevice(t, tt, "Small.64GB")
	second := mkdevice(t, tt, "Small.64GB")
	pid, _ := startProc(t, 1)
	for _, id := range []string{first, second} {
		if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(pid)); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, tt.path("devices", first, "procs")); got != "" {
		t.Errorf("the first device still lists the moved process: %q", got)
	}
	if got := readFile(t, tt.path("devices", first, "gpus")); got != "" {
		t.Errorf("the first device's job did not end with its only process: gpus %q", got)
	}
	if got := readFile(t, tt.path("devices", second, "procs")); got != strconv.Itoa(pid)+"\n" {
		t.Errorf("second procs = %q", got)
	}
}
