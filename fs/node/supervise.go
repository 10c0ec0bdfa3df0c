package node

import (
	"context"
	"slices"
	"time"

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
// job that ended or was born, or the idle-device check's second.
func (rt *Runtime) Round(ctx context.Context) {
	remote := rt.reg.RemoteChanges()
	if jobs := rt.lastJobs.Load(); jobs != nil && !rt.dirty.Swap(false) && remote == rt.seenRemote &&
		!rt.procsChanged(*jobs) && !rt.idleDevicesDue() {
		snap := rt.sampler.Latest()
		rt.figures.observe(rt, snap, *jobs)
		rt.checkIdle(ctx, snap, *jobs)
		return
	}
	log := rt.cfg.Log
	log.Debug("supervisor reads the store", "remote_changes", remote-rt.seenRemote)
	rt.seenRemote = remote
	ended, err := rt.reg.Reap(ctx, procTable{rt.cfg.Procs})
	if err != nil && ctx.Err() == nil {
		log.Error("reaping jobs", "err", err)
	}
	for _, j := range ended {
		log.Info("job ended; GPUs released", "job", j.ID, "token", j.Token, "device", j.Device, "gpus", len(j.GPUs))
	}
	if rt.cfg.IdleTimeout > 0 {
		rt.idleCheckedAt = time.Now()
		removed, err := rt.reg.RemoveIdle(ctx, time.Now().Add(-rt.cfg.IdleTimeout))
		if err != nil && ctx.Err() == nil {
			log.Error("removing idle devices", "err", err)
		}
		for _, d := range removed {
			log.Info("idle device removed", "token", d.Token, "id", d.ID, "idle_timeout", rt.cfg.IdleTimeout)
		}
	}
	if jobs, err := rt.reg.Jobs(ctx); err == nil {
		rt.assign(ctx, jobs)
	} else {
		rt.dirty.Store(true) // read again next round
	}
}

// procsChanged reports whether a process of a local job ended, or one was
// born to it: the store's record of the job must follow.
func (rt *Runtime) procsChanged(jobs []store.Job) bool {
	pt := procTable{rt.cfg.Procs}
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

// idleDevicesDue says when the idle-device check, which needs the store,
// runs again: once a second at most.
func (rt *Runtime) idleDevicesDue() bool {
	return rt.cfg.IdleTimeout > 0 && time.Since(rt.idleCheckedAt) >= min(time.Second, rt.cfg.IdleTimeout/4)
}

// assign tells a probe that cannot see processes by itself (the sim) which
// of this node's GPUs each job process runs on, and the sampler whose names
// to read.
func (rt *Runtime) assign(ctx context.Context, jobs []store.Job) {
	var named []gpu.ProcID
	var local []store.Job
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
		for _, p := range j.Procs {
			assigned[p.PID] = gpus
			named = append(named, procID(p))
		}
	}
	if a, ok := rt.cfg.Probe.(gpu.Assigner); ok {
		a.Assign(assigned)
	}
	rt.sampler.NameProcesses(named)
	rt.figures.observe(rt, rt.sampler.Latest(), local)
	rt.checkIdle(ctx, rt.sampler.Latest(), local)
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
		j.Procs = slices.DeleteFunc(slices.Clone(j.Procs), func(p store.Proc) bool { return held[p] || !rt.cfg.Procs.Alive(procID(p)) })
		if len(j.Procs) == 0 {
			continue
		}
		// cur may predate an attach that noted j: only a fresh read that
		// finds no j ends it.
		if running, err := rt.reg.JobRunning(ctx, j.ID); err == nil && !running {
			rt.fenceJob(ctx, j)
		}
	}
}

// procTable is the machine's processes as the registry's reaper asks for them.
type procTable struct{ procs gpu.ProcFS }

var _ store.ProcessTable = procTable{}

func (p procTable) Alive(proc store.Proc) bool { return p.procs.Alive(procID(proc)) }

func (p procTable) Descendants(procs []store.Proc) []store.Proc {
	var out []store.Proc
	for _, c := range p.procs.Descendants(procIDs(procs)) {
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
