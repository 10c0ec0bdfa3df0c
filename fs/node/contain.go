package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moreh-io/moreh/fs/node/cgroup"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// Containment names how the runtime holds a job's processes, as the
// version file says it.
const (
	ContainmentCgroup = "cgroup"
	ContainmentProc   = "proc (background children can escape)"
)

// jobGroups is the runtime's half of containment by cgroups: the kernel
// keeps a job's processes, however they fork, in the job's cgroup and says
// when it empties; the runtime creates the cgroup on the first attach, ends
// the job in the store on the kernel's "empty", and removes the cgroup.
type jobGroups struct {
	mgr     *cgroup.Manager
	w       *cgroup.Watcher
	devices bool // BPF device programs load here: jobs open only their GPUs' nodes
	memory  bool // the subtree has the memory controller: figures from memory.current

	changed atomic.Bool // a job was attached or released: the probe learns it next round

	assignedUsec atomic.Uint64 // 1 + the jobs' CPU time when the probe last learned their processes; 0: unknown

	clockMu   sync.Mutex // cachedClock's last read
	clockAt   time.Time
	clockUsec uint64
	clockOK   bool

	// mu orders attach (store, then cgroup) against release (cgroup, then
	// store): a release never ends a job that an attach is filling.
	mu     sync.Mutex
	groups map[uint64]*jobGroup
}

// jobGroup is one job's cgroup and what the runtime knows of the job.
type jobGroup struct {
	g     *cgroup.Group
	job   store.Job     // as attached or found at start: for the log
	ended chan struct{} // closed once the job is released and its cgroup removed

	mu     sync.Mutex
	starts map[int]uint64 // the start times of its processes, read once per pid
}

// Containment says how jobs are held: ContainmentCgroup or ContainmentProc.
func (rt *Runtime) Containment() string {
	if rt.cg != nil {
		return ContainmentCgroup
	}
	return ContainmentProc
}

// gpuDevices is this node's GPU device nodes by UUID (those the probe knows).
func (rt *Runtime) gpuDevices() map[string]cgroup.Device {
	out := map[string]cgroup.Device{}
	for _, g := range rt.cfg.Probe.GPUs() {
		if g.Node.Known() {
			out[g.UUID] = cgroup.Device{Type: 'c', Major: g.Node.Major, Minor: g.Node.Minor}
		}
	}
	return out
}

// denied is the GPU nodes a job may not open: every GPU of this node not bound to it.
func (rt *Runtime) denied(job store.Job) []cgroup.Device {
	var deny []cgroup.Device
	bound := map[string]bool{}
	for _, uuid := range job.GPUs {
		bound[uuid] = true
	}
	for _, g := range rt.cfg.Probe.GPUs() {
		if d, ok := rt.gpuDevices()[g.UUID]; ok && !bound[g.UUID] {
			deny = append(deny, d)
		}
	}
	return deny
}

// ensureGroup returns the job's cgroup, creating it (confined to the job's
// GPUs before any process enters) on the first attach; c.mu is held.
func (rt *Runtime) ensureGroup(job store.Job) (*jobGroup, error) {
	c := rt.cg
	if jg, ok := c.groups[job.ID]; ok {
		return jg, nil
	}
	g, err := c.mgr.Create(job.ID)
	if errors.Is(err, os.ErrExist) {
		// A cgroup left by a store that was started afresh: killed groups
		// are removed, not reused; one still busy is not this job's.
		if old, oerr := c.mgr.Open(job.ID); oerr == nil && old.Remove() == nil {
			g, err = c.mgr.Create(job.ID)
		}
	}
	if err != nil {
		return nil, err
	}
	if c.devices {
		if err := g.SetDevices(rt.denied(job)); err != nil {
			g.Remove()
			return nil, err
		}
	}
	jg := &jobGroup{g: g, job: job, ended: make(chan struct{})}
	c.groups[job.ID] = jg
	return jg, nil
}

// clock is the jobs' CPU time in one read (the subtree's cpu.stat), noted
// as the time of this assignment: a sample that finds it unchanged reads
// nothing per job, since no process of a job ran, forked or exited.
func (c *jobGroups) clock() gpu.JobsClock {
	c.clockMu.Lock()
	usec, ok := c.readClock()
	c.clockMu.Unlock()
	if ok {
		c.assignedUsec.Store(usec + 1)
	} else {
		c.assignedUsec.Store(0)
	}
	return c.cachedClock
}

// clockReuse is how long one read of the jobs' clock serves: the sim's and
// the names' reads of one sample share it, and what runs meanwhile shows
// in the next sample.
const clockReuse = 10 * time.Millisecond

