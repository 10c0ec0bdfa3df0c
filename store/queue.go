package store

import (
	"context"
	"strconv"
	"time"
)

// Priorities a token may have; 0 is the default.
const (
	MinPriority = -99
	MaxPriority = 99
)

// schedState is what the scheduler reads of one transaction's snapshot.
type schedState struct {
	pool  []PoolEntry
	jobs  map[uint64]Job
	queue []waiter
	held  map[string]int // token → units of its running jobs
}

// jobUnits is the units a running job holds: its model's, as recorded when
// it started; a job recorded before that counts its GPUs' units.
func jobUnits(j Job, pool []PoolEntry) int {
	if j.Units > 0 {
		return j.Units
	}
	n := 0
	for _, g := range pool {
		if g.Job == j.ID {
			n += g.Units
		}
	}
	return n
}

// loadSched reads the queue in order, and, when it is not empty, the pool,
// the jobs, and each waiting job's device and token.
func loadSched(tx Tx) (schedState, error) {
	var st schedState
	var ids []uint64
	err := tx.ForEachPrefix(bucketQueue, nil, func(_, v []byte) error {
		ids = append(ids, fromU64(v))
		return nil
	})
	if err != nil || len(ids) == 0 {
		return st, err
	}
	if st.pool, st.jobs, err = loadPoolJobs(tx); err != nil {
		return st, err
	}
	st.held = map[string]int{}
	for _, j := range st.jobs {
		if !j.Waiting {
			st.held[j.Token] += jobUnits(j, st.pool)
		}
	}
	tokens := map[string]Token{}
	for _, id := range ids {
		j, ok := st.jobs[id]
		if !ok {
			return st, errorf(KindIO, "The queue names job %d, which does not exist.", id)
		}
		var d Device
		if _, err := getJSON(tx, bucketDevices, u64(j.Device), &d); err != nil {
			return st, err
		}
		t, seen := tokens[j.Token]
		if !seen {
			if _, err := getJSON(tx, bucketTokens, []byte(j.Token), &t); err != nil {
				return st, err
			}
			tokens[j.Token] = t
		}
		st.queue = append(st.queue, waiter{job: j, units: d.ModelInfo().Units, maxUnits: t.MaxUnits, busy: d.Job})
	}
	return st, nil
}

