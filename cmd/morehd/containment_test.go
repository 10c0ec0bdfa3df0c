package main

import (
	"errors"
	"fmt"
	"io"
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

// startContained starts a daemon whose jobs are cgroups, or skips the test
// with the reason where no writable cgroup v2 exists.
func startContained(t *testing.T, args ...string) *morehdtest.Daemon {
	t.Helper()
	d := morehdtest.Start(t, args...)
	if d.CgroupDir == "" {
		t.Skip("no writable cgroup v2 hierarchy on this machine: jobs are followed through /proc")
	}
	if v := read(t, d.Path("version")); !strings.HasSuffix(v, "\ncontainment: cgroup\n") {
		t.Fatalf("version = %q, want the containment: cgroup line\n%s", v, d.Log())
	}
	return d
}

// gated is a bash script that waits for a line on stdin (so that it is
// attached before it forks anything), then runs script.
type gated struct {
	cmd  *exec.Cmd
	gate io.WriteCloser
	done chan struct{}
}

func startGated(t *testing.T, script string) *gated {
	t.Helper()
	cmd := exec.Command("bash", "-c", "read _; "+script)
	gate, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gated{cmd: cmd, gate: gate, done: make(chan struct{})}
	go func() { cmd.Wait(); close(g.done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-g.done })
	return g
}

func (g *gated) open(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(g.gate, "go\n"); err != nil {
		t.Fatal(err)
	}
}

// waitPidFile waits for a helper to write its pid to path and returns it;
// the process is SIGKILLed at cleanup.
func waitPidFile(t *testing.T, path string) int {
	t.Helper()
	var pid int
	morehdtest.Eventually(t, 10*time.Second, "a pid in "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

func mkdev(t testing.TB, d *morehdtest.Daemon, model string) string {
	t.Helper()
	if err := os.Mkdir(d.Path("devices", model), 0o755); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(read(t, d.Path("current")))
}

func bound(t testing.TB, d *morehdtest.Daemon, id string) bool {
	return read(t, d.Path("devices", id, "gpus")) != ""
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// TestBackgroundChildrenHoldTheJob: however the job's process forks and
// exits, what it leaves running keeps the job and its GPUs, until it exits.
func TestBackgroundChildrenHoldTheJob(t *testing.T) {
	d := startContained(t, "--gpus", "sim:2x64GB")
	cases := []struct{ name, script string }{
		{"background child", `sleep 60 & echo $! > "$F"`},
		{"double fork", `( bash -c 'echo $$ > "$F"; exec sleep 60' & ) ; exit 0`},
		{"setsid", `setsid bash -c 'echo $$ > "$F"; exec sleep 60' & exit 0`},
		{"nohup", `nohup bash -c 'echo $$ > "$F"; exec sleep 60' >/dev/null 2>&1 & exit 0`},
	}
	id := mkdev(t, d, "Small.64GB")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			t.Setenv("F", pidFile)
			g := startGated(t, c.script)
			attach(t, d, id, g.cmd.Process.Pid)
			g.open(t)
			<-g.done // the attached process is gone
			child := waitPidFile(t, pidFile)
			if !bound(t, d, id) {
				t.Fatalf("the job was released while %d runs:\n%s", child, d.Log())
			}
			if got := read(t, d.Path("devices", id, "procs")); got != strconv.Itoa(child)+"\n" {
				t.Errorf("procs = %q, want the child %d", got, child)
			}
			if cg := d.CgroupOf(child); !strings.HasPrefix(cg, "/"+filepath.Base(d.CgroupDir)+"/job-") {
				t.Errorf("the child runs in cgroup %q, not a job's under %s", cg, d.CgroupDir)
			}
			syscall.Kill(child, syscall.SIGKILL)
			morehdtest.Eventually(t, 2*time.Second, "the job is released once the child exits", func() bool {
				return !bound(t, d, id)
			})
		})
	}
}

// TestChildForkedWhileDaemonStopped: a child born while the daemon cannot
// run (SIGSTOP) is in the job as much as any other.
func TestChildForkedWhileDaemonStopped(t *testing.T) {
	d := startContained(t, "--gpus", "sim:2x64GB")
	id := mkdev(t, d, "Small.64GB")
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Setenv("F", pidFile)
	g := startGated(t, `sleep 60 & echo $! > "$F"`)
	attach(t, d, id, g.cmd.Process.Pid)
	syscall.Kill(d.PID(), syscall.SIGSTOP)
	g.open(t)
	<-g.done
	child := waitPidFile(t, pidFile)
	syscall.Kill(d.PID(), syscall.SIGCONT)
	morehdtest.Throughout(t, 300*time.Millisecond, "the job holds its GPUs while the child runs", func() bool {
		return bound(t, d, id)
	})
	syscall.Kill(child, syscall.SIGKILL)
	morehdtest.Eventually(t, 2*time.Second, "the job is released once the child exits", func() bool {
		return !bound(t, d, id)
	})
}

// TestMovedProcessIsInOneJob: attaching a process to another device moves
// it (and what it forks from then on) into that job only; what it left
// behind keeps the first job.
func TestMovedProcessIsInOneJob(t *testing.T) {
	d := startContained(t, "--gpus", "sim:4x64GB")
	a, b := mkdev(t, d, "Small.64GB"), mkdev(t, d, "Small.64GB")
	dir := t.TempDir()
	t.Setenv("F", filepath.Join(dir, "left"))
	t.Setenv("G", filepath.Join(dir, "born"))
	// Forks a child into job a, waits to be moved, then forks one into job b.
	g := startGated(t, `sleep 60 & echo $! > "$F"; read _; sleep 60 & echo $! > "$G"; read _`)
	attach(t, d, a, g.cmd.Process.Pid)
	g.open(t)
	left := waitPidFile(t, filepath.Join(dir, "left"))
	attach(t, d, b, g.cmd.Process.Pid)
	g.open(t)
	born := waitPidFile(t, filepath.Join(dir, "born"))
	shell := g.cmd.Process.Pid
	if got := read(t, d.Path("devices", a, "procs")); got != strconv.Itoa(left)+"\n" {
		t.Errorf("device %s procs = %q, want only %d", a, got, left)
	}
	want := []int{shell, born}
	slices.Sort(want)
	if got := read(t, d.Path("devices", b, "procs")); got != fmt.Sprintf("%d\n%d\n", want[0], want[1]) {
		t.Errorf("device %s procs = %q, want %v", b, got, want)
	}
	if d.CgroupOf(left) == d.CgroupOf(shell) || d.CgroupOf(born) != d.CgroupOf(shell) {
		t.Errorf("cgroups: left %s, shell %s, born %s", d.CgroupOf(left), d.CgroupOf(shell), d.CgroupOf(born))
	}
	pool := read(t, d.Path("pool"))
	if strings.Count(pool, " "+a+" ") != 1 || strings.Count(pool, " "+b+" ") != 1 {
		t.Errorf("each job should hold one GPU:\n%s", pool)
	}
	syscall.Kill(left, syscall.SIGKILL)
	morehdtest.Eventually(t, 2*time.Second, "job a is released when what it left behind exits", func() bool {
		return !bound(t, d, a)
	})
	if !bound(t, d, b) {
		t.Errorf("job b was released with a")
	}
}

// TestInterruptedResetFinishes: a reset whose writer is killed during the
// grace still ends a job that ignores SIGTERM, and releases its GPUs only
// once its processes are gone.
func TestInterruptedResetFinishes(t *testing.T) {
	d := startContained(t, "--gpus", "sim:2x64GB", "--reset-grace", "1s")
	id := mkdev(t, d, "Small.64GB")
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Setenv("F", pidFile)
	g := startGated(t, `trap "" TERM; bash -c 'echo $$ > "$F"; exec sleep 600' & wait`)
	attach(t, d, id, g.cmd.Process.Pid)
	g.open(t)
	child := waitPidFile(t, pidFile)
	writer := exec.Command("sh", "-c", "echo 1 > "+d.Path("devices", id, "reset"))
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	morehdtest.Eventually(t, 5*time.Second, "the reset begins", func() bool {
		return strings.Contains(d.Log(), "msg=\"resetting job")
	})
	writer.Process.Kill()
	writer.Wait()
	sawLive := false
	morehdtest.Eventually(t, 10*time.Second, "the job is released after the grace", func() bool {
		if bound(t, d, id) {
			return false
		}
		sawLive = alive(child) || alive(g.cmd.Process.Pid)
		return true
	})
	if sawLive {
		t.Errorf("the GPUs were released while a process of the job ran")
	}
	<-g.done
	if alive(child) {
		t.Errorf("the SIGTERM-ignoring child %d survived the reset", child)
	}
	if !strings.Contains(d.Log(), `msg="job ended; GPUs released"`) {
		t.Errorf("no release logged:\n%s", d.Log())
	}
}

// TestResetByAnotherUserRefused: a caller who could not signal every
// process of the job gets EPERM and a sentence in errors; the job runs on.
func TestResetByAnotherUserRefused(t *testing.T) {
	d := startContained(t, "--gpus", "sim:2x64GB")
	openToOthers(t, d.Mount)
	id := mkdev(t, d, "Small.64GB")
	job, _ := startJobProc(t)
	attach(t, d, id, job.Process.Pid)
	cmd := exec.Command("bash", "-c", "echo 1 > "+d.Path("devices", id, "reset"))
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4001, Gid: 4001}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Fatalf("reset as uid 4001 = %v: %s", err, out)
	}
	if errs := read(t, d.Path("tokens", "default", "errors")); !strings.Contains(errs, "of another user: only root or that user can reset it.") {
		t.Errorf("errors lacks the sentence:\n%s", errs)
	}
	if !bound(t, d, id) || !alive(job.Process.Pid) {
		t.Errorf("the refused reset stopped the job")
	}
	if err := os.WriteFile(d.Path("devices", id, "reset"), []byte("1"), 0); err != nil {
		t.Errorf("reset as root: %v", err)
	}
	if bound(t, d, id) {
		t.Errorf("root's reset answered before the release")
	}
}