// cachedClock is the jobs' CPU time, read at most once per clockReuse.
func (c *jobGroups) cachedClock() (uint64, bool) {
	c.clockMu.Lock()
	defer c.clockMu.Unlock()
	if time.Since(c.clockAt) < clockReuse {
		return c.clockUsec, c.clockOK
	}
	return c.readClock()
}

// readClock reads the jobs' CPU time and keeps it for cachedClock and
// ranSinceAssign; clockMu is held.
func (c *jobGroups) readClock() (uint64, bool) {
	usec, err := c.mgr.CPUUsec()
	c.clockUsec, c.clockOK, c.clockAt = usec, err == nil, time.Now()
	return c.clockUsec, c.clockOK
}

// ranSinceAssign says whether a process of jobs may have run, forked or
// exited since the probe last learned their processes, by the clock the
// last sample read (no read of its own: what ran shows one sample later).
func (c *jobGroups) ranSinceAssign(jobs []store.Job) bool {
	if len(jobs) == 0 {
		return false
	}
	c.clockMu.Lock()
	usec, ok := c.clockUsec, c.clockOK
	c.clockMu.Unlock()
	return !ok || usec+1 != c.assignedUsec.Load()
}

// attachContained is Attach where jobs are cgroups: the store binds the GPUs
// (one transaction), the runtime makes the job's cgroup and moves the
// process in, and watches the cgroup for the kernel's "empty".
// A job that waits in the queue gets its cgroup at once, allowing no GPU
// node until it starts (followQueue replaces the filter).
func (rt *Runtime) attachContained(ctx context.Context, token string, id uint64, proc store.Proc, member uint64) (store.Job, error) {
	c := rt.cg
	c.mu.Lock()
	defer c.mu.Unlock()
	job, err := rt.reg.AttachMember(ctx, token, id, proc, member, true)
	if err != nil {
		return job, err
	}
	jg, err := rt.ensureGroup(job)
	if err != nil {
		rt.cfg.Log.Error("creating a job's cgroup", "job", job.ID, "err", err)
		if rt.unheld(job, proc) {
			rt.endStored(context.WithoutCancel(ctx), job) // nothing runs in it: the GPUs go back
		}
		return store.Job{}, store.Errorf(store.KindIO, "The cgroup of job %d could not be made (%v): the process was not attached.", job.ID, err)
	}
	jg.job = job
	addErr := jg.g.AddProc(proc.PID)
	if err := c.w.Watch(jg.g); err != nil { // an empty cgroup is reported at once
		rt.cfg.Log.Error("watching a job's cgroup", "job", job.ID, "err", err)
	}
	c.changed.Store(true)
	if addErr != nil {
		if errors.Is(addErr, syscall.ESRCH) {
			return store.Job{}, store.Errorf(store.KindNoProcess, "Process %d exited before it could join job %d.", proc.PID, job.ID)
		}
		return store.Job{}, store.Errorf(store.KindIO, "Process %d could not be moved into the cgroup of job %d: %v.", proc.PID, job.ID, addErr)
	}
	return job, nil
}

// unheld says whether a job whose cgroup could not be made holds nothing
// but proc, which never entered: started by this attach, and no cgroup of
// it has processes. A job that may run is never ended.
func (rt *Runtime) unheld(job store.Job, proc store.Proc) bool {
	if len(job.Procs) != 1 || job.Procs[0] != proc {
		return false
	}
	g, err := rt.cg.mgr.Open(job.ID)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	populated, err := g.Populated()
	return err == nil && !populated
}

// endStored ends a job in the store and logs it; a job already ended is no error.
func (rt *Runtime) endStored(ctx context.Context, job store.Job) error {
	err := rt.reg.EndJob(ctx, job.ID, store.EndExit) // a reset or idle stop marked its own reason
	if store.KindOf(err) == store.KindNoProcess {
		return nil
	}
	if err == nil {
		rt.cfg.Log.Info("job ended; GPUs released", "job", job.ID, "token", job.Token, "device", job.Device, "gpus", len(job.GPUs))
	}
	return err
}

// watchJobs releases jobs on the watcher's reports until ctx ends.
func (rt *Runtime) watchJobs(ctx context.Context) {
	c := rt.cg
	defer c.w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-c.w.Empty():
			rt.release(ctx, append([]uint64{id}, c.w.TakePending()...)...)
		}
	}
}

