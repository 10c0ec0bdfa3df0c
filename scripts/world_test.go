package scripts_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// securePath is sudo's secure_path on Debian: no /usr/local/go/bin.
const securePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// repoRoot is the checkout's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// mountsUnder lists the mountpoints at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	return mounts
}

// startTime is field 22 of /proc/PID/stat, as scripts/test.sh records it.
func startTime(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return f[19]
}

// runDir makes a directory as scripts/test.sh makes its run directory,
// owned by pid with start time start.
func runDir(t *testing.T, pid int, start string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "moreh-test.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, ".moreh-test-owner"), []byte(strconv.Itoa(pid)+" "+start+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startAt runs a morehd mounted on mount (wherever that is) and returns
// the path of its version file.
func startAt(t *testing.T, mount string) (*morehdtest.Daemon, string) {
	t.Helper()
	t.Cleanup(func() { syscall.Unmount(mount, syscall.MNT_DETACH) }) // after Stop
	return morehdtest.Start(t, "--mount", mount), filepath.Join(mount, "version")
}

// scripts/test.sh clears what killed runs of its own left behind, and
// nothing else: a morehd mounted elsewhere under /tmp, and the run
// directory of a run still going (such as the one running this test), are
// left alone. --clean-only runs that part alone; a full run does the same
// first, and removes its own run directory the same way at its end.
func TestTestShClearsOnlyItsOwn(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	elsewhere, err := os.MkdirTemp("/tmp", "moreh-elsewhere-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(elsewhere) })
	_, otherVersion := startAt(t, filepath.Join(elsewhere, "mnt"))

	live := runDir(t, os.Getpid(), startTime(t, os.Getpid()))
	_, liveVersion := startAt(t, filepath.Join(live, "mnt"))

	// A killed run: its owner is gone, its daemon killed (a stale mount),
	// and another of its daemons still serving.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := runDir(t, gone.Process.Pid, "1")
	killed, _ := startAt(t, filepath.Join(stale, "a", "mnt"))
	killed.Kill()
	serving, _ := startAt(t, filepath.Join(stale, "b", "mnt"))
	if got := mountsUnder(t, stale); len(got) != 2 {
		t.Fatalf("the stale run has mounts %q, want 2", got)
	}
	unmarked, err := os.MkdirTemp("/tmp", "moreh-test.") // not a run's: no marker
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(unmarked) })

	cmd := exec.Command("bash", "test.sh", "--clean-only")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test.sh --clean-only: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "clearing "+stale+" (left by a killed run, pid "+strconv.Itoa(gone.Process.Pid)+")\n") {
		t.Errorf("test.sh --clean-only printed %q, want it to name %s", out, stale)
	}
	if strings.Contains(string(out), live) || strings.Contains(string(out), unmarked) {
		t.Errorf("test.sh --clean-only touched a live run or an unmarked directory: %q", out)
	}
	for _, version := range []string{otherVersion, liveVersion} {
		if b, err := os.ReadFile(version); err != nil || !strings.HasPrefix(string(b), "moreh-smi ") {
			t.Errorf("after test.sh --clean-only, %s: %v %q", version, err, b)
		}
	}
	if got := mountsUnder(t, stale); len(got) != 0 {
		t.Errorf("the stale run's mounts %q are still there", got)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale run directory is still there: %v", err)
	}
	for _, dir := range []string{live, unmarked} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("test.sh --clean-only removed %s: %v", dir, err)
		}
	}
	serving.Kill() // it ends by itself, its mount gone: no SIGTERM to race with that
}

// readmeCommands are the indented command lines of the README's first
// screen: the daemon's, then the tests'.
func readmeCommands(t *testing.T) (run, test string) {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 31)[:30]
	var cmds []string
	for _, l := range lines {
		if strings.HasPrefix(l, "    ") && strings.TrimSpace(l) != "" {
			cmds = append(cmds, strings.TrimSpace(l))
		}
	}
	if len(cmds) != 2 {
		t.Fatalf("the README's first screen has the commands %q, want two", cmds)
	}
	return cmds[0], cmds[1]
}

// readmeEnv is a root shell's environment after sudo: secure_path, HOME,
// and no Go variables. GOCACHE stays the caller's, and the build that
// scripts/morehd.sh keeps goes to a temp dir (XDG_CACHE_HOME).
func readmeEnv(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat("/usr/local/go/bin/go"); err != nil {
		if _, err := exec.LookPath("/usr/bin/go"); err != nil {
			t.Skip("Go is neither in /usr/local/go/bin nor on secure_path")
		}
	}
	cache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"PATH=" + securePath, "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(),
		"GOCACHE=" + strings.TrimSpace(string(cache)), "XDG_CACHE_HOME=" + t.TempDir()}
}

