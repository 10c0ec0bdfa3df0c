package gpu

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/moreh-io/moreh/store"
)

// Background runs what keeps a node current until ctx ends: the sampler,
// and the job reaper, which also tells the probe which processes run where
// and the sampler which to name. wait returns once both have stopped.
func Background(ctx context.Context, reg *store.Registry, probe Probe, sampleEvery, reapEvery, idleTimeout time.Duration, log *slog.Logger) (sampler *Sampler, procs ProcFS, wait func()) {
	procs = ProcFS{Root: "/proc"}
	sampler = NewSampler(probe, sampleEvery, log)
	sampler.procs = procs
	var running sync.WaitGroup
	running.Go(func() { sampler.Run(ctx) })
	running.Go(func() {
		reg.WatchJobs(ctx, reapEvery, idleTimeout, procs, log, func(jobs []store.Job) {
			AssignJobs(probe, jobs)
			sampler.NameJobs(localJobs(jobs, reg.Node()))
		})
	})
	return sampler, procs, running.Wait
}

// localJobs are the jobs whose processes run on node: only their pids are
// this machine's.
func localJobs(jobs []store.Job, node string) []store.Job {
	var local []store.Job
	for _, j := range jobs {
		if j.Node == node || j.Node == "" {
			local = append(local, j)
		}
	}
	return local
}
