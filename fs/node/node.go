// Package node is the runtime of one machine: its background work
// (sampling, job supervision, idle removal, token refresh), process control
// (attach, terminate, reset, checked against the caller), and the views
// that join the registry's records with the probe's readings by
// (node, GPU UUID). The tree (fs) calls it; it calls store and gpu, which
// know nothing of each other. No FUSE type and no errno lives here.
package node

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moreh-io/moreh/fs/node/cgroup"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// Config is what the daemon hands the runtime.
type Config struct {
	Registry    *store.Registry
	Probe       gpu.Probe
	Procs       gpu.ProcFS    // the machine's processes; /proc when empty
	SampleEvery time.Duration // between probe samples; default 1s
	ReapEvery   time.Duration // between job checks; default 200ms, well under the promised second
	IdleTimeout time.Duration // remove devices without a job for this long; 0 is off
	// IdleJobTimeout resets a job whose GPUs did nothing for this long; 0 is off.
	IdleJobTimeout time.Duration
	ResetGrace     time.Duration // between SIGTERM and SIGKILL when a job is reset; default 5s
	UnitMiB        uint64        // GPU memory per pool unit; default store.UnitMiB
	Log            *slog.Logger

	// Cgroups, when set, makes each job a cgroup under this subtree: the
	// kernel keeps its processes and says when they are gone, and no
	// /proc walk runs. Nil is the /proc supervision, which background
	// children can escape.
	Cgroups *cgroup.Manager
	// NoDevicePrograms says BPF device programs cannot be loaded here: jobs
	// are still cgroups, without device isolation.
	NoDevicePrograms bool
}

// Runtime is one machine's share of the pool.
type Runtime struct {
	cfg      Config
	reg      *store.Registry
	sampler  *gpu.Sampler
	index    map[string]int              // this node's GPUs: UUID → probe index
	lastJobs atomic.Pointer[[]store.Job] // this node's jobs as the supervisor saw them last
	figures  jobFigures                  // what the sampler saw of each local job
	idle     idleJobs                    // how long each local job did nothing
	dirty    atomic.Bool                 // this runtime wrote jobs: the supervisor reads them again
	// The supervisor's own: what it saw last.
	seenRemote   uint64
	idleDue      time.Time     // when the idle-device check is next due
	followedSnap *gpu.Snapshot // the sample the jobs' figures last counted
	running      sync.WaitGroup
	cg           *jobGroups    // nil: jobs are supervised through /proc
	stopped      chan struct{} // closed once Start's context ends
	rounds       atomic.Uint64 // supervisor rounds so far
	queue        queueWaiters  // this node's jobs that wait in the queue
	lateNames    atomic.Pointer[lateNames]
}

// New prepares the runtime; Start begins its background work.
func New(cfg Config) *Runtime {
	if cfg.Procs.Root == "" {
		cfg.Procs.Root = "/proc"
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = time.Second
	}
	if cfg.ReapEvery == 0 {
		cfg.ReapEvery = 200 * time.Millisecond
	}
	if cfg.ResetGrace == 0 {
		cfg.ResetGrace = 5 * time.Second
	}
	if cfg.UnitMiB == 0 {
		cfg.UnitMiB = store.UnitMiB
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	rt := &Runtime{cfg: cfg, reg: cfg.Registry, sampler: gpu.NewSampler(cfg.Probe, cfg.SampleEvery, cfg.Log), index: map[string]int{}, stopped: make(chan struct{})}
	for _, g := range cfg.Probe.GPUs() {
		rt.index[g.UUID] = g.Index
	}
	rt.queue.init()
	rt.reg.OnJobFigures(rt.figures.of)
	rt.sampler.OnSample(func(snap *gpu.Snapshot) { // every sample counts in the jobs' figures, not only those a round sees
		if jobs := rt.lastJobs.Load(); jobs != nil {
			rt.figures.observe(rt, snap, jobs)
		}
	})
	if cfg.Cgroups != nil {
		w, err := cgroup.NewWatcher()
		if err != nil {
			cfg.Log.Warn("containment: proc (background children can escape)", "reason", err)
			return rt
		}
		rt.cg = &jobGroups{mgr: cfg.Cgroups, w: w, devices: !cfg.NoDevicePrograms, groups: map[uint64]*jobGroup{},
			memory: slices.Contains(cfg.Cgroups.Controllers(), "memory")}
	}
	return rt
}

// Registry is the store the runtime works on.
func (rt *Runtime) Registry() *store.Registry { return rt.reg }

// Node is this machine's name in the pool.
func (rt *Runtime) Node() string { return rt.reg.Node() }

// RegisterGPUs makes the probe's inventory this node's part of the pool and
// returns the jobs that ended because a GPU of theirs is gone.
func (rt *Runtime) RegisterGPUs(ctx context.Context) ([]uint64, error) {
	defer rt.dirty.Store(true)
	return rt.reg.SetPool(ctx, poolGPUs(rt.cfg.Probe.GPUs(), rt.cfg.UnitMiB))
}

// poolGPUs turns an inventory into pool entries: each GPU gives
// floor(memory / unitMiB) units.
func poolGPUs(gpus []gpu.GPU, unitMiB uint64) []store.PoolGPU {
	out := make([]store.PoolGPU, len(gpus))
	for i, g := range gpus {
		out[i] = store.PoolGPU{UUID: g.UUID, Index: g.Index, Name: g.Name, Units: int(g.MemoryTotalMiB / unitMiB), MemoryMiB: g.MemoryTotalMiB}
	}
	return out
}

// Start runs the sampler, the job supervisor, and the followers of the
// store's session and of other nodes' changes until ctx ends; Wait joins
// them. Where jobs are cgroups it first matches the store's jobs with the
// kernel's cgroups (reconcile), then releases jobs on the kernel's events.
func (rt *Runtime) Start(ctx context.Context) {
	if rt.cg != nil {
		if err := rt.reconcile(ctx); err != nil {
			rt.cfg.Log.Error("matching jobs with their cgroups", "err", err)
		}
		rt.running.Go(func() { rt.watchJobs(ctx) })
	}
	rt.running.Go(func() { <-ctx.Done(); close(rt.stopped) })
	rt.running.Go(func() { rt.sampler.Run(ctx) })
	rt.running.Go(func() { rt.supervise(ctx) })
	rt.running.Go(func() { rt.keepPlace(ctx) })
	rt.running.Go(func() { rt.reg.FollowOthers(ctx) })
	rt.running.Go(func() { rt.followQueue(ctx) })
}

// Wait returns once everything Start began has stopped.
func (rt *Runtime) Wait() { rt.running.Wait() }

// SampledAt is when the probe was last read.
func (rt *Runtime) SampledAt() time.Time { return rt.sampler.Latest().Time }

// SampleNow reads the probe in the caller's goroutine: for start-up and tests.
func (rt *Runtime) SampleNow(ctx context.Context) { rt.sampler.SampleNow(ctx) }
