package node

import (
	"context"
	"slices"
	"time"

	"github.com/moreh-io/moreh/store"
)

// keepPlace registers this node's GPUs again whenever the store grants it a
// new session after its lease lapsed (etcd), retrying each ReapEvery until
// a registration commits, until ctx ends.
func (rt *Runtime) keepPlace(ctx context.Context) {
	changes := rt.reg.SessionChanges()
	if changes == nil {
		return // bbolt: the node cannot lose its place
	}
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-changes:
			if c == store.SessionLost {
				rt.cfg.Log.Warn("lost the store session: this node's GPUs left the pool until etcd answers again")
				rt.fence(ctx)
				retry = nil
				continue
			}
		case <-retry:
		}
		if _, err := rt.RegisterGPUs(ctx); err != nil {
			rt.cfg.Log.Error("registering the GPUs again", "err", err)
			retry = time.After(rt.cfg.ReapEvery)
			continue
		}
		retry = nil
		rt.cfg.Log.Info("store session renewed; this node's GPUs are in the pool again", "gpus", len(rt.cfg.Probe.GPUs()))
	}
}

// fence kills the processes of every job on this node's GPUs: their GPUs
// left the pool with the lease and may be bound to another job at once, so
// nothing of the old job may still use them. The store may not answer now:
// the jobs are those the supervisor saw last.
func (rt *Runtime) fence(ctx context.Context) {
	jobs := rt.lastJobs.Load()
	if jobs == nil {
		return
	}
	for _, j := range *jobs {
		rt.fenceJob(ctx, j)
	}
}

// fenceJob kills a job's processes at once and says why in its token's
// errors and the log.
func (rt *Runtime) fenceJob(ctx context.Context, j store.Job) {
	if jg := rt.group(j.ID); jg != nil {
		if err := jg.g.Kill(); err != nil {
			rt.cfg.Log.Error("killing a fenced job's cgroup", "job", j.ID, "err", err)
		}
	} else {
		rt.cfg.Procs.Terminate(context.WithoutCancel(ctx), procIDs(j.Procs), 0)
	}
	why := store.Errorf(store.KindIO, "Job %d was ended (fenced): this node lost its place in the pool, and its GPUs may serve another job.", j.ID)
	rt.reg.Errors.Add(j.Token, store.Caller{}, "fence", jobPath(j), why)
	rt.cfg.Log.Warn("job fenced: its GPUs left the pool with the lease", "job", j.ID, "token", j.Token, "device", j.Device)
}

// noteJob adds a job just attached here to the ones the supervisor saw, so
// that a lease lost before its next round still fences it.
func (rt *Runtime) noteJob(job store.Job) {
	defer rt.dirty.Store(true)
	for {
		old := rt.lastJobs.Load()
		var jobs []store.Job
		if old != nil {
			jobs = slices.DeleteFunc(slices.Clone(*old), func(j store.Job) bool { return j.ID == job.ID })
		}
		jobs = append(jobs, job)
		if rt.lastJobs.CompareAndSwap(old, &jobs) {
			return
		}
	}
}
