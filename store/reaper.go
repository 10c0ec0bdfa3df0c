package store

import (
	"context"
	"slices"
)

// ProcessTable is what the reaper knows of the machine's processes.
type ProcessTable interface {
	// Readable says whether the table can be read at all: a machine that
	// cannot be read ends no job.
	Readable() error
	// Alive reports whether p still runs: same pid, same start, not a zombie.
	Alive(p Proc) bool
	// Descendants lists the live processes started, directly or not, by procs.
	Descendants(procs []Proc) []Proc
}

// Reap brings every job up to date with the machine's processes: children
// join their job, dead processes leave it, and a job with none left ends,
// its GPUs going back to the pool. It returns the ended jobs.
//
// When the table cannot be read, Reap ends no job for its processes (only
// those whose GPUs left the pool) and returns a KindIO error: a process
// that cannot be seen is not taken for dead.
func (r *Registry) Reap(ctx context.Context, pt ProcessTable) ([]Job, error) {
	unreadable := pt.Readable()
	jobs, err := r.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	pool, err := r.Pool(ctx)
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
			if err := r.EndJob(ctx, j.ID, EndFenced); err != nil && KindOf(err) != KindNoProcess {
				return ended, err
			}
			ended = append(ended, j)
			continue
		}
		if j.Node != r.opts.Node && j.Node != "" || unreadable != nil {
			continue // its processes are another node's to watch, or cannot be seen now
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
		over, err := r.updateJobProcs(ctx, j.ID, dead, born)
		if err != nil {
			return ended, err
		}
		if over {
			ended = append(ended, j)
		}
	}
	if unreadable != nil {
		return ended, errorf(KindIO, "The process table cannot be read (%v): no job is ended until it can.", unreadable)
	}
	return ended, nil
}

// updateJobProcs removes dead and adds born to a job in one transaction, so
// that a process attached meanwhile is kept; a job left empty ends.
func (r *Registry) updateJobProcs(ctx context.Context, id uint64, dead, born []Proc) (ended bool, err error) {
	err = r.eng.Update(ctx, func(tx Tx) error {
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
			return r.endJob(tx, id, EndExit)
		}
		j.Procs = procs
		return putJSON(tx, bucketJobs, u64(id), j)
	})
	return ended, ioError(err)
}
