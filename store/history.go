package store

import (
	"context"
	"slices"
	"time"
)

// EndReason says how a job ended, in its history entry.
type EndReason string

const (
	EndExit   EndReason = "exit"   // its last process exited
	EndReset  EndReason = "reset"  // moreh-smi -r, or a write to reset
	EndFenced EndReason = "fenced" // its GPUs left the pool with their node
	EndIdle   EndReason = "idle"   // --idle-job-timeout took its GPUs back
	EndLeft   EndReason = "left"   // it left the queue before it started: its processes exited, or a reset
)

// JobFigures is what the node's sampler saw of a job over its life.
type JobFigures struct {
	PeakMiB         uint64 // the most GPU memory it held at once
	MeanUtilization int    // percent over its samples; NoFigure when none was taken
}

// NoFigure marks a figure no sample gave.
const NoFigure = -1

// HistoryEntry is one ended job, as tokens/<n>/history shows it.
type HistoryEntry struct {
	Job             uint64    `json:"job"`
	Token           string    `json:"token"`
	Device          uint64    `json:"device"`
	Model           string    `json:"model"`
	Units           int       `json:"units"`
	Nodes           []string  `json:"nodes"`
	GPUs            []string  `json:"gpus"`
	Started         time.Time `json:"started"`
	Ended           time.Time `json:"ended"`
	Reason          EndReason `json:"reason"`
	PeakMiB         uint64    `json:"peak_memory_mib"`
	MeanUtilization int       `json:"mean_utilization"` // NoFigure when never sampled
	Fits            string    `json:"fits"`             // the smallest model whose memory held the peak
	WaitedMillis    uint64    `json:"waited_ms"`        // how long it waited in the queue before it started
}

// UnitMillis is what the job consumed: its units times the milliseconds bound.
func (h HistoryEntry) UnitMillis() uint64 {
	return uint64(h.Units) * uint64(max(0, h.Ended.Sub(h.Started).Milliseconds()))
}

// OnJobFigures sets where the registry reads a job's figures when it ends
// (the node's runtime, which follows the sampler).
func (r *Registry) OnJobFigures(fn func(job uint64) JobFigures) {
	r.figures.Store(&fn)
}

func (r *Registry) jobFigures(job uint64) JobFigures {
	if fn := r.figures.Load(); fn != nil {
		return (*fn)(job)
	}
	return JobFigures{MeanUtilization: NoFigure}
}

// smallestFit is the model with the fewest units whose memory holds mib.
func smallestFit(mib uint64) string {
	ms := Models()
	slices.SortStableFunc(ms, func(a, b Model) int { return a.Units - b.Units })
	for _, m := range ms {
		if m.MemoryMiB() >= mib {
			return m.Name
		}
	}
	return ms[len(ms)-1].Name
}

// recordHistory adds j's entry to its token's history, drops the oldest
// beyond the keep, and adds what it consumed to the token, all inside tx.
func (r *Registry) recordHistory(tx Tx, j Job, model string, reason EndReason, now time.Time) error {
	m, _ := LookupModel(model)
	fig := r.jobFigures(j.ID)
	h := HistoryEntry{Job: j.ID, Token: j.Token, Device: j.Device, Model: m.Name, Units: m.Units, GPUs: j.GPUs,
		Started: j.Started, Ended: now.UTC(), Reason: reason, PeakMiB: fig.PeakMiB, MeanUtilization: fig.MeanUtilization,
		Fits: smallestFit(fig.PeakMiB)}
	if reason == EndLeft { // it held no GPU: no figures, nothing to fit
		h.PeakMiB, h.MeanUtilization, h.Fits = 0, NoFigure, "-"
	}
	if !j.Queued.IsZero() {
		h.WaitedMillis = uint64(max(0, j.Started.Sub(j.Queued).Milliseconds()))
	}
	for _, uuid := range j.GPUs {
		var g PoolGPU
		if found, err := getJSON(tx, bucketGPUs, []byte(uuid), &g); err == nil && found && !slices.Contains(h.Nodes, g.Node) {
			h.Nodes = append(h.Nodes, g.Node)
		}
	}
	if len(h.Nodes) == 0 && j.Node != "" {
		h.Nodes = []string{j.Node}
	}
	if err := putJSON(tx, bucketHistory, tokenDeviceKey(j.Token, j.ID), h); err != nil {
		return err
	}
	var keys [][]byte
	err := tx.ForEachPrefix(bucketHistory, tokenDevicePrefix(j.Token), func(k, _ []byte) error {
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys[:max(0, len(keys)-r.opts.HistoryKeep)] { // oldest first: job ids only grow
		if err := tx.Delete(bucketHistory, k); err != nil {
			return err
		}
	}
	var t Token
	if found, err := getJSON(tx, bucketTokens, []byte(j.Token), &t); err != nil || !found {
		return err
	}
	t.UnitMillis += h.UnitMillis()
	return putJSON(tx, bucketTokens, []byte(t.Name), t)
}

// History lists token's ended jobs, oldest first.
func (r *Registry) History(ctx context.Context, token string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := r.eng.View(ctx, func(tx Tx) error {
		if _, err := loadToken(tx, token); err != nil {
			return err
		}
		return tx.ForEachPrefix(bucketHistory, tokenDevicePrefix(token), func(k, v []byte) error {
			var h HistoryEntry
			err := decodeJSON(bucketHistory, k, v, &h)
			out = append(out, h)
			return err
		})
	})
	return out, ioError(err)
}
