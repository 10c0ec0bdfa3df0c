package cgroup

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// failAfter bounds every wait on an event; it is a failure bound, never a pause.
const failAfter = 10 * time.Second

// helperEnv makes the test binary a helper process that runs inside a job's cgroup.
const helperEnv = "MOREH_CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	if op := os.Getenv(helperEnv); op != "" {
		os.Exit(runHelper(op, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runHelper opens (or mknods) each path and prints "<path> <errno name or ok>" a line.
func runHelper(op string, args []string) int {
	for _, a := range args {
		var err error
		switch op {
		case "open":
			var fd int
			fd, err = unix.Open(a, unix.O_RDWR, 0)
			if err == nil {
				unix.Close(fd)
			}
		case "mknod": // a:"path:major:minor"
			var path string
			var maj, min uint32
			parts := strings.Split(a, ":")
			path = parts[0]
			fmt.Sscan(parts[1], &maj)
			fmt.Sscan(parts[2], &min)
			a = path
			err = unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(maj, min)))
		default:
			fmt.Fprintln(os.Stderr, "unknown helper op", op)
			return 2
		}
		fmt.Println(a, errName(err))
	}
	return 0
}

func errName(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// testManager makes a Manager on a fresh subtree of the real cgroup v2
// hierarchy and, at cleanup, kills and removes only what it made.
func testManager(t *testing.T) *Manager {
	t.Helper()
	root, err := FindRoot()
	if err != nil {
		t.Skipf("no writable cgroup v2 hierarchy: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join(root, "moreh-test-"+hex.EncodeToString(b[:]))
	m, err := New(dir)
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	t.Cleanup(func() { removeTree(t, dir) })
	return m
}

// removeTree kills the processes of every job under dir, waits for each to
// empty on its event, and removes the job cgroups and dir.
func removeTree(t *testing.T, dir string) {
	m := &Manager{dir: dir}
	ids, err := m.List()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	w, err := NewWatcher()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer w.Close()
	live := map[uint64]bool{}
	for _, id := range ids {
		g := m.group(id)
		if err := g.Kill(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		live[id] = true
		if err := w.Watch(g); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	deadline := time.After(failAfter)
	for len(live) > 0 {
		select {
		case id := <-w.Empty():
			delete(live, id)
		case <-deadline:
			t.Errorf("cleanup: jobs %v still have processes after %v", live, failAfter)
			return
		}
	}
	for _, id := range ids {
		if err := m.group(id).Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// startIn starts a command directly inside g's cgroup (clone3 CLONE_INTO_CGROUP).
func startIn(t *testing.T, g *Group, cmd *exec.Cmd) {
	t.Helper()
	dir, err := os.Open(g.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v in %s: %v", cmd.Args, g.Path(), err)
	}
}

// startReady runs a bash script in g and returns once it has printed
// "ready": whatever it started before is in the group by then.
func startReady(t *testing.T, g *Group, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	out, _ := cmd.StdoutPipe()
	startIn(t, g, cmd)
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("read %q, %v; want ready", line, err)
	}
	return cmd
}

// waitEmpty waits for w to report id, failing after failAfter.
func waitEmpty(t *testing.T, w *Watcher, id uint64) {
	t.Helper()
	select {
	case got := <-w.Empty():
		if got != id {
			t.Fatalf("Empty() = job %d, want %d", got, id)
		}
	case <-time.After(failAfter):
		t.Fatalf("job %d not reported empty within %v", id, failAfter)
	}
}

func newWatcher(t *testing.T) *Watcher {
	t.Helper()
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func create(t *testing.T, m *Manager, id uint64) *Group {
	t.Helper()
	g, err := m.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// cgroupOf is the cgroup path /proc/<pid>/cgroup names on the unified hierarchy.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest
		}
	}
	t.Fatalf("pid %d: no unified line in %q", pid, b)
	return ""
}

func mustExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}
