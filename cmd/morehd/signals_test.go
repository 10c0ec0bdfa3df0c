package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// TestSIGHUPIsACleanStop: SIGHUP (a closed terminal) unmounts and exits 0,
// like SIGTERM, and keeps every device; it never leaves a dead mount.
func TestSIGHUPIsACleanStop(t *testing.T) {
	d := morehdtest.Start(t)
	populate(t, d)
	if err := syscall.Kill(d.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	morehdtest.Eventually(t, 10*time.Second, "the mount leaves /proc/self/mountinfo after SIGHUP", func() bool {
		return mountedAt(t, d.Mount) == ""
	})
	d.Stop() // waits for the exit; fails the test unless the exit code is 0
	if !strings.Contains(d.Log(), "msg=stopping") {
		t.Errorf("the log lacks the stop:\n%s", d.Log())
	}
	d.Restart()
	if got := ls(t, d.Path("devices")); !slices.Equal(got, []string{"2026", "2028"}) {
		t.Errorf("devices after SIGHUP = %v, want [2026 2028]", got)
	}
}

// TestStartOnAStoppedDaemonsMount: a new daemon on a mountpoint whose
// daemon is SIGSTOPped gives up within a bounded time with one line naming
// the fix and exit 1, instead of blocking for ever in statfs.
func TestStartOnAStoppedDaemonsMount(t *testing.T) {
	old := morehdtest.Start(t)
	if err := syscall.Kill(old.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(old.PID(), syscall.SIGCONT) }) // before old.Stop, which runs first-registered-last
	cmd := exec.Command(morehdtest.Binary(t), "--mount", old.Mount, "--db", filepath.Join(t.TempDir(), "db"), "--gpus", "sim")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the new daemon still blocks after 30 s on the stopped daemon's mount:\n%s", stderr.String())
	}
	took := time.Since(start)
	t.Logf("refused in %v: %s", took.Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "does not answer") || !strings.Contains(lines[0], "umount -l "+old.Mount) {
		t.Errorf("exit %d (%v), stderr %q; want exit 1 and one line naming the fix", code, err, stderr.String())
	}
	if took > 10*time.Second {
		t.Errorf("refusing took %v, want about 2 s", took)
	}
	// The old daemon, continued, still serves its tree.
	syscall.Kill(old.PID(), syscall.SIGCONT)
	if _, err := os.ReadFile(old.Path("version")); err != nil {
		t.Errorf("the old daemon's tree after SIGCONT: %v", err)
	}
}