// schedule starts every waiting job that plan says may start now: its GPUs
// are bound, its device runs it, it leaves the queue. Every transaction that
// frees GPUs, a device or quota, or queues a job, ends with it.
func (r *Registry) schedule(tx Tx) error {
	st, err := loadSched(tx)
	if err != nil || len(st.queue) == 0 {
		return err
	}
	starts, _ := plan(st.pool, st.queue, st.held, !r.noHold)
	now := r.now().UTC()
	for _, w := range st.queue {
		if gpus, ok := starts[w.job.ID]; ok {
			if err := startWaiting(tx, w, gpus, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// startWaiting moves a waiting job out of the queue onto its GPUs and device.
func startWaiting(tx Tx, w waiter, gpus []string, now time.Time) error {
	j := w.job
	if err := tx.Delete(bucketQueue, queueKey(j.Priority, j.ID)); err != nil {
		return err
	}
	for _, uuid := range gpus {
		if err := tx.Put(bucketBindings, []byte(uuid), u64(j.ID)); err != nil {
			return err
		}
	}
	var d Device
	if _, err := getJSON(tx, bucketDevices, u64(j.Device), &d); err != nil {
		return err
	}
	d.Job = j.ID
	if err := putJSON(tx, bucketDevices, u64(d.ID), d); err != nil {
		return err
	}
	j.Waiting, j.GPUs, j.Started, j.Units = false, gpus, now, w.units
	return putJSON(tx, bucketJobs, u64(j.ID), j)
}

// enqueue adds a new job to the queue and runs the scheduler, which may
// start it at once; it returns the job as it then is.
func (r *Registry) enqueue(tx Tx, j Job) (Job, error) {
	j.Waiting, j.Queued = true, r.now().UTC()
	if err := putJSON(tx, bucketJobs, u64(j.ID), j); err != nil {
		return j, err
	}
	if err := tx.Put(bucketQueue, queueKey(j.Priority, j.ID), u64(j.ID)); err != nil {
		return j, err
	}
	if err := r.schedule(tx); err != nil {
		return j, err
	}
	started, err := loadJob(tx, j.ID)
	if err != nil {
		return j, err
	}
	if !started.Waiting {
		started.Queued = time.Time{} // it never waited: its history says 0
		return started, putJSON(tx, bucketJobs, u64(j.ID), started)
	}
	return started, nil
}

// dequeue removes a waiting job: its processes are gone, or moved.
func (r *Registry) dequeue(tx Tx, j Job) error {
	if err := tx.Delete(bucketQueue, queueKey(j.Priority, j.ID)); err != nil {
		return err
	}
	if err := tx.Delete(bucketJobs, u64(j.ID)); err != nil {
		return err
	}
	return r.schedule(tx) // a job behind it on its device may start now
}

// QueueEntry is one waiting job and why it waits.
type QueueEntry struct {
	Job   Job
	Model string
	Wait  Wait
}

// Queue lists the waiting jobs in order, from one snapshot.
func (r *Registry) Queue(ctx context.Context) ([]QueueEntry, error) {
	var out []QueueEntry
	err := r.eng.View(ctx, func(tx Tx) error {
		out = nil
		st, err := loadSched(tx)
		if err != nil {
			return err
		}
		_, waits := plan(st.pool, st.queue, st.held, !r.noHold)
		for _, w := range st.queue {
			m, _ := modelOfUnits(tx, w.job.Device)
			out = append(out, QueueEntry{Job: w.job, Model: m, Wait: waits[w.job.ID]})
		}
		return nil
	})
	return out, ioError(err)
}

func modelOfUnits(tx Tx, device uint64) (string, error) {
	var d Device
	_, err := getJSON(tx, bucketDevices, u64(device), &d)
	return d.Model, err
}

// JobState is job id and, while it waits, why: one snapshot. A job that is
// gone is KindNoProcess.
func (r *Registry) JobState(ctx context.Context, id uint64) (Job, Wait, error) {
	var j Job
	var w Wait
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		if j, err = loadJob(tx, id); err != nil || !j.Waiting {
			return err
		}
		st, err := loadSched(tx)
		if err != nil {
			return err
		}
		_, waits := plan(st.pool, st.queue, st.held, !r.noHold)
		w = waits[id]
		return nil
	})
	return j, w, ioError(err)
}

// SetPriority changes a token's priority; its waiting jobs take their new
// places in the queue (keeping their arrival order), and may start.
func (r *Registry) SetPriority(ctx context.Context, name string, p int) error {
	if err := validPriority(p); err != nil {
		return err
	}
	return ioError(r.eng.Update(ctx, func(tx Tx) error {
		t, err := loadToken(tx, name)
		if err != nil {
			return err
		}
		t.Priority = p
		if err := putJSON(tx, bucketTokens, []byte(name), t); err != nil {
			return err
		}
		var moved []Job
		err = tx.ForEachPrefix(bucketQueue, nil, func(_, v []byte) error {
			j, err := loadJob(tx, fromU64(v))
			if err == nil && j.Token == name && j.Priority != p {
				moved = append(moved, j)
			}
			return err
		})
		if err != nil {
			return err
		}
		for _, j := range moved {
			if err := tx.Delete(bucketQueue, queueKey(j.Priority, j.ID)); err != nil {
				return err
			}
			j.Priority = p
			if err := tx.Put(bucketQueue, queueKey(p, j.ID), u64(j.ID)); err != nil {
				return err
			}
			if err := putJSON(tx, bucketJobs, u64(j.ID), j); err != nil {
				return err
			}
		}
		return r.schedule(tx)
	}))
}

// SetShared says whether a process attached to a device of the token that
// runs a job joins that job (true) or waits for it to end (false).
func (r *Registry) SetShared(ctx context.Context, name string, shared bool) error {
	return r.updateToken(ctx, name, func(t *Token) { t.Shared = shared })
}

// SetMaxUnits changes a token's unit quota (0: none); waiting jobs it now
// allows start.
func (r *Registry) SetMaxUnits(ctx context.Context, name string, n int) error {
	if n < 0 || n > MaxUnitsLimit {
		return errorf(KindInvalid, "A unit quota is a number from 1 to %d, or none, not %d.", MaxUnitsLimit, n)
	}
	return r.updateToken(ctx, name, func(t *Token) { t.MaxUnits = n })
}

// updateToken changes one token's record in one transaction, and starts the
// waiting jobs its new settings allow.
func (r *Registry) updateToken(ctx context.Context, name string, change func(*Token)) error {
	return ioError(r.eng.Update(ctx, func(tx Tx) error {
		t, err := loadToken(tx, name)
		if err != nil {
			return err
		}
		change(&t)
		if err := putJSON(tx, bucketTokens, []byte(name), t); err != nil {
			return err
		}
		return r.schedule(tx)
	}))
}

// MaxUnitsLimit bounds a unit quota: far beyond any pool.
const MaxUnitsLimit = 1_000_000

func validPriority(p int) error {
	if p < MinPriority || p > MaxPriority {
		return errorf(KindInvalid, "A priority is a number from %d to %d, not %d.", MinPriority, MaxPriority, p)
	}
	return nil
}

// ParsePriority reads a priority as written to admin/tokens/<n>/priority:
// one spelling per number (no '+', no leading zero, "-0" is not 0).
func ParsePriority(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return 0, errorf(KindInvalid, "%s is not a priority: write a number from %d to %d, such as 10.", quoteInput(s), MinPriority, MaxPriority)
	}
	return n, validPriority(n)
}

// ParseShared reads admin/tokens/<n>/shared: 0 or 1.
func ParseShared(s string) (bool, error) {
	switch s {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, errorf(KindInvalid, "%s is not 0 or 1: write 1 to let a token's processes join a device's running job, 0 to make them wait for it.", quoteInput(s))
}

// ParseMaxUnits reads admin/tokens/<n>/max_units: "none", or a number of
// units from 1, in one spelling.
func ParseMaxUnits(s string) (int, error) {
	if s == "none" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s || n < 1 || n > MaxUnitsLimit {
		return 0, errorf(KindInvalid, "%s is not a unit quota: write a number of GPU units from 1 to %d, such as 4, or none.", quoteInput(s), MaxUnitsLimit)
	}
	return n, nil
}

// FormatMaxUnits is how max_units shows a quota.
func FormatMaxUnits(n int) string {
	if n == 0 {
		return "none"
	}
	return strconv.Itoa(n)
}

// WaitedDevices is the devices of token that jobs wait for in the queue:
// one range read of the queue, and a record read per waiting job.
func (r *Registry) WaitedDevices(ctx context.Context, token string) (map[uint64]bool, error) {
	var out map[uint64]bool
	err := r.eng.View(ctx, func(tx Tx) error {
		all, err := waitedDevicesOf(tx, token)
		out = all
		return err
	})
	return out, ioError(err)
}

// DeviceWaiting lists the jobs that wait in the queue for device id of
// token, in queue order.
func (r *Registry) DeviceWaiting(ctx context.Context, token string, id uint64) ([]Job, error) {
	var out []Job
	err := r.eng.View(ctx, func(tx Tx) error {
		out = nil
		if _, err := loadDevice(tx, token, id); err != nil {
			return err
		}
		return tx.ForEachPrefix(bucketQueue, nil, func(_, v []byte) error {
			j, err := loadJob(tx, fromU64(v))
			if err == nil && j.Device == id && j.Token == token {
				out = append(out, j)
			}
			return err
		})
	})
	return out, ioError(err)
}