// release ends the jobs ids and removes their cgroups, those that are
// empty now: a report may be stale (an attach refilled it), and a cgroup
// that cannot be read is never taken for empty. Their ends go to the store
// together, so that jobs that ended together share commits.
func (rt *Runtime) release(ctx context.Context, ids ...uint64) {
	c := rt.cg
	c.mu.Lock()
	defer c.mu.Unlock()
	var empty []*jobGroup
	for _, id := range ids {
		jg, ok := c.groups[id]
		if !ok || slices.Contains(empty, jg) {
			continue
		}
		populated, err := jg.g.Populated()
		switch {
		case err != nil && !errors.Is(err, os.ErrNotExist):
			rt.cfg.Log.Error("reading a job's cgroup; the job keeps its GPUs", "job", id, "err", err)
			continue
		case err == nil && populated:
			continue
		}
		empty = append(empty, jg)
	}
	for _, jg := range empty {
		rt.notePeakMemory(jg)
	}
	errs := make([]error, len(empty))
	var ending sync.WaitGroup
	for i, jg := range empty {
		ending.Go(func() { errs[i] = rt.endStored(ctx, jg.job) }) // the store batches concurrent commits
	}
	ending.Wait()
	for i, jg := range empty {
		id := jg.g.ID()
		if err := errs[i]; err != nil {
			if ctx.Err() == nil {
				rt.cfg.Log.Error("ending a job; retrying", "job", id, "err", err)
				rt.retryRelease(ctx, id)
			}
			continue
		}
		if err := c.w.Unwatch(id); err != nil {
			rt.cfg.Log.Warn("unwatching a job's cgroup", "job", id, "err", err)
		}
		if err := jg.g.Remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
			rt.cfg.Log.Warn("removing a job's cgroup", "job", id, "err", err)
		}
		delete(c.groups, id)
		close(jg.ended)
		c.changed.Store(true)
	}
}

// notePeakMemory counts the job cgroup's memory.peak in its peak figure
// where the simulated GPUs show the job's memory (the sim, given the jobs'
// cgroups) and the memory controller keeps it: what no sample saw counts
// too. Elsewhere the figure stays the samples' highest (memory.current, or
// the processes' resident memory without the controller).
func (rt *Runtime) notePeakMemory(jg *jobGroup) {
	if _, simulated := rt.cfg.Probe.(gpu.JobAssigner); !simulated || !rt.cg.memory {
		return
	}
	if b, ok, err := jg.g.MemoryPeak(); err == nil && ok {
		rt.figures.notePeak(jg.g.ID(), b>>20)
	}
}

// retryRelease tries release again in a second: the store failed, the
// cgroup is empty, and the watcher will not report it again.
func (rt *Runtime) retryRelease(ctx context.Context, id uint64) {
	rt.running.Go(func() {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			rt.release(ctx, id)
		}
	})
}

// reconcile matches the store's jobs with the kernel's cgroups at start: a
// job whose cgroup has processes keeps its GPUs (whatever became of its
// recorded pids) and is watched again; one whose cgroup is empty or gone is
// released; a cgroup with no job is killed and removed once empty.
func (rt *Runtime) reconcile(ctx context.Context) error {
	c := rt.cg
	c.mu.Lock()
	defer c.mu.Unlock()
	jobs, err := rt.reg.Jobs(ctx)
	if err != nil {
		return err
	}
	inStore := map[uint64]bool{}
	for _, job := range jobs {
		if job.Node != rt.Node() && job.Node != "" {
			continue // another machine's
		}
		inStore[job.ID] = true
		g, err := c.mgr.Open(job.ID)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				rt.cfg.Log.Error("opening a job's cgroup; the job keeps its GPUs", "job", job.ID, "err", err)
				continue
			}
			if err := rt.endStored(ctx, job); err != nil {
				return err
			}
			continue
		}
		jg := &jobGroup{g: g, job: job, ended: make(chan struct{})}
		c.groups[job.ID] = jg
		if c.devices {
			if err := g.SetDevices(rt.denied(job)); err != nil {
				rt.cfg.Log.Error("confining a job's cgroup again", "job", job.ID, "err", err)
			}
		}
		// Watching an empty cgroup reports it at once: release does the rest.
		if err := c.w.Watch(g); err != nil {
			return err
		}
	}
	ids, err := c.mgr.List()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if inStore[id] {
			continue
		}
		g, err := c.mgr.Open(id)
		if err != nil {
			continue
		}
		// No job holds GPUs for it: its processes run unaccounted. End them.
		if err := g.Kill(); err != nil {
			rt.cfg.Log.Error("killing a cgroup with no job", "job", id, "err", err)
		} else {
			rt.cfg.Log.Warn("killing a cgroup with no job in the store", "job", id, "cgroup", g.Path())
		}
		c.groups[id] = &jobGroup{g: g, job: store.Job{ID: id}, ended: make(chan struct{})}
		if err := c.w.Watch(g); err != nil {
			return err
		}
	}
	return nil
}

