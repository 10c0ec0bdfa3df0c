package store

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// ProcessTable is what the reaper knows of the machine's processes.
type ProcessTable interface {
	// Alive reports whether p still runs: same pid, same start, not a zombie.
	Alive(p Proc) bool
	// Descendants lists the live processes started, directly or not, by procs.
	Descendants(procs []Proc) []Proc
}

// Reap brings every job up to date with the machine's processes: children
// join their job, dead processes leave it, and a job with none left ends,
// its GPUs going back to the pool. It returns the ended jobs.
func (r *Registry) Reap(pt ProcessTable) ([]Job, error) {
	jobs, err := r.Jobs()
	if err != nil {
		return nil, err
	}
	pool, err := r.Pool()
	if err != nil {
		return nil, err
	}
	inPool := map[string]bool{}
	for _, g := range pool {
		inPool[g.UUID] = true
	}
	inJob := map[Proc]bool{}
	for _, j := range jobs {
		for _, p := range j.Procs {
			inJob[p] = true
		}
	}
	var ended []Job
	for _, j := range jobs {
		if slices.ContainsFunc(j.GPUs, func(uuid string) bool { return !inPool[uuid] }) {
			// A GPU left the pool with its node: the job cannot go on.
			if err := r.EndJob(j.ID); err != nil && KindOf(err) != KindNoProcess {
				return ended, err
			}
			ended = append(ended, j)
			continue
		}
		if j.Node != r.opts.Node && j.Node != "" {
			continue // its processes are another node's to watch
		}
		var alive, dead []Proc
		for _, p := range j.Procs {
			if pt.Alive(p) {
				alive = append(alive, p)
			} else {
				dead = append(dead, p)
			}
		}
		var born []Proc
		for _, p := range pt.Descendants(alive) {
			if !inJob[p] { // a child attached to another device belongs there
				born = append(born, p)
			}
		}
		if len(dead) == 0 && len(born) == 0 {
			continue
		}
		over, err := r.updateJobProcs(j.ID, dead, born)
		if err != nil {
			return ended, err
		}
		if over {
			ended = append(ended, j)
		}
	}
	return ended, nil
}

// updateJobProcs removes dead and adds born to a job in one transaction, so
// that a process attached meanwhile is kept; a job left empty ends.
func (r *Registry) updateJobProcs(id uint64, dead, born []Proc) (ended bool, err error) {
	err = r.eng.Update(func(tx Tx) error {
		j, err := loadJob(tx, id)
		if err != nil {
			return nil // ended meanwhile
		}
		procs := slices.DeleteFunc(j.Procs, func(p Proc) bool { return slices.Contains(dead, p) })
		for _, p := range born {
			if !slices.Contains(procs, p) {
				procs = append(procs, p)
			}
		}
		if ended = len(procs) == 0; ended {
			return endJob(tx, id, r.now())
		}
		j.Procs = procs
		return putJSON(tx, bucketJobs, u64(id), j)
	})
	return ended, ioError(err)
}

// WatchJobs reaps jobs every interval (first at once, which releases the
// jobs that died while the daemon was down) and, with idleTimeout > 0,
// removes devices idle for that long. onTick, if set, sees the jobs after
// each round. It returns when ctx ends.
func (r *Registry) WatchJobs(ctx context.Context, every, idleTimeout time.Duration, pt ProcessTable, log *slog.Logger, onTick func([]Job)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ended, err := r.Reap(pt)
		if err != nil {
			log.Error("reaping jobs", "err", err)
		}
		for _, j := range ended {
			log.Info("job ended; GPUs released", "job", j.ID, "token", j.Token, "device", j.Device, "gpus", len(j.GPUs))
		}
		if idleTimeout > 0 {
			removed, err := r.RemoveIdle(r.now().Add(-idleTimeout))
			if err != nil {
				log.Error("removing idle devices", "err", err)
			}
			for _, d := range removed {
				log.Info("idle device removed", "token", d.Token, "id", d.ID, "idle_timeout", idleTimeout)
			}
		}
		if err := r.refreshTokens(); err != nil {
			log.Error("counting tokens", "err", err)
		}
		if onTick != nil {
			if jobs, err := r.Jobs(); err == nil {
				onTick(jobs)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
