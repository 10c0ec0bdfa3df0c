package node

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/moreh-io/moreh/fs/node/cgroup"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// testRegistry is a fresh bbolt registry.
func testRegistry(t *testing.T) *store.Registry {
	t.Helper()
	eng, err := store.OpenBolt(filepath.Join(t.TempDir(), "moreh.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	reg, err := store.Open(t.Context(), eng, store.Options{Key: []byte("a test key of thirty-two bytes!!")})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func testRuntime(t *testing.T, reg *store.Registry, cfg Config) *Runtime {
	t.Helper()
	probe, err := gpu.NewSim("sim:2x64GB")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registry, cfg.Probe = reg, probe
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	rt := New(cfg)
	if _, err := rt.RegisterGPUs(t.Context()); err != nil {
		t.Fatal(err)
	}
	return rt
}

// liveProc runs a process until the test ends.
func liveProc(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// TestUnreadableMachineEndsNothing: where /proc cannot be read, attach and
// reset answer EIO with a sentence, and the supervisor ends no live job.
func TestUnreadableMachineEndsNothing(t *testing.T) {
	ctx := t.Context()
	reg := testRegistry(t)
	seeing := testRuntime(t, reg, Config{})
	d, err := reg.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	pid := liveProc(t)
	if _, err := seeing.Attach(ctx, Caller{}, "default", d.ID, strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	blind := testRuntime(t, reg, Config{Procs: gpu.ProcFS{Root: t.TempDir()}}) // a /proc with nothing in it
	for range 3 {
		blind.Round(ctx)
	}
	if _, job, err := reg.DeviceJob(ctx, "default", d.ID); err != nil || job.ID == 0 {
		t.Fatalf("a round that could not read /proc ended the job: %+v, %v", job, err)
	}
	other, err := reg.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	_, err = blind.Attach(ctx, Caller{UID: 0}, "default", other.ID, strconv.Itoa(liveProc(t)))
	if store.KindOf(err) != store.KindIO {
		t.Errorf("attach without /proc = %v, want KindIO", err)
	}
	err = blind.Reset(ctx, Caller{UID: 1000}, "default", d.ID, "1")
	if store.KindOf(err) != store.KindIO {
		t.Errorf("reset without /proc = %v, want KindIO", err)
	}
	if err == nil || len(err.Error()) < 20 {
		t.Errorf("no sentence: %v", err)
	}
	// Seen again, the live job stays and a dead one ends.
	seeing.Round(ctx)
	if _, job, _ := reg.DeviceJob(ctx, "default", d.ID); job.ID == 0 {
		t.Errorf("the job ended though its process runs")
	}
}

// TestJobIsACgroup: through the runtime, a job's process and what it forks
// live in the job's cgroup; the job ends on the kernel's event, and the
// cgroup goes with it.
func TestJobIsACgroup(t *testing.T) {
	root, err := cgroup.FindRoot()
	if err != nil {
		t.Skipf("no writable cgroup v2 hierarchy: %v", err)
	}
	dir := filepath.Join(root, "moreh-nodetest-"+strconv.Itoa(os.Getpid()))
	m, err := cgroup.New(dir)
	if err != nil {
		t.Skipf("no writable cgroup v2 subtree: %v", err)
	}
	t.Cleanup(func() { // what this test made, whatever state it failed in
		ids, _ := m.List()
		for _, id := range ids {
			if g, err := m.Open(id); err == nil {
				g.Kill()
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); <-time.After(10 * time.Millisecond) {
					if populated, err := g.Populated(); err != nil || !populated {
						break
					}
				}
				g.Remove()
			}
		}
		os.Remove(dir)
	})
	ctx, cancel := context.WithCancel(context.Background())
	reg := testRegistry(t)
	rt := testRuntime(t, reg, Config{Cgroups: m})
	if rt.Containment() != ContainmentCgroup {
		t.Fatalf("containment = %q", rt.Containment())
	}
	rt.Start(ctx)
	t.Cleanup(func() { cancel(); rt.Wait() })
	d, err := reg.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", "read _; sleep 600 & read _")
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	job, err := rt.Attach(ctx, Caller{}, "default", d.ID, strconv.Itoa(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	jg := rt.group(job.ID)
	if jg == nil {
		t.Fatal("no cgroup for the job")
	}
	in.Write([]byte("fork\n"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, _ := jg.g.Procs()
		if len(pids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job's cgroup holds %v, want the shell and its child", pids)
		}
		<-time.After(10 * time.Millisecond)
	}
	in.Close()
	cmd.Wait()
	if _, job, _ := reg.DeviceJob(ctx, "default", d.ID); job.ID == 0 {
		t.Fatal("the job ended while the shell's child runs")
	}
	if err := jg.g.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-jg.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the job was not released after its cgroup emptied")
	}
	if _, job, _ := reg.DeviceJob(ctx, "default", d.ID); job.ID != 0 {
		t.Errorf("the store still runs job %d", job.ID)
	}
	if _, err := os.Stat(jg.g.Path()); !os.IsNotExist(err) {
		t.Errorf("the job's cgroup is still there: %v", err)
	}
}

// TestFenceSparesPidsOutsideCgroups: where jobs are cgroups, a job that
// vanished from the store with no cgroup here (released by this runtime,
// or a restart between the store's commit and the move) holds no process:
// its recorded pid, now perhaps nobody's or another job's, is not killed.
func TestFenceSparesPidsOutsideCgroups(t *testing.T) {
	root, err := cgroup.FindRoot()
	if err != nil {
		t.Skipf("no writable cgroup v2 hierarchy: %v", err)
	}
	dir := filepath.Join(root, "moreh-fencetest-"+strconv.Itoa(os.Getpid()))
	m, err := cgroup.New(dir)
	if err != nil {
		t.Skipf("no writable cgroup v2 subtree: %v", err)
	}
	t.Cleanup(func() { os.Remove(dir) }) // no job cgroup is made
	ctx := t.Context()
	reg := testRegistry(t)
	rt := testRuntime(t, reg, Config{Cgroups: m})
	if rt.Containment() != ContainmentCgroup {
		t.Fatalf("containment = %q", rt.Containment())
	}
	d, err := reg.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	pid := liveProc(t)
	info, err := rt.cfg.Procs.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	job, err := reg.Attach(ctx, "default", d.ID, store.Proc{PID: pid, Start: info.Start}) // the store's half only
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.EndJob(ctx, job.ID, store.EndExit); err != nil {
		t.Fatal(err)
	}
	rt.fenceVanished(ctx, []store.Job{job}, nil)
	if info, err := rt.cfg.Procs.Read(pid); err != nil || info.State == 'Z' {
		t.Errorf("process %d, recorded by a job with no cgroup, was killed by the fence (%v, state %c)", pid, err, info.State)
	}
}