// TestRefusedPids: init, the daemon, kernel threads and non-leader threads
// are no job's (EINVAL).
func TestRefusedPids(t *testing.T) {
	d := startContained(t, "--gpus", "sim:2x64GB")
	id := mkdev(t, d, "Small.64GB")
	// A thread of the daemon that is not its leader.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", d.PID()))
	if err != nil {
		t.Fatal(err)
	}
	tid := ""
	for _, e := range tasks {
		if e.Name() != strconv.Itoa(d.PID()) {
			tid = e.Name()
		}
	}
	for _, pid := range []string{"1", strconv.Itoa(d.PID()), "2", tid} {
		err := writeCmd(d.Path("devices", id, "procs"), pid)
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("attach %s = %v, want EINVAL", pid, err)
		}
	}
	if bound(t, d, id) {
		t.Errorf("a refused pid bound GPUs")
	}
	errs := read(t, d.Path("tokens", "default", "errors"))
	for _, want := range []string{"system's init", "the moreh daemon itself", "kernel thread", "is a thread of process"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors lacks %q:\n%s", want, errs)
		}
	}
}

// TestDeviceIsolation: a job's processes open their bound GPU's node (the
// missing driver answers ENXIO: the cgroup let it through) and get EPERM
// for the other GPU's.
func TestDeviceIsolation(t *testing.T) {
	devDir := t.TempDir()
	for i := range 2 {
		if err := syscall.Mknod(filepath.Join(devDir, "nvidia"+strconv.Itoa(i)), syscall.S_IFCHR|0o666, int(195<<8|i)); err != nil {
			t.Skipf("mknod: %v", err)
		}
	}
	d := startContained(t, "--gpus", "sim:2", "--sim-dev-dir", devDir)
	id := mkdev(t, d, "Small.64GB")
	t.Setenv("D", devDir)
	cmd := exec.Command("bash", "-c", `read _; for n in 0 1; do python3 -c '
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR))
    print(sys.argv[1][-1], "ok")
except OSError as e:
    print(sys.argv[1][-1], errno.errorcode[e.errno])
' "$D/nvidia$n"; done`)
	gate, _ := cmd.StdinPipe()
	t.Cleanup(func() { cmd.Process.Kill() })
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	attach(t, d, id, cmd.Process.Pid)
	gpus := read(t, d.Path("devices", id, "gpus"))
	idx, _, _ := strings.Cut(gpus, "\t")
	io.WriteString(gate, "go\n")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"0": "1", "1": "0"}[idx]
	want := idx + " ENXIO\n" + other + " EPERM\n"
	if idx == "1" {
		want = other + " EPERM\n" + idx + " ENXIO\n"
	}
	if stdout.String() != want {
		t.Errorf("bound GPU %s; opens gave:\n%swant:\n%s", idx, stdout.String(), want)
	}
	// Outside any job both nodes open as far as the driver.
	for i := range 2 {
		_, err := os.OpenFile(filepath.Join(devDir, "nvidia"+strconv.Itoa(i)), os.O_RDWR, 0)
		if !errors.Is(err, syscall.ENXIO) {
			t.Errorf("open nvidia%d outside a job = %v, want ENXIO", i, err)
		}
	}
}

