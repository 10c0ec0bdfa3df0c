package main

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// startJobProc starts a process that runs until its stdin closes.
func startJobProc(t testing.TB) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, in
}

func attach(t testing.TB, d *morehdtest.Daemon, id string, pid int) {
	t.Helper()
	if err := os.WriteFile(d.Path("devices", id, "procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("attach %d to %s: %v", pid, id, err)
	}
}

// TestJobsAcrossRestart: a job whose process died while the daemon was down
// is released at start; a live one is kept and released when it ends.
func TestJobsAcrossRestart(t *testing.T) {
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	for range 2 {
		if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	live, _ := startJobProc(t)
	dead, deadIn := startJobProc(t)
	attach(t, d, "2026", live.Process.Pid)
	attach(t, d, "2027", dead.Process.Pid)
	if pool := read(t, d.Path("pool")); !strings.Contains(pool, " 2026 ") || !strings.Contains(pool, " 2027 ") {
		t.Fatalf("both jobs should hold a GPU:\n%s", pool)
	}

	d.Kill()
	deadIn.Close()
	dead.Wait()
	d.Restart()

	morehdtest.Eventually(t, 2*time.Second, "the dead job's GPU is released after the restart", func() bool {
		return read(t, d.Path("devices", "2027", "gpus")) == ""
	})
	if got := read(t, d.Path("devices", "2026", "procs")); got != strconv.Itoa(live.Process.Pid)+"\n" {
		t.Errorf("the live job lost its process across the restart: procs = %q", got)
	}
	if pool := read(t, d.Path("pool")); !strings.Contains(pool, " 2026 ") || strings.Contains(pool, " 2027 ") {
		t.Errorf("pool after restart:\n%s", pool)
	}
	// The line follows the release: it may land just after the test sees it.
	morehdtest.Eventually(t, 10*time.Second, "the release at start is logged", func() bool {
		return strings.Contains(d.Log(), `msg="job ended; GPUs released" job=2`)
	})
	live.Process.Kill()
	live.Wait()
	morehdtest.Eventually(t, time.Second, "the live job's GPU is released within a second of its end", func() bool {
		return !strings.Contains(read(t, d.Path("pool")), "2026")
	})
}

// TestIdleTimeout: a device with no job is removed after --idle-timeout,
// one with a job is kept.
func TestIdleTimeout(t *testing.T) {
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB", "--idle-timeout", "300ms")
	for range 2 {
		if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	busy, _ := startJobProc(t)
	attach(t, d, "2026", busy.Process.Pid)
	morehdtest.Eventually(t, 3*time.Second, "the idle device is removed", func() bool {
		return strings.Join(ls(t, d.Path("devices")), ",") == "2026"
	})
	if got := read(t, d.Path("current")); got != "2026\n" {
		t.Errorf("current after the idle removal = %q, want 2026", got)
	}
	morehdtest.Eventually(t, 10*time.Second, "the idle removal is logged", func() bool {
		return strings.Contains(d.Log(), `msg="idle device removed" token=default id=2027`)
	})
}
