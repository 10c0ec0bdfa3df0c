package node

import (
	"context"
	"slices"
	"time"

	"github.com/moreh-io/moreh/fs/node/cgroup"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// supervise checks jobs every ReapEvery (first at once, which releases the
// jobs that died while the daemon was down) and removes idle devices, until
// ctx ends. What other nodes change of tokens reaches the registry through
// FollowOthers, not by polling.
func (rt *Runtime) supervise(ctx context.Context) {
	t := time.NewTicker(rt.cfg.ReapEvery)
	defer t.Stop()
	for {
		rt.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round is one pass of the supervisor: reap, remove idle devices, then tell
// the probe and the sampler which processes run where. It reads the store
// only when something may have changed there: a write of this node's
// runtime, another node's change seen by the watch, a process of a local
// job that ended or was born (where jobs are cgroups, the kernel's event),
// or the idle-device check's second. Where jobs are cgroups a round costs
// nothing per job, and the probe learns which processes run where once
// per sample.
func (rt *Runtime) Round(ctx context.Context) {
	remote := rt.reg.RemoteChanges()
	n := rt.rounds.Add(1) - 1
	changedHere := rt.dirty.Swap(false)
	if rt.cg != nil && rt.cg.changed.Swap(false) {
		changedHere = true
	}
	if jobs := rt.lastJobs.Load(); jobs != nil && !changedHere && remote == rt.seenRemote && !rt.idleDevicesDue() &&
		(rt.cg != nil || !rt.procsChanged(*jobs)) {
		if rt.cg != nil && n%uint64(max(1, rt.cfg.SampleEvery/rt.cfg.ReapEvery)) == 0 && rt.cg.ranSinceAssign(*jobs) {
			rt.assign(ctx, *jobs) // new processes of the jobs' cgroups, for the probe
		}
		if snap := rt.sampler.Latest(); snap != rt.followedSnap {
			rt.followFigures(ctx, *jobs) // the same jobs: only a new sample adds to their figures
		}
		return
	}
	log := rt.cfg.Log
	log.Debug("supervisor reads the store", "remote_changes", remote-rt.seenRemote)
	rt.seenRemote = remote
	var table store.ProcessTable = procTable{rt}
	if rt.cg != nil {
		table = kernelKept{}
	}
	ended, err := rt.reg.Reap(ctx, table)
	if err != nil && ctx.Err() == nil {
		log.Error("reaping jobs", "err", err)
		rt.dirty.Store(true) // try again next round
	}
	for _, j := range ended {
		log.Info("job ended; GPUs released", "job", j.ID, "token", j.Token, "device", j.Device, "gpus", len(j.GPUs))
	}
	if rt.idleDevicesDue() {
		now := time.Now()
		removed, oldest, err := rt.reg.RemoveIdle(ctx, now.Add(-rt.cfg.IdleTimeout))
		// The next device due is the oldest one left, or one idle from now on.
		rt.idleDue = now.Add(rt.cfg.IdleTimeout)
		if !oldest.IsZero() && oldest.Add(rt.cfg.IdleTimeout).Before(rt.idleDue) {
			rt.idleDue = oldest.Add(rt.cfg.IdleTimeout)
		}
		if err != nil && ctx.Err() == nil {
			log.Error("removing idle devices", "err", err)
			rt.idleDue = now.Add(time.Second) // try again
		}
		for _, d := range removed {
			log.Info("idle device removed", "token", d.Token, "id", d.ID, "idle_timeout", rt.cfg.IdleTimeout)
		}
	}
	if jobs, err := rt.reg.Jobs(ctx); err == nil {
		rt.loadIdleOverrides(ctx, jobs)
		rt.assign(ctx, jobs)
	} else {
		rt.dirty.Store(true) // read again next round
	}
}

// followFigures counts the last sample for each local job's idle time
// (its history figures count every sample: the sampler's OnSample).
func (rt *Runtime) followFigures(ctx context.Context, jobs []store.Job) {
	snap := rt.sampler.Latest()
	rt.followedSnap = snap
	rt.checkIdle(ctx, snap, jobs)
}

// procsChanged reports whether a process of a local job ended, or one was
// born to it: the store's record of the job must follow (/proc supervision).
func (rt *Runtime) procsChanged(jobs []store.Job) bool {
	pt := procTable{rt}
	held := map[store.Proc]bool{}
	var all []store.Proc
	for _, j := range jobs {
		for _, p := range j.Procs {
			if !pt.Alive(p) {
				return true
			}
			held[p] = true
			all = append(all, p)
		}
	}
	return slices.ContainsFunc(pt.Descendants(all), func(p store.Proc) bool { return !held[p] })
}

// idleDevicesDue says when the idle-device check, which reads every
// device, runs again: when the oldest idle device it left is due, never on
// a tick.
func (rt *Runtime) idleDevicesDue() bool {
	return rt.cfg.IdleTimeout > 0 && !time.Now().Before(rt.idleDue)
}

// assign tells a probe that cannot see processes by itself (the sim) which
// of this node's GPUs each job process runs on, and the sampler whose names
// to read.
func (rt *Runtime) assign(ctx context.Context, jobs []store.Job) {
	var clock gpu.JobsClock
	if rt.cg != nil {
		clock = rt.cg.clock() // before the reads: what runs meanwhile shows next round
	}
	var named []gpu.ProcID
	var local []store.Job
	var whole []gpu.JobFigures
	assigned := map[int][]int{}
	for _, j := range jobs {
		if j.Node != rt.Node() && j.Node != "" {
			continue // its processes are another machine's
		}
		local = append(local, j)
		var gpus []int
		for _, uuid := range j.GPUs {
			if i, ok := rt.index[uuid]; ok {
				gpus = append(gpus, i)
			}
		}
		for _, p := range rt.jobProcs(j) {
			assigned[p.PID] = gpus
			named = append(named, procID(p))
		}
		if rt.cg != nil {
			if jg := rt.group(j.ID); jg != nil {
				whole = append(whole, gpu.JobFigures{ID: j.ID, GPUs: gpus, Meter: groupMeter{jg.g, rt.cg.memory}})
			} else {
				clock = nil // its processes are not under the clock's cgroup
			}
		}
	}
	if len(local) == 0 {
		clock = nil // nothing to measure: no read at all
	}
	if a, ok := rt.cfg.Probe.(gpu.Assigner); ok {
		a.Assign(assigned)
	}
	if a, ok := rt.cfg.Probe.(gpu.JobAssigner); ok {
		a.AssignJobs(whole, clock)
	}
	rt.sampler.NameProcesses(named, clock)
	rt.followFigures(ctx, local)
	if prev := rt.lastJobs.Swap(&local); prev != nil {
		rt.fenceVanished(ctx, *prev, local)
	}
}

// fenceVanished kills what still runs of a job of this node that the store
// ended elsewhere (another node's reaper, when this one's lease lapsed): its
// GPUs may be bound to another job already.
// A process moved to another job meanwhile is that job's.
func (rt *Runtime) fenceVanished(ctx context.Context, prev, cur []store.Job) {
	held := map[store.Proc]bool{}
	for _, c := range cur {
		for _, p := range c.Procs {
			held[p] = true
		}
	}
	for _, j := range prev {
		if slices.ContainsFunc(cur, func(c store.Job) bool { return c.ID == j.ID }) {
			continue
		}
		if !rt.stillRuns(j, held) {
			continue
		}
		// cur may predate an attach that noted j: only a fresh read that
		// finds no j ends it.
		if running, err := rt.reg.JobRunning(ctx, j.ID); err == nil && !running {
			rt.fenceJob(ctx, j)
		}
	}
}

// stillRuns says whether anything of job j runs here that no current job
// holds: where jobs are cgroups, its cgroup has processes. A job without a
// cgroup here (released by this runtime, its cgroup removed, or one whose
// pid never entered it) holds no process: its recorded pids are not its.
func (rt *Runtime) stillRuns(j store.Job, held map[store.Proc]bool) bool {
	if rt.cg != nil {
		jg := rt.group(j.ID)
		if jg == nil {
			return false
		}
		populated, err := jg.g.Populated()
		return err == nil && populated
	}
	return slices.ContainsFunc(j.Procs, func(p store.Proc) bool { return !held[p] && rt.cfg.Procs.Alive(procID(p)) })
}

// procTable is the machine's processes as the registry's reaper asks for
// them. A process that cannot be seen because /proc cannot be read is alive.
type procTable struct{ rt *Runtime }

var _ store.ProcessTable = procTable{}

func (p procTable) Readable() error { return p.rt.procReadable() }

func (p procTable) Alive(proc store.Proc) bool {
	return p.rt.cfg.Procs.Alive(procID(proc)) || p.rt.procReadable() != nil
}

func (p procTable) Descendants(procs []store.Proc) []store.Proc {
	var out []store.Proc
	for _, c := range p.rt.cfg.Procs.Descendants(procIDs(procs)) {
		if child := (store.Proc{PID: c.PID, Start: c.Start}); !slices.Contains(out, child) {
			out = append(out, child)
		}
	}
	return out
}

func procID(p store.Proc) gpu.ProcID { return gpu.ProcID{PID: p.PID, Start: p.Start} }

func procIDs(procs []store.Proc) []gpu.ProcID {
	ids := make([]gpu.ProcID, len(procs))
	for i, p := range procs {
		ids[i] = procID(p)
	}
	return ids
}

// kernelKept is the reaper's table where jobs are cgroups: every recorded
// process counts as alive and none is followed, since the job's cgroup, not
// its record, says when it ends (the watcher's report).
type kernelKept struct{}

var _ store.ProcessTable = kernelKept{}

func (kernelKept) Readable() error                       { return nil }
func (kernelKept) Alive(store.Proc) bool                 { return true }
func (kernelKept) Descendants([]store.Proc) []store.Proc { return nil }

// groupMeter reads a job's figures from its cgroup: memory where the memory
// controller is on, CPU time from cpu.stat (there with or without the cpu
// controller).
type groupMeter struct {
	g      *cgroup.Group
	memory bool // the subtree has the memory controller
}

func (m groupMeter) MemoryBytes() (uint64, bool) {
	if !m.memory {
		return 0, false
	}
	b, ok, err := m.g.MemoryCurrent()
	return b, ok && err == nil
}

func (m groupMeter) CPUUsec() (uint64, bool) {
	usec, err := m.g.CPUUsec()
	return usec, err == nil
}