// The README's two commands work as printed, from the checkout, with
// sudo's secure_path (no /usr/local/go/bin) as root's PATH. The daemon's
// command gets the flags a test needs after it (a temp mount and db, the
// simulated pool, the ready fd), as the README says flags go; the test
// command gets --help, which says which go it found (a full run here would
// run this test again). Under sudo the same holds: both re-run themselves
// as root with that PATH (TestREADMECommandsThroughSudo).
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the commands run as root")
	}
	runCmd, testCmd := readmeCommands(t)
	if runCmd != "scripts/morehd.sh" || testCmd != "scripts/test.sh" {
		t.Errorf("the README's commands are %q and %q", runCmd, testCmd)
	}
	env := readmeEnv(t)

	cmd := exec.Command("bash", "-c", testCmd+" --help")
	cmd.Dir, cmd.Env = repoRoot(t), env
	out, err := cmd.CombinedOutput()
	if err != nil || !regexp.MustCompile(`\nUses go1\.\d+[.\d]* \((/usr/local/go/bin/go|/usr/bin/go)\), CGO_CFLAGS=.*-Wno-deprecated-declarations\n$`).Match(out) {
		t.Errorf("%s --help with PATH=%s: %v\n%s", testCmd, securePath, err, out)
	}

	dir := t.TempDir()
	mount := filepath.Join(dir, "mnt")
	t.Cleanup(func() { syscall.Unmount(mount, syscall.MNT_DETACH) })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stderr bytes.Buffer
	cmd = exec.Command("bash", "-c", "exec "+runCmd+` "$@"`, "bash", "--mount", mount, "--db", filepath.Join(dir, "moreh.db"), "--gpus", "sim", "--ready-fd", "3")
	cmd.Dir, cmd.Env, cmd.Stderr, cmd.ExtraFiles = repoRoot(t), env, &stderr, []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n') // ready, or EOF when it fails
	if line != "ready\n" {
		cmd.Wait()
		t.Fatalf("%s did not start morehd (%v):\n%s", runCmd, cmd.ProcessState, &stderr)
	}
	if b, err := os.ReadFile(filepath.Join(mount, "version")); err != nil || !strings.HasPrefix(string(b), "moreh-smi ") {
		t.Errorf("the mount of %s: %v %q", runCmd, err, b)
	}
	cmd.Process.Signal(syscall.SIGTERM) // morehd itself: the script execs it
	if err := cmd.Wait(); err != nil {
		t.Errorf("%s after SIGTERM: %v\n%s", runCmd, err, &stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if l != "scripts/morehd.sh: building morehd (the first build takes a minute)" && !strings.HasPrefix(l, "time=") {
			t.Errorf("%s printed %q: neither its one line nor the daemon's log", runCmd, l)
		}
	}
	cmd = exec.Command("bash", "-c", runCmd+" --help")
	cmd.Dir, cmd.Env = repoRoot(t), env
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "Usage: morehd [flags]\n") {
		t.Errorf("%s --help: %v %q", runCmd, err, out)
	}
}

// As a user with sudo, both commands re-run themselves through sudo, as
// root with sudo's PATH (which TestREADMECommands runs); without sudo they
// say to run them as root.
func TestREADMECommandsThroughSudo(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	runCmd, testCmd := readmeCommands(t)
	fake, err := os.MkdirTemp("/tmp", "moreh-fake-sudo-") // outside the run dir (0700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(fake) })
	os.Chmod(fake, 0o777)
	args := filepath.Join(fake, "args")
	if err := os.WriteFile(filepath.Join(fake, "sudo"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" >"+args+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	for _, tc := range []struct{ cmd, script, arg string }{{runCmd, "morehd.sh", "--gpus=sim"}, {testCmd, "test.sh", "--clean-only"}} {
		for _, withSudo := range []bool{true, false} {
			os.Remove(args)
			path := securePath
			if withSudo {
				path = fake + ":" + securePath
			}
			cmd := exec.Command("bash", "-c", tc.cmd+" "+tc.arg)
			cmd.Dir, cmd.Env = root, []string{"PATH=" + path, "HOME=/nonexistent", "FUZZTIME=7x"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			got, _ := os.ReadFile(args)
			if withSudo {
				want := "--\nenv\nFUZZTIME=7x\n" + filepath.Join(root, "scripts", tc.script) + "\n" + tc.arg + "\n"
				if err != nil || string(got) != want {
					t.Errorf("%s as a user: %v %q, ran sudo with %q, want %q", tc.cmd, err, out, got, want)
				}
			} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "there is no sudo: run it as root") {
				t.Errorf("%s as a user without sudo: %v %q", tc.cmd, err, out)
			}
		}
	}
}

// A cold build of go-nvml through the scripts' settings prints nothing:
// no screen of C deprecation warnings (about 150 lines without them).
func TestColdBuildIsQuiet(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a cold build takes about 40 s of CPU")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc: morehd builds without cgo, and without warnings")
	}
	cmd := exec.Command("bash", "-c", `. scripts/goenv.sh && moreh_go_env test && go build -o /dev/null github.com/NVIDIA/go-nvml/pkg/nvml`)
	cmd.Dir, cmd.Env = repoRoot(t), append(os.Environ(), "GOCACHE="+t.TempDir(), "CGO_ENABLED=1")
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("a cold build of go-nvml: %v, %d lines:\n%s", err, bytes.Count(out, []byte("\n")), out)
	}
}
