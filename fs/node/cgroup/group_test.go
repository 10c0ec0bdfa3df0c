package cgroup

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Each script leaves a sleep behind that bash does not wait for; the job must
// hold it until it is killed.
func TestEscapedChildrenKeepTheJob(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	for i, tc := range []struct{ name, script string }{
		{"background child", "sleep 60 >/dev/null 2>&1 &"},
		{"double fork", "( sleep 60 >/dev/null 2>&1 & ) ; exit 0"},
		{"setsid", "setsid -f sleep 60 >/dev/null 2>&1"},
		{"nohup", "nohup sleep 60 >/dev/null 2>&1 &"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := create(t, m, uint64(100+i))
			cmd := exec.Command("bash", "-c", tc.script)
			startIn(t, g, cmd)
			if err := w.Watch(g); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("bash: %v", err)
			}
			// bash has exited; what is left is the escaped child (sleep, or bash's fork about to exec it).
			pids, err := g.Procs()
			if err != nil || len(pids) != 1 || pids[0] == cmd.Process.Pid {
				t.Fatalf("after bash %d exited: Procs() = %v (%v), want its one escaped child", cmd.Process.Pid, pids, err)
			}
			if ok, err := g.Populated(); !ok || err != nil {
				t.Fatalf("Populated() = %v, %v while sleep %d lives", ok, err, pids[0])
			}
			if err := g.Remove(); !errors.Is(err, unix.EBUSY) {
				t.Fatalf("Remove while populated: %v, want EBUSY", err)
			}
			if err := g.Kill(); err != nil {
				t.Fatal(err)
			}
			waitEmpty(t, w, g.ID())
			if ok, err := g.Populated(); ok || err != nil {
				t.Fatalf("Populated() = %v, %v after the empty event", ok, err)
			}
			if err := g.Remove(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestKillEndsAProcessIgnoringTERM(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	g := create(t, m, 1)
	cmd := startReady(t, g, "trap '' TERM; echo ready; exec sleep 60")
	if err := w.Watch(g); err != nil {
		t.Fatal(err)
	}
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// An ignored signal is discarded when sent, so the process is alive now.
	if ok, _ := g.Populated(); !ok {
		t.Fatal("the job emptied on SIGTERM, which it ignores")
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, w, g.ID())
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("sleep ended with %v, want killed", err)
	}
}

// killEach is Kill on kernels without cgroup.kill; this one has it, so the
// fallback is driven directly, on a job that forks as fast as it can.
func TestKillEachWithoutCgroupKill(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	g := create(t, m, 1)
	cmd := startReady(t, g, "trap '' TERM; sleep 60 & sleep 60 & echo ready; while :; do /bin/true; done")
	if err := w.Watch(g); err != nil {
		t.Fatal(err)
	}
	if err := g.killEach(); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, w, g.ID())
	cmd.Wait()
	if frozen, _, _ := readKeyed(g.file("cgroup.events"), "frozen"); frozen != 0 {
		t.Errorf("the job was left frozen")
	}
}

func TestAProcessMovesBetweenJobs(t *testing.T) {
	m := testManager(t)
	a, b := create(t, m, 1), create(t, m, 2)
	cmd := exec.Command("sleep", "60")
	startIn(t, a, cmd)
	defer cmd.Wait()
	pid := cmd.Process.Pid
	if err := b.AddProc(pid); err != nil {
		t.Fatal(err)
	}
	pa, _ := a.Procs()
	pb, _ := b.Procs()
	if len(pa) != 0 || !slices.Equal(pb, []int{pid}) {
		t.Errorf("after the move: job 1 has %v, job 2 has %v; want [] and [%d]", pa, pb, pid)
	}
	if got, want := cgroupOf(t, pid), "/"+relToRoot(t, b.Path()); got != want {
		t.Errorf("/proc/%d/cgroup = %s, want %s", pid, got, want)
	}
	if err := a.AddProc(0); err == nil {
		t.Error("AddProc(0) succeeded")
	}
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
}

func TestFigures(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	g := create(t, m, 1)
	before, err := g.CPUUsec()
	if err != nil || before != 0 {
		t.Fatalf("CPUUsec of a new job = %d, %v; want 0", before, err)
	}
	cmd := exec.Command("bash", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; head -c 16777216 /dev/zero | tail -c 1 >/dev/null")
	startIn(t, g, cmd)
	if err := w.Watch(g); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, w, g.ID())
	cmd.Wait()
	used, err := g.CPUUsec()
	if err != nil || used < 1000 {
		t.Errorf("CPUUsec after a busy loop = %d µs, %v; want at least 1 ms", used, err)
	}
	cur, ok, err := g.MemoryCurrent()
	peak, okPeak, errPeak := g.MemoryPeak()
	if err != nil || errPeak != nil {
		t.Fatal(err, errPeak)
	}
	memory := slices.Contains(m.Controllers(), "memory")
	if ok != memory {
		t.Errorf("MemoryCurrent ok = %v with the memory controller %v", ok, memory)
	}
	if okPeak && peak < 1<<20 {
		t.Errorf("MemoryPeak = %d after bash and a 16 MiB pipe, want ≥ 1 MiB", peak)
	}
	t.Logf("cpu %d µs; memory.current %d (%v), memory.peak %d (%v)", used, cur, ok, peak, okPeak)

	// The subtree counts every job's CPU time, a removed job's too: the
	// supervisor's one read that says whether any job ran.
	all, err := m.CPUUsec()
	if err != nil || all < used {
		t.Errorf("the subtree's CPUUsec = %d µs, %v; want at least its job's %d", all, err, used)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if after, err := m.CPUUsec(); err != nil || after < all {
		t.Errorf("the subtree's CPUUsec after its job was removed = %d µs, %v; want at least %d", after, err, all)
	}
	if _, err := g.CPUUsec(); err == nil {
		t.Error("CPUUsec of a removed job answered")
	}
}

func relToRoot(t *testing.T, path string) string {
	root, err := FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimPrefix(path, root), "/")
}

// Signal reaches every process of the job, the background ones bash left too.
func TestSignalReachesEveryProcess(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	g := create(t, m, 1)
	cmd := startReady(t, g, "sleep 60 >/dev/null 2>&1 & sleep 60 >/dev/null 2>&1 & echo ready; wait")
	if pids, err := g.Procs(); err != nil || len(pids) != 3 {
		t.Fatalf("Procs() = %v, %v; want bash and two sleeps", pids, err)
	}
	if err := w.Watch(g); err != nil {
		t.Fatal(err)
	}
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, w, 1)
	cmd.Wait()
}
