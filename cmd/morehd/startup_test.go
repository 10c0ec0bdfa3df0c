package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// runToExit runs the morehd binary (or a wrapper's argv that execs it) to
// its end, killing it after within, and returns its exit code and stderr.
func runToExit(t *testing.T, within time.Duration, argv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not exit within %v:\n%s", argv, within, stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// checkOneLineFault: the daemon refused to start with exit code 1 and one
// line on stderr that names the fix, and nothing that looks like a crash.
func checkOneLineFault(t *testing.T, code int, stderr string, fix ...string) {
	t.Helper()
	if code != exitRuntime {
		t.Errorf("exit code %d, want %d", code, exitRuntime)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.HasPrefix(stderr, "morehd: ") {
		t.Errorf("stderr is not one line %q:\n%s", "morehd: …", stderr)
	}
	for _, crash := range []string{"panic", "goroutine ", "SIGSEGV", "SIGBUS", "fatal error"} {
		if strings.Contains(stderr, crash) {
			t.Errorf("stderr shows a crash (%q):\n%s", crash, stderr)
		}
	}
	for _, f := range fix {
		if !strings.Contains(stderr, f) {
			t.Errorf("stderr does not say %q:\n%s", f, stderr)
		}
	}
	t.Logf("%s", strings.TrimSpace(stderr))
}

// validDB leaves a real state file behind: a daemon that made devices,
// stopped cleanly.
func validDB(t *testing.T) []byte {
	t.Helper()
	d := morehdtest.Start(t)
	populate(t, d)
	d.Stop()
	b, err := os.ReadFile(d.DB)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStartupFaults: each start-up fault ends the daemon with exit code 1
// and one line naming the fix, never a panic, and leaves no mount behind.
// The fault "mountpoint left stale by a killed daemon" is recovered from
// instead: TestStateSurvivesSIGKILL restarts on exactly that.
func TestStartupFaults(t *testing.T) {
	bin := morehdtest.Binary(t)
	if os.Geteuid() != 0 {
		t.Skip("the faults are those of a daemon that mounts as root")
	}
	const within = 30 * time.Second
	fresh := func(t *testing.T) (db, mount string) {
		dir := t.TempDir()
		return filepath.Join(dir, "state", "moreh.db"), filepath.Join(dir, "mnt")
	}
	writeDB := func(t *testing.T, db string, content []byte) {
		if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(db, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	morehd := func(db, mount string) []string {
		return []string{bin, "--gpus", "sim", "--db", db, "--mount", mount}
	}
	noMount := func(t *testing.T, mount string) {
		t.Helper()
		if mountedAt(t, mount) != "" {
			t.Errorf("a refused start left a mount on %s", mount)
			syscall.Unmount(mount, syscall.MNT_DETACH)
		}
	}

	t.Run("db of random bytes", func(t *testing.T) {
		db, mount := fresh(t)
		seed := time.Now().UnixNano()
		t.Logf("seed %d", seed)
		junk := make([]byte, 64*1024)
		rand.New(rand.NewSource(seed)).Read(junk)
		writeDB(t, db, junk)
		code, stderr := runToExit(t, within, morehd(db, mount)...)
		checkOneLineFault(t, code, stderr, db, "move it aside")
		noMount(t, mount)
	})
	t.Run("db truncated to half", func(t *testing.T) {
		valid := validDB(t)
		db, mount := fresh(t)
		writeDB(t, db, valid[:len(valid)/2])
		code, stderr := runToExit(t, within, morehd(db, mount)...)
		checkOneLineFault(t, code, stderr, db, "is damaged", "move it aside")
		noMount(t, mount)
	})
	t.Run("db with overwritten pages", func(t *testing.T) {
		valid := validDB(t)
		for i := 4 * 4096; i < len(valid) && i < 12*4096; i++ {
			valid[i] ^= 0x5a
		}
		db, mount := fresh(t)
		writeDB(t, db, valid)
		code, stderr := runToExit(t, within, morehd(db, mount)...)
		checkOneLineFault(t, code, stderr, db, "move it aside")
		noMount(t, mount)
	})
	t.Run("db held by another daemon", func(t *testing.T) {
		// As TestDBHeldByAnotherDaemon, and the message is one line.
		d := morehdtest.Start(t)
		_, mount := fresh(t)
		code, stderr := runToExit(t, within, morehd(d.DB, mount)...)
		checkOneLineFault(t, code, stderr, "is in use by another morehd", "give this one its own --db")
		noMount(t, mount)
		if _, err := os.Stat(d.Path("status")); err != nil {
			t.Errorf("the first daemon's tree stopped answering: %v", err)
		}
	})
	t.Run("mountpoint is a regular file", func(t *testing.T) {
		db, mount := fresh(t)
		if err := os.WriteFile(mount, []byte("not a directory\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, stderr := runToExit(t, within, morehd(db, mount)...)
		checkOneLineFault(t, code, stderr, mount, "is not a directory", "give --mount a directory")
		noMount(t, mount)
		if b, err := os.ReadFile(mount); err != nil || string(b) != "not a directory\n" {
			t.Errorf("the file in the way was touched: %q %v", b, err)
		}
	})
	t.Run("mountpoint under a regular file", func(t *testing.T) {
		db, mount := fresh(t)
		if err := os.WriteFile(mount, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		code, stderr := runToExit(t, within, morehd(db, filepath.Join(mount, "sub"))...)
		checkOneLineFault(t, code, stderr, "not a directory", "give --mount a directory")
	})
	t.Run("mountpoint busy with another daemon", func(t *testing.T) {
		d := morehdtest.Start(t)
		if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
		db, _ := fresh(t)
		code, stderr := runToExit(t, within, morehd(db, d.Mount)...)
		checkOneLineFault(t, code, stderr, d.Mount, "is already mounted by another morehd", "--mount another directory")
		// Refused, not stolen: the first daemon's tree is still the one there.
		if n := strings.Count(mountedAt(t, d.Mount), "fuse.moreh"); n != 1 {
			t.Errorf("%d moreh mounts on %s, want 1", n, d.Mount)
		}
		if got := read(t, d.Path("current")); got != "2026\n" {
			t.Errorf("the first daemon's tree answers current = %q, want 2026", got)
		}
	})
	t.Run("no /dev/fuse", func(t *testing.T) {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("needs unshare(1) to hide /dev/fuse in a private mount namespace")
		}
		db, mount := fresh(t)
		// A private mount namespace, so the tmpfs over /dev hides /dev/fuse
		// from this one daemon only and never propagates to the machine.
		script := `mount -t tmpfs none /dev && test ! -e /dev/fuse && exec "$@"`
		argv := append([]string{unshare, "--mount", "--propagation", "private", "bash", "-c", script, "morehd"}, morehd(db, mount)...)
		code, stderr := runToExit(t, within, argv...)
		checkOneLineFault(t, code, stderr, "/dev/fuse is missing", "modprobe fuse")
		if _, err := os.Stat("/dev/fuse"); err != nil {
			t.Fatalf("/dev/fuse is gone from the test's namespace: %v", err)
		}
	})
	t.Run("mountpoint missing, several levels deep", func(t *testing.T) {
		// A recovery: the daemon creates the mountpoint and serves it.
		db, _ := fresh(t)
		mount := filepath.Join(t.TempDir(), "a", "b", "mnt")
		cmd, stderr := startReady(t, morehd(db, mount)...)
		if fi, err := os.Stat(filepath.Join(mount, "devices")); err != nil || !fi.IsDir() {
			t.Errorf("the created mountpoint does not serve the tree: %v", err)
		}
		stopWithin(t, cmd, stderr, 10*time.Second)
	})
}

// startReady starts the binary with --ready-fd and returns once it is ready.
func startReady(t *testing.T, argv ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(argv[0], append(argv[1:], "--ready-fd", "3")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		cmd.Wait()
		t.Fatalf("morehd did not become ready:\n%s", stderr.String())
	}
	return cmd, &stderr
}

// stopWithin sends SIGTERM and wants exit code 0 within the deadline.
func stopWithin(t *testing.T, cmd *exec.Cmd, stderr *bytes.Buffer, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("morehd stopped with %v, want exit 0:\n%s", err, stderr)
		}
	case <-time.After(within):
		cmd.Process.Kill()
		<-done
		t.Fatalf("morehd did not stop within %v of SIGTERM:\n%s", within, stderr)
	}
	return time.Since(start)
}

// mountedAt returns the lines of /proc/self/mountinfo whose mount point is dir.
func mountedAt(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestCleanStop: SIGTERM while a file of the tree is open and a shell's cwd
// is inside it: the daemon exits 0 promptly, the mount is gone (detached
// lazily; the holders then see ENOTCONN), and every committed change is
// there after a restart.
func TestCleanStop(t *testing.T) {
	d := morehdtest.Start(t)
	populate(t, d) // devices 2026 and 2028, current 2026, 2028 changed to Medium.128GB
	held, err := os.Open(d.Path("status"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	shell := exec.Command("bash", "-c", "sleep infinity; exit 0")
	shell.Dir = d.Path("devices", "2028")
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	shellDone := make(chan struct{})
	go func() { shell.Wait(); close(shellDone) }()
	t.Cleanup(func() { shell.Process.Kill(); <-shellDone })
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(shell.Process.Pid) + "/cwd")
	if err != nil || cwd != d.Path("tokens", "default", "devices", "2028") { // devices is a link to there
		t.Fatalf("the shell's cwd is %q (%v), want inside the mount", cwd, err)
	}

	start := time.Now()
	if err := syscall.Kill(d.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The daemon itself takes the mount away (d.Stop detaches what a killed
	// daemon leaves, so the check comes before it).
	morehdtest.Eventually(t, 10*time.Second, "the mount leaves /proc/self/mountinfo after SIGTERM", func() bool {
		return mountedAt(t, d.Mount) == ""
	})
	d.Stop() // waits for the exit; fails the test unless the exit code is 0
	took := time.Since(start)
	t.Logf("stopped in %v with a file open and a shell inside", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("stopping took %v with the mount held, want a few seconds at most", took)
	}
	for _, want := range []string{"msg=stopping", "the mount is busy; detaching it"} {
		if !strings.Contains(d.Log(), want) {
			t.Errorf("the log lacks %q:\n%s", want, d.Log())
		}
	}
	shell.Process.Kill()
	<-shellDone

	d.Restart()
	if got := ls(t, d.Path("devices")); !slices.Equal(got, []string{"2026", "2028"}) {
		t.Errorf("devices after the stop = %v, want [2026 2028]", got)
	}
	if got := read(t, d.Path("current")); got != "2026\n" {
		t.Errorf("current after the stop = %q, want 2026", got)
	}
	if got := read(t, d.Path("devices", "2028", "model")); got != "Medium.128GB\n" {
		t.Errorf("model of 2028 after the stop = %q", got)
	}
}
