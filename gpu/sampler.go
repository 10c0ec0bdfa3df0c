package gpu

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Snapshot is the probe's last complete reading.
type Snapshot struct {
	Time      time.Time
	Readings  map[int]Reading // by GPU index
	Processes []Process
	names     map[int]procName // of the NameJobs processes, by pid, read after the figures
}

// ProcessMiB is the GPU memory of pid over all its GPUs.
func (s *Snapshot) ProcessMiB(pid int) uint64 {
	var mib uint64
	for _, p := range s.Processes {
		if p.PID == pid {
			mib += p.MemoryMiB
		}
	}
	return mib
}

// Sampler keeps the probe's figures fresh in the background so that no read
// of a file waits on hardware: readers take the last snapshot, and a probe
// call that hangs only delays the next one.
type Sampler struct {
	probe     Probe
	every     time.Duration
	log       *slog.Logger
	latest    atomic.Pointer[Snapshot]
	running   atomic.Bool
	kick      chan struct{}
	procs     ProcFS                     // where names are read
	named     atomic.Pointer[namedProcs] // whose names each sample reads (NameProcesses)
	namesMu   sync.Mutex                 // orders readNames of overlapping samples
	lastNames namesRead
	onSample  func(*Snapshot) // OnSample's
	sampling  sync.WaitGroup  // the sample in flight, joined when Run returns
}

// NewSampler samples p every interval once Run starts.
func NewSampler(p Probe, every time.Duration, log *slog.Logger) *Sampler {
	s := &Sampler{probe: p, every: every, log: log, kick: make(chan struct{}, 1), procs: ProcFS{Root: "/proc"}}
	s.latest.Store(&Snapshot{Readings: map[int]Reading{}})
	return s
}

// Latest returns the last snapshot; it never blocks.
func (s *Sampler) Latest() *Snapshot { return s.latest.Load() }

// Kick asks for a sample now, e.g. after a job started.
func (s *Sampler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run samples until ctx ends; it returns once the sample in flight ends,
// or after hungProbeWait when the probe hangs (that goroutine is then the
// probe's: it ends when the hung call does).
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	defer s.joinSample()
	for {
		s.start(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// start takes one sample in its own goroutine, unless one is still running.
func (s *Sampler) start(ctx context.Context) {
	if !s.running.CompareAndSwap(false, true) {
		return
	}
	s.sampling.Go(func() {
		defer s.running.Store(false)
		s.store(s.sample(ctx))
	})
}

// hungProbeWait bounds how long shutdown waits for a probe call.
const hungProbeWait = 2 * time.Second

func (s *Sampler) joinSample() {
	done := make(chan struct{})
	go func() { s.sampling.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(hungProbeWait):
		s.log.Warn("gpu probe still busy at shutdown; not waiting for it", "backend", s.probe.Name())
	}
}

// SampleNow takes one sample in the caller's goroutine: for start-up and tests.
func (s *Sampler) SampleNow(ctx context.Context) { s.store(s.sample(ctx)) }

// OnSample makes f see every snapshot once it is the latest, in the
// sampler's goroutine: figures that take the most over samples miss none.
// Set it before Run.
func (s *Sampler) OnSample(f func(*Snapshot)) { s.onSample = f }

func (s *Sampler) store(snap *Snapshot) {
	s.latest.Store(snap)
	if s.onSample != nil {
		s.onSample(snap)
	}
}

func (s *Sampler) sample(ctx context.Context) *Snapshot {
	snap := &Snapshot{Time: time.Now(), Readings: map[int]Reading{}}
	readings, err := s.probe.Sample(ctx)
	if err != nil {
		s.log.Warn("gpu sample failed", "backend", s.probe.Name(), "err", err)
	}
	for _, r := range readings {
		if r.Err != nil {
			s.log.Warn("gpu unreadable", "backend", s.probe.Name(), "gpu", r.Index, "err", r.Err)
		}
		snap.Readings[r.Index] = r
	}
	if snap.Processes, err = s.probe.Processes(ctx); err != nil {
		s.log.Warn("gpu processes failed", "backend", s.probe.Name(), "err", err)
	}
	snap.names = s.readNames()
	return snap
}
