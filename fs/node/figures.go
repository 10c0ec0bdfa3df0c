package node

import (
	"sync"
	"time"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// jobFigures follows each local job through the sampler's snapshots: the
// most memory its GPUs held at once and its mean utilisation, which the
// registry records in the job's history entry when it ends.
type jobFigures struct {
	mu       sync.Mutex
	lastSeen time.Time    // the snapshot last counted
	pruned   *[]store.Job // the jobs byJob was last pruned to
	byJob    map[uint64]*figureSum
}

type figureSum struct {
	peakMiB          uint64
	utilSum, samples int
}

// observe counts snap once for every job of *list, and forgets jobs that
// are gone when the list is a new one (the supervisor's after a change).
func (f *jobFigures) observe(rt *Runtime, snap *gpu.Snapshot, list *[]store.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byJob == nil {
		f.byJob = map[uint64]*figureSum{}
	}
	jobs := *list
	if list != f.pruned {
		f.pruned = list
		live := map[uint64]bool{}
		for _, j := range jobs {
			live[j.ID] = true
		}
		for id := range f.byJob {
			if !live[id] {
				delete(f.byJob, id)
			}
		}
	}
	if snap.Time.Equal(f.lastSeen) {
		return
	}
	f.lastSeen = snap.Time
	for _, j := range jobs {
		used, busy, n := rt.jobReading(snap, j)
		if n == 0 {
			continue
		}
		s := f.byJob[j.ID]
		if s == nil {
			s = &figureSum{}
			f.byJob[j.ID] = s
		}
		s.peakMiB = max(s.peakMiB, used)
		s.utilSum += busy
		s.samples++
	}
}

// notePeak raises job's peak memory to mib, a figure the kernel kept
// between samples (the cgroup's memory.peak).
func (f *jobFigures) notePeak(job, mib uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byJob == nil {
		f.byJob = map[uint64]*figureSum{}
	}
	s := f.byJob[job]
	if s == nil {
		s = &figureSum{}
		f.byJob[job] = s
	}
	s.peakMiB = max(s.peakMiB, mib)
}

// of is job's figures so far: the registry's OnJobFigures.
func (f *jobFigures) of(job uint64) store.JobFigures {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.byJob[job]
	if s == nil {
		return store.JobFigures{MeanUtilization: store.NoFigure}
	}
	if s.samples == 0 {
		return store.JobFigures{PeakMiB: s.peakMiB, MeanUtilization: store.NoFigure}
	}
	return store.JobFigures{PeakMiB: s.peakMiB, MeanUtilization: s.utilSum / s.samples}
}
