// Package morehdtest runs the real morehd binary for black-box tests: built
// once per test binary, started on a mount in t.TempDir(), ready when it
// says so on its ready fd, stopped in t.Cleanup.
package morehdtest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/fs/node/cgroup"
)

// Daemon is one running (or stopped) morehd.
type Daemon struct {
	t     testing.TB
	Mount string   // the mounted tree
	DB    string   // the bbolt file
	Args  []string // extra flags, kept across Restart
	// CgroupDir is the daemon's own cgroup subtree (--cgroup-root), made
	// fresh for each daemon and kept across Restart; empty where no
	// writable cgroup v2 exists or Args names one.
	CgroupDir string
	Bin       string // the morehd binary: Binary's unless set before start
	cmd       *exec.Cmd
	log       *lockedBuffer
	mu        sync.Mutex
}

var raceBuild, shippedBuild build

// build is one go build of cmd/morehd, done once per test binary.
type build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds cmd/morehd with the race detector once and returns its path.
func Binary(t testing.TB) string { return raceBuild.get(t, "-race") }

// ShippedBinary builds cmd/morehd as it ships (no race detector) once and
// returns its path: for benchmarks, whose figures are the product's.
func ShippedBinary(t testing.TB) string { return shippedBuild.get(t) }

func (b *build) get(t testing.TB, flags ...string) string {
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "morehd-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "morehd")
		_, file, _, _ := runtime.Caller(0)
		pkg := filepath.Join(filepath.Dir(file), "..")
		args := append(append([]string{"build"}, flags...), "-o", b.path, pkg)
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Start runs morehd on a fresh mount and db with the extra flags args
// (e.g. "--max-devices", "3") and waits until it is ready.
func Start(t testing.TB, args ...string) *Daemon {
	t.Helper()
	return StartBinary(t, "", args...)
}

// StartBinary is Start with the binary bin (Binary's when empty).
func StartBinary(t testing.TB, bin string, args ...string) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting without fusermount needs root")
	}
	dir := t.TempDir()
	d := &Daemon{t: t, Mount: filepath.Join(dir, "mnt"), DB: filepath.Join(dir, "state", "moreh.db"), Args: args, Bin: bin}
	if d.Bin == "" {
		d.Bin = Binary(t)
	}
	if !slices.Contains(args, "--cgroup-root") {
		// Every daemon its own subtree: a restart kills the cgroups its
		// store does not know, so two daemons must never share one.
		if root, err := cgroup.FindRoot(); err == nil {
			var b [6]byte
			rand.Read(b[:])
			d.CgroupDir = filepath.Join(root, "moreh-test-"+hex.EncodeToString(b[:]))
			t.Cleanup(func() { removeCgroups(t, d.CgroupDir) })
		}
	}
	d.start()
	t.Cleanup(func() { d.Stop() })
	return d
}

// removeCgroups kills what runs in the job cgroups under dir and removes
// them and dir: only what this package's daemon made.
func removeCgroups(t testing.TB, dir string) {
	if _, err := os.Stat(dir); err != nil {
		return
	}
	m, err := cgroup.New(dir)
	if err != nil {
		t.Errorf("clean up %s: %v", dir, err)
		return
	}
	ids, _ := m.List()
	for _, id := range ids {
		g, err := m.Open(id)
		if err != nil {
			continue
		}
		g.Kill()
		Eventually(t, 10*time.Second, "job cgroup "+g.Path()+" empties after cgroup.kill", func() bool {
			populated, err := g.Populated()
			return err != nil || !populated
		})
		if err := g.Remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("clean up: %v", err)
		}
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("clean up: %v", err)
	}
}

// CgroupOf is pid's cgroup v2 path (as /proc/<pid>/cgroup writes it), or "".
func (d *Daemon) CgroupOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

func (d *Daemon) start() {
	d.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		d.t.Fatal(err)
	}
	defer r.Close()
	args := []string{"--mount", d.Mount, "--db", d.DB, "--gpus", "sim", "--ready-fd", "3"}
	if d.CgroupDir != "" {
		args = append(args, "--cgroup-root", d.CgroupDir)
	}
	args = append(args, d.Args...)
	cmd := exec.Command(d.Bin, args...)
	d.log = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		d.t.Fatal(err)
	}
	w.Close()
	// The daemon writes one line when the mount answers, or dies trying;
	// either ends the read, so no sleep or poll is needed.
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line != "ready\n" {
		cmd.Wait()
		d.t.Fatalf("morehd did not become ready (%v):\n%s", cmd.ProcessState, d.log)
	}
	d.mu.Lock()
	d.cmd = cmd
	d.mu.Unlock()
}

// Path joins a path inside the mount.
func (d *Daemon) Path(elem ...string) string {
	return filepath.Join(append([]string{d.Mount}, elem...)...)
}

// Log is what the daemon printed so far.
func (d *Daemon) Log() string { return d.log.String() }

// PID is the running daemon's process id, or 0 when it is stopped.
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// lockedBuffer collects the daemon's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Daemon) Stop() {
	d.mu.Lock()
	cmd := d.cmd
	d.cmd = nil
	d.mu.Unlock()
	defer syscall.Unmount(d.Mount, syscall.MNT_DETACH) // a killed daemon's mount too
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Errorf("morehd exited with %v:\n%s", err, d.log)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		d.waitKilled(done)
		d.t.Errorf("morehd did not stop on SIGTERM:\n%s", d.log)
	}
}

// waitKilled waits for a SIGKILLed daemon to exit. One whose thread waits in
// the kernel for a directory lock, held by a request it will never answer
// (an entry invalidation under way at the kill), cannot exit until its FUSE
// connection is aborted: after a while, the test aborts its own mount's.
func (d *Daemon) waitKilled(done <-chan error) {
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	}
	if err := abortConnection(d.Mount); err != nil {
		d.t.Errorf("a killed morehd does not exit, and its connection cannot be aborted: %v", err)
	}
	<-done
}

// abortConnection aborts the FUSE connection of the mount on dir (found in
// mountinfo: a stat of a dead mount would hang).
func abortConnection(dir string) error {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	m, ok := cgroup.MountOn(info, dir)
	if _, minor, cut := strings.Cut(m.Dev, ":"); ok && cut && strings.HasPrefix(m.FSType, "fuse") {
		return os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0)
	}
	return fmt.Errorf("no FUSE mount on %s", dir)
}

// Kill SIGKILLs the daemon, leaving a stale mount behind as a crash would.
func (d *Daemon) Kill() {
	d.mu.Lock()
	cmd := d.cmd
	d.cmd = nil
	d.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		d.waitKilled(done)
	}
}

// Restart starts the daemon again on the same mount and db.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.start()
}

// Eventually re-checks cond every 10 ms until it holds, failing the test
// when within passes first: polling with a deadline, never a fixed sleep.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		<-tick.C
	}
}

// Throughout re-checks cond every 10 ms for the whole of within and fails
// the test the first time it does not hold: a window for what must not happen.
func Throughout(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		<-tick.C
	}
}
