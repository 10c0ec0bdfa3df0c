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
	mu        sync.Mutex
	state     map[uint64]*idleState
	overrides map[string]time.Duration // tokens' own timeouts (store.Token.IdleJobTimeout)
}

type idleState struct {
	memMiB   uint64    // at the last change
	active   time.Time // the last sample with work, or a change of memory
	warned   bool
	stopping bool
}

// idleWarning is how long before the reset a job is warned.
func idleWarning(timeout time.Duration) time.Duration { return min(timeout/4, 5*time.Minute) }

// SetIdleJobTimeout sets token's own idle-job timeout (0: the daemon's;
// store.IdleNever: off); the supervisor reads it with the jobs it changes.
func (rt *Runtime) SetIdleJobTimeout(ctx context.Context, token string, d time.Duration) error {
	defer rt.dirty.Store(true)
	return rt.reg.SetIdleJobTimeout(ctx, token, d)
}

// loadIdleOverrides reads the idle-job timeouts of the jobs' tokens, when the
// supervisor reads the jobs (after a commit), not on every sample.
func (rt *Runtime) loadIdleOverrides(ctx context.Context, jobs []store.Job) {
	var tokens []string
	for _, j := range jobs {
		if j.Node == rt.Node() || j.Node == "" {
			tokens = append(tokens, j.Token)
		}
	}
	overrides := map[string]time.Duration{}
	var err error
	if len(tokens) > 0 { // no transaction for a node without jobs
		overrides, err = rt.reg.IdleJobTimeouts(ctx, tokens)
	}
	if err != nil {
		rt.dirty.Store(true) // read again next round
		return
	}
	rt.idle.mu.Lock()
	rt.idle.overrides = overrides
	rt.idle.mu.Unlock()
}

// timeoutOf is the idle-job timeout of token's jobs; 0 or less is never.
func (f *idleJobs) timeoutOf(token string, daemon time.Duration) time.Duration {
	if d, ok := f.overrides[token]; ok {
		return d
	}
	return daemon
}

// check follows snap for every local job and stops those idle too long.
func (rt *Runtime) checkIdle(ctx context.Context, snap *gpu.Snapshot, jobs []store.Job) {
	f := &rt.idle
	f.mu.Lock()
	if rt.cfg.IdleJobTimeout <= 0 && len(f.overrides) == 0 {
		f.mu.Unlock()
		return
	}
	if f.state == nil {
		f.state = map[uint64]*idleState{}
	}
	live := map[uint64]bool{}
	var warn, stop []store.Job
	timeouts := map[uint64]time.Duration{}
	now := time.Now()
	for _, j := range jobs {
		timeout := f.timeoutOf(j.Token, rt.cfg.IdleJobTimeout)
		if timeout <= 0 {
			continue
		}
		timeouts[j.ID] = timeout
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
		timeout := timeouts[j.ID]
		why := store.Errorf(store.KindBusy, "Job %d has used its GPUs for nothing (0%% utilisation, memory unchanged): it will be reset in %s unless it works (idle-job timeout %s).", j.ID, idleWarning(timeout).Round(time.Second), timeout)
		rt.reg.Errors.Add(j.Token, store.Caller{}, "idle", jobPath(j), why)
		rt.cfg.Log.Warn("idle job warned", "job", j.ID, "token", j.Token, "device", j.Device, "reset_in", idleWarning(timeout))
	}
	for _, j := range stop {
		timeout := timeouts[j.ID]
		why := store.Errorf(store.KindBusy, "Job %d is reset: its GPUs were idle for %s (idle-job timeout).", j.ID, timeout)
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
