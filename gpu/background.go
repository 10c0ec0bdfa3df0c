package gpu

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/moreh-io/moreh/store"
)

// Background runs what keeps a node current until ctx ends: the sampler,
// and the job reaper, which also tells the probe which processes run where.
// wait returns once both have stopped.
func Background(ctx context.Context, reg *store.Registry, probe Probe, sampleEvery, reapEvery, idleTimeout time.Duration, log *slog.Logger) (sampler *Sampler, procs ProcFS, wait func()) {
	sampler = NewSampler(probe, sampleEvery, log)
	procs = ProcFS{Root: "/proc"}
	var running sync.WaitGroup
	running.Go(func() { sampler.Run(ctx) })
	running.Go(func() {
		reg.WatchJobs(ctx, reapEvery, idleTimeout, procs, log, func(jobs []store.Job) { AssignJobs(probe, jobs) })
	})
	return sampler, procs, running.Wait
}
