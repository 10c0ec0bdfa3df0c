package node

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// idleJobs takes GPUs back from jobs that hold them and do nothing: a job
// whose GPUs show 0% utilisation and unchanged memory for IdleJobTimeout is
// warned once, at the timeout less min(timeout/4, 5 min), then reset and
// recorded as idle.
type idleJobs struct {
	mu    sync.Mutex
	state map[uint64]*idleState
}

type idleState struct {
	memMiB   uint64    // at the last change
	active   time.Time // the last sample with work, or a change of memory
	warned   bool
	stopping bool
}

// idleWarning is how long before the reset a job is warned.
func idleWarning(timeout time.Duration) time.Duration { return min(timeout/4, 5*time.Minute) }

// check follows snap for every local job and stops those idle too long.
func (rt *Runtime) checkIdle(ctx context.Context, snap *gpu.Snapshot, jobs []store.Job) {
	timeout := rt.cfg.IdleJobTimeout
	if timeout <= 0 {
		return
	}
	f := &rt.idle
	f.mu.Lock()
	if f.state == nil {
		f.state = map[uint64]*idleState{}
	}
	live := map[uint64]bool{}
	var warn, stop []store.Job
	now := time.Now()
	for _, j := range jobs {
		live[j.ID] = true
		used, busy, n := rt.jobReading(snap, j)
		s := f.state[j.ID]
		if s == nil {
			s = &idleState{memMiB: used, active: now}
			f.state[j.ID] = s
		}
		if n == 0 || busy > 0 || used != s.memMiB {
			s.memMiB, s.active, s.warned = used, now, false
			continue
		}
		idle := now.Sub(s.active)
		switch {
		case idle >= timeout && !s.stopping:
			s.stopping = true
			stop = append(stop, j)
		case idle >= timeout-idleWarning(timeout) && !s.warned:
			s.warned = true
			warn = append(warn, j)
		}
	}
	for id := range f.state {
		if !live[id] {
			delete(f.state, id)
		}
	}
	f.mu.Unlock()

	for _, j := range warn {
		why := store.Errorf(store.KindBusy, "Job %d has used its GPUs for nothing (0%% utilisation, memory unchanged): it will be reset in %s unless it works (--idle-job-timeout %s).", j.ID, idleWarning(timeout).Round(time.Second), timeout)
		rt.reg.Errors.Add(j.Token, store.Caller{}, "idle", jobPath(j), why)
		rt.cfg.Log.Warn("idle job warned", "job", j.ID, "token", j.Token, "device", j.Device, "reset_in", idleWarning(timeout))
	}
	for _, j := range stop {
		why := store.Errorf(store.KindBusy, "Job %d is reset: its GPUs were idle for %s (--idle-job-timeout).", j.ID, timeout)
		rt.reg.Errors.Add(j.Token, store.Caller{}, "idle", jobPath(j), why)
		rt.cfg.Log.Info("idle job reset", "job", j.ID, "token", j.Token, "device", j.Device, "idle_job_timeout", timeout)
		rt.running.Go(func() { // the grace runs on without holding up the supervisor
			if err := rt.stopJob(ctx, j, store.EndIdle); err != nil {
				rt.cfg.Log.Error("resetting an idle job", "job", j.ID, "err", err)
			}
		})
	}
}

func jobPath(j store.Job) string {
	return "tokens/" + j.Token + "/devices/" + strconv.FormatUint(j.Device, 10)
}