// group is the running job's cgroup, or nil.
func (rt *Runtime) group(id uint64) *jobGroup {
	c := rt.cg
	if c == nil {
		return nil // jobs are not cgroups here
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.groups[id]
}

// groupProcs is the processes of a job's cgroup, named by pid and start;
// ok is false when the runtime holds no cgroup for it or cannot read it.
func (rt *Runtime) groupProcs(id uint64) (procs []store.Proc, ok bool) {
	if rt.cg == nil {
		return nil, false
	}
	jg := rt.group(id)
	if jg == nil {
		return nil, false
	}
	pids, err := jg.g.Procs()
	if err != nil {
		return nil, false
	}
	jg.mu.Lock()
	defer jg.mu.Unlock()
	starts := make(map[int]uint64, len(pids))
	for _, pid := range pids {
		start, known := jg.starts[pid] // a pid in the cgroup still is the process it was
		if !known {
			info, err := rt.cfg.Procs.Read(pid)
			if err != nil {
				continue
			}
			start = info.Start
		}
		starts[pid] = start
		procs = append(procs, store.Proc{PID: pid, Start: start})
	}
	jg.starts = starts
	return procs, true
}

// resetContained stops a job that is a cgroup: SIGTERM to each of its
// processes, SIGKILL to the whole cgroup after the grace, and an answer
// once the kernel says it is empty and the job is released. The request's
// end does not stop it; the runtime's end leaves the job bound and running.
func (rt *Runtime) resetContained(ctx context.Context, caller Caller, job store.Job, reason store.EndReason) error {
	jg := rt.group(job.ID)
	if jg == nil {
		if running, err := rt.reg.JobRunning(ctx, job.ID); err == nil && !running {
			return store.Errorf(store.KindNoProcess, "Job %d ended meanwhile: nothing to reset.", job.ID) // released as the reset came
		}
		return store.Errorf(store.KindIO, "Job %d has no cgroup on this machine: it cannot be reset here.", job.ID)
	}
	pids, err := jg.g.Procs()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return store.Errorf(store.KindIO, "The processes of job %d cannot be read (%v): nothing was stopped.", job.ID, err)
	}
	if caller.UID != 0 {
		if err := rt.procReadable(); err != nil {
			return err
		}
		if err := rt.mayReset(caller, job.ID, pids); err != nil {
			return err
		}
	}
	if err := rt.reg.MarkEnding(ctx, job.ID, reason); err != nil {
		if store.KindOf(err) == store.KindNoProcess {
			return nil // it ended meanwhile
		}
		return err
	}
	stopped := rt.stopped
	rt.cfg.Log.Info("resetting job: SIGTERM, then SIGKILL after the grace", "job", job.ID, "processes", len(pids), "grace", rt.cfg.ResetGrace)
	if err := jg.g.Signal(syscall.SIGTERM); err != nil {
		rt.cfg.Log.Warn("SIGTERM to a reset job", "job", job.ID, "err", err)
	}
	grace := time.NewTimer(rt.cfg.ResetGrace)
	defer grace.Stop()
	select {
	case <-jg.ended:
		return nil
	case <-stopped:
		return store.Errorf(store.KindIO, "The daemon is stopping: job %d keeps running and keeps its GPUs.", job.ID)
	case <-grace.C:
	}
	if err := jg.g.Kill(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return store.Errorf(store.KindIO, "Job %d could not be killed (%v): it keeps its GPUs.", job.ID, err)
	}
	select {
	case <-jg.ended:
		return nil
	case <-stopped:
		return store.Errorf(store.KindIO, "The daemon is stopping: job %d keeps its GPUs until its processes are gone.", job.ID)
	}
}

// procReadable says, as a KindIO sentence when not, whether /proc answers:
// a machine that cannot be read attaches, resets and ends nothing.
func (rt *Runtime) procReadable() error {
	if _, err := os.Stat(fmt.Sprintf("%s/%d/stat", rt.cfg.Procs.Root, os.Getpid())); err != nil {
		return store.Errorf(store.KindIO, "The process table %s cannot be read (%v): no process can be checked, so nothing was changed.", rt.cfg.Procs.Root, err)
	}
	return nil
}