// TestOrphanJobSurvivesDaemonKill: the daemon is SIGKILLed while a job's
// attached process has died and its child lives; restarted, the job keeps
// its GPU, no GPU is bound twice, and it is released when the child exits.
func TestOrphanJobSurvivesDaemonKill(t *testing.T) {
	d := startContained(t, "--gpus", "sim:2x64GB")
	a, b, c := mkdev(t, d, "Small.64GB"), mkdev(t, d, "Small.64GB"), mkdev(t, d, "Small.64GB")
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Setenv("F", pidFile)
	g := startGated(t, `sleep 60 & echo $! > "$F"`)
	attach(t, d, a, g.cmd.Process.Pid)
	g.open(t)
	<-g.done
	child := waitPidFile(t, pidFile)

	d.Kill()
	d.Restart()
	if !bound(t, d, a) {
		t.Fatalf("the orphan job lost its GPU across the restart:\n%s", d.Log())
	}
	other, _ := startJobProc(t)
	attach(t, d, b, other.Process.Pid)
	third, _ := startJobProc(t)
	if err := writeCmd(d.Path("devices", c, "procs"), strconv.Itoa(third.Process.Pid)); err != nil {
		t.Errorf("a third job on a two-GPU pool = %v, want it queued", err)
	}
	if q := strings.Fields(read(t, d.Path("queue"))); len(q) != 7 || q[3] != c {
		t.Errorf("queue = %q, want the third job waiting", q)
	}
	pool := read(t, d.Path("pool"))
	if strings.Count(pool, " "+a+" ") != 1 || strings.Count(pool, " "+b+" ") != 1 {
		t.Errorf("pool after the restart:\n%s", pool)
	}
	syscall.Kill(child, syscall.SIGKILL)
	morehdtest.Eventually(t, 2*time.Second, "the orphan job is released when its child exits", func() bool {
		return !bound(t, d, a)
	})
	if !bound(t, d, b) {
		t.Errorf("job b was released with the orphan")
	}
	morehdtest.Eventually(t, 5*time.Second, "the queued third job takes the orphan's GPU", func() bool { return bound(t, d, c) })
}

// TestProcFallback: with no cgroup subtree (--cgroup-root none, as where no
// writable cgroup v2 exists) the daemon says so in one log line and in
// version, keeps version's first three lines, and still runs jobs.
func TestProcFallback(t *testing.T) {
	d := morehdtest.Start(t, "--gpus", "sim:2x64GB", "--cgroup-root", "none")
	v := strings.Split(read(t, d.Path("version")), "\n")
	if len(v) != 5 || !strings.HasPrefix(v[0], "moreh-smi ") || !strings.HasPrefix(v[1], "client ") || !strings.HasPrefix(v[2], "server ") ||
		v[3] != "containment: proc (background children can escape)" {
		t.Errorf("version = %q", v)
	}
	if n := strings.Count(d.Log(), `msg="containment: proc (background children can escape)"`); n != 1 {
		t.Errorf("%d log lines say the containment, want 1:\n%s", n, d.Log())
	}
	id := mkdev(t, d, "Small.64GB")
	job, in := startJobProc(t)
	attach(t, d, id, job.Process.Pid)
	if d.CgroupOf(job.Process.Pid) != d.CgroupOf(os.Getpid()) {
		t.Errorf("the job's process was moved to cgroup %s", d.CgroupOf(job.Process.Pid))
	}
	in.Close()
	job.Wait()
	morehdtest.Eventually(t, 2*time.Second, "the job is released through /proc", func() bool {
		return !bound(t, d, id)
	})
}
