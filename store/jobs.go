package store

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"time"
)

// SetPool makes gpus the pool's GPUs of this node, replacing what it had;
// on etcd they leave the pool with the node's lease. Jobs bound to a GPU
// that left are ended; their ids are returned.
func (r *Registry) SetPool(ctx context.Context, gpus []PoolGPU) (ended []uint64, err error) {
	node := r.opts.Node
	err = r.eng.Update(ctx, func(tx Tx) error {
		ended = nil
		keep := map[string]bool{}
		for _, g := range gpus {
			g.Node = node
			keep[g.UUID] = true
			raw, err := json.Marshal(g)
			if err != nil {
				return err
			}
			if err := tx.PutEphemeral(bucketGPUs, []byte(g.UUID), raw); err != nil {
				return err
			}
		}
		var gone []string
		err := tx.ForEachPrefix(bucketGPUs, nil, func(k, v []byte) error {
			var g PoolGPU
			if err := decodeJSON(bucketGPUs, k, v, &g); err != nil {
				return err
			}
			if g.Node == node && !keep[g.UUID] {
				gone = append(gone, g.UUID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, uuid := range gone {
			if job := fromU64(tx.Get(bucketBindings, []byte(uuid))); job != 0 {
				if err := r.endJob(tx, job, EndFenced); err != nil {
					return err
				}
				ended = append(ended, job)
			}
			if err := tx.Delete(bucketGPUs, []byte(uuid)); err != nil {
				return err
			}
		}
		return r.schedule(tx) // new GPUs may start waiting jobs
	})
	return ended, ioError(err)
}

// PoolEntry is a GPU of the pool and what holds it.
type PoolEntry struct {
	PoolGPU
	Job    uint64 // 0 when free
	Token  string
	Device uint64
}

// Pool lists the pool's GPUs by node and index, with their bindings.
func (r *Registry) Pool(ctx context.Context) ([]PoolEntry, error) {
	var pool []PoolEntry
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		pool, err = loadPool(tx)
		return err
	})
	return pool, ioError(err)
}

func loadPool(tx Tx) ([]PoolEntry, error) {
	pool, _, err := loadPoolJobs(tx)
	return pool, err
}

// loadPoolJobs is loadPool with the jobs it read, by id.
func loadPoolJobs(tx Tx) ([]PoolEntry, map[uint64]Job, error) {
	// Three range reads, whatever the pool's size: one round trip each on etcd.
	jobs := map[uint64]Job{}
	err := tx.ForEachPrefix(bucketJobs, nil, func(k, v []byte) error {
		var j Job
		err := decodeJSON(bucketJobs, k, v, &j)
		jobs[j.ID] = j
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	bound := map[string]uint64{}
	err = tx.ForEachPrefix(bucketBindings, nil, func(k, v []byte) error {
		bound[string(k)] = fromU64(v)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var pool []PoolEntry
	err = tx.ForEachPrefix(bucketGPUs, nil, func(k, v []byte) error {
		var e PoolEntry
		if err := decodeJSON(bucketGPUs, k, v, &e.PoolGPU); err != nil {
			return err
		}
		if e.Job = bound[string(k)]; e.Job != 0 {
			j, ok := jobs[e.Job]
			if !ok {
				return errorf(KindIO, "GPU %s is bound to job %d, which does not exist.", e.UUID, e.Job)
			}
			e.Token, e.Device = j.Token, j.Device
		}
		pool = append(pool, e)
		return nil
	})
	sort.Slice(pool, func(i, j int) bool {
		if pool[i].Node != pool[j].Node {
			return pool[i].Node < pool[j].Node
		}
		return pool[i].Index < pool[j].Index
	})
	return pool, jobs, err
}

// Attach adds proc to a job of device id: to the job it is in already, or,
// on a shared token, to the device's job; otherwise it starts a new job,
// which waits in the queue (Job.Waiting) until the scheduler gives it its
// GPUs, its device and its token's quota allow. KindNoSpace when the whole
// pool is too small for the model, KindQuota when the token's unit quota is.
func (r *Registry) Attach(ctx context.Context, token string, id uint64, proc Proc) (Job, error) {
	return r.attach(ctx, token, id, proc, 0, true)
}

// AttachContained is Attach for jobs that are cgroups: the process's record
// moves from any other job as the kernel moves the process, but a job left
// with no recorded process is not ended, since its cgroup may still hold the
// children of the one that moved; the caller ends it (EndJob) once the
// kernel says the cgroup is empty.
func (r *Registry) AttachContained(ctx context.Context, token string, id uint64, proc Proc) (Job, error) {
	return r.attach(ctx, token, id, proc, 0, false)
}

// AttachMember is Attach (contained: AttachContained) of a process that the
// node knows is part of job member already (its cgroup, or a child of its
// processes): it stays in that job when the job is this device's.
func (r *Registry) AttachMember(ctx context.Context, token string, id uint64, proc Proc, member uint64, contained bool) (Job, error) {
	return r.attach(ctx, token, id, proc, member, !contained)
}

func (r *Registry) attach(ctx context.Context, token string, id uint64, proc Proc, member uint64, endEmpty bool) (Job, error) {
	var job Job
	err := r.eng.Update(ctx, func(tx Tx) error {
		d, err := loadDevice(tx, token, id)
		if err != nil {
			return err
		}
		t, err := loadToken(tx, token)
		if err != nil {
			return err
		}
		join, err := jobToJoin(tx, d, t, proc, member)
		if err != nil {
			return err
		}
		// As with cgroups, a process is in one job: attaching moves it.
		if err := r.detachElsewhere(tx, proc, join, endEmpty); err != nil {
			return err
		}
		if join != 0 {
			if job, err = loadJob(tx, join); err != nil {
				return err
			}
			if !slices.Contains(job.Procs, proc) {
				job.Procs = append(job.Procs, proc)
			}
			return putJSON(tx, bucketJobs, u64(job.ID), job)
		}
		if err := mayEverFit(tx, d, t); err != nil {
			return err
		}
		jobID, err := nextJobID(tx)
		if err != nil {
			return err
		}
		job, err = r.enqueue(tx, Job{ID: jobID, Token: token, Device: id, Node: r.opts.Node, Procs: []Proc{proc}, Priority: t.Priority})
		return err
	})
	return job, ioError(err)
}

// jobToJoin is the job of device d that proc joins, 0 for a new one: the
// job it is part of, else on a shared token the device's running job (or
// its first waiting one). On a token that is not shared, an unrelated
// process gets a job of its own, which waits for the device (exclusive).
func jobToJoin(tx Tx, d Device, t Token, proc Proc, member uint64) (uint64, error) {
	var first uint64 // the device's first waiting job
	join := uint64(0)
	err := tx.ForEachPrefix(bucketJobs, nil, func(k, v []byte) error {
		var j Job
		if err := decodeJSON(bucketJobs, k, v, &j); err != nil {
			return err
		}
		if j.Device != d.ID || j.Token != d.Token {
			return nil
		}
		if j.ID == member || slices.Contains(j.Procs, proc) {
			join = j.ID
		}
		if j.Waiting && first == 0 {
			first = j.ID
		}
		return nil
	})
	switch {
	case err != nil || join != 0 || !t.Shared:
		return join, err
	case d.Job != 0:
		return d.Job, nil
	}
	return first, nil
}

// mayEverFit refuses a job that could never start: its model is larger than
// the whole pool, or than its token's unit quota.
func mayEverFit(tx Tx, d Device, t Token) error {
	m := d.ModelInfo()
	pool, err := loadPool(tx)
	if err != nil {
		return err
	}
	total := 0
	for _, g := range pool {
		total += g.Units
	}
	switch {
	case total < m.Units:
		return errorf(KindNoSpace, "Device %d (%s) needs %d GPU units; the whole pool has %d.", d.ID, m.Name, m.Units, total)
	case t.MaxUnits > 0 && m.Units > t.MaxUnits:
		return errorf(KindQuota, "Device %d (%s) needs %d GPU units; the token's quota (max_units) is %d.", d.ID, m.Name, m.Units, t.MaxUnits)
	}
	return nil
}

// detachElsewhere removes proc from every job but keep; a job left empty
// ends when endEmpty says so.
func (r *Registry) detachElsewhere(tx Tx, proc Proc, keep uint64, endEmpty bool) error {
	var others []Job
	err := tx.ForEachPrefix(bucketJobs, nil, func(k, v []byte) error {
		var j Job
		err := decodeJSON(bucketJobs, k, v, &j)
		if err == nil && j.ID != keep && slices.Contains(j.Procs, proc) {
			others = append(others, j)
		}
		return err
	})
	for _, j := range others {
		if j.Procs = slices.DeleteFunc(j.Procs, func(p Proc) bool { return p == proc }); len(j.Procs) == 0 && endEmpty {
			err = r.endJob(tx, j.ID, EndExit) // its processes moved to another job
		} else {
			err = putJSON(tx, bucketJobs, u64(j.ID), j)
		}
		if err != nil {
			return err
		}
	}
	return err
}

func nextJobID(tx Tx) (uint64, error) {
	n := fromU64(tx.Get(bucketMeta, keyNextJobID)) + 1
	return n, tx.Put(bucketMeta, keyNextJobID, u64(n))
}

func loadJob(tx Tx, id uint64) (Job, error) {
	var j Job
	found, err := getJSON(tx, bucketJobs, u64(id), &j)
	if err == nil && !found {
		err = errorf(KindNoProcess, "Job %d is not running.", id)
	}
	return j, err
}

// DeviceJob returns device id of token and its running job (the zero Job
// when none runs), both from one snapshot.
func (r *Registry) DeviceJob(ctx context.Context, token string, id uint64) (Device, Job, error) {
	var d Device
	var job Job
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		if d, err = loadDevice(tx, token, id); err != nil || d.Job == 0 {
			return err
		}
		job, err = loadJob(tx, d.Job)
		return err
	})
	return d, job, ioError(err)
}

// Jobs lists every running job by id.
func (r *Registry) Jobs(ctx context.Context) ([]Job, error) {
	var jobs []Job
	err := r.eng.View(ctx, func(tx Tx) error {
		return tx.ForEachPrefix(bucketJobs, nil, func(k, v []byte) error {
			var j Job
			err := decodeJSON(bucketJobs, k, v, &j)
			jobs = append(jobs, j)
			return err
		})
	})
	return jobs, ioError(err)
}

// MarkEnding records why job id is being stopped (a reset), so that its
// history says so however its end is noticed.
func (r *Registry) MarkEnding(ctx context.Context, id uint64, reason EndReason) error {
	return ioError(r.eng.Update(ctx, func(tx Tx) error {
		j, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		j.Ending = reason
		return putJSON(tx, bucketJobs, u64(id), j)
	}))
}

// EndJob ends a job: its GPUs go back to the pool and its device is idle.
func (r *Registry) EndJob(ctx context.Context, id uint64, reason EndReason) error {
	return ioError(r.eng.Update(ctx, func(tx Tx) error { return r.endJob(tx, id, reason) }))
}

// endJob releases a job's GPUs, frees its device and records it in its
// token's history, with the reason it was being stopped for if any.
func (r *Registry) endJob(tx Tx, id uint64, reason EndReason) error {
	now := r.now()
	j, err := loadJob(tx, id)
	if err != nil {
		return err
	}
	if j.Waiting {
		// It never ran: its entry says how long it waited, bound to nothing for no time.
		var d Device
		if _, err := getJSON(tx, bucketDevices, u64(j.Device), &d); err != nil {
			return err
		}
		j.Started = now.UTC()
		if err := r.recordHistory(tx, j, d.Model, EndLeft, now); err != nil {
			return err
		}
		return r.dequeue(tx, j)
	}
	if j.Ending != "" {
		reason = j.Ending
	}
	for _, uuid := range j.GPUs {
		if fromU64(tx.Get(bucketBindings, []byte(uuid))) == id {
			if err := tx.Delete(bucketBindings, []byte(uuid)); err != nil {
				return err
			}
		}
	}
	var d Device
	if found, err := getJSON(tx, bucketDevices, u64(j.Device), &d); err != nil {
		return err
	} else if found && d.Job == id {
		d.Job, d.Idle = 0, now.UTC()
		if err := putJSON(tx, bucketDevices, u64(d.ID), d); err != nil {
			return err
		}
	}
	if err := r.recordHistory(tx, j, d.Model, reason, now); err != nil {
		return err
	}
	if err := tx.Delete(bucketJobs, u64(id)); err != nil {
		return err
	}
	return r.schedule(tx) // its GPUs, its device and its quota may start a waiting job
}

// RemoveIdle removes every device that has had no job since before cutoff.
// oldest is the earliest idle time of the jobless devices it leaves (zero
// when none): until cutoff passes it, no device is due, since a device
// turns idle only later (created, or its job ended).
func (r *Registry) RemoveIdle(ctx context.Context, cutoff time.Time) (removed []Device, oldest time.Time, err error) {
	err = r.eng.Update(ctx, func(tx Tx) error {
		removed, oldest = nil, time.Time{}
		var stale []Device
		waited, err := waitedDevices(tx)
		if err != nil {
			return err
		}
		err = tx.ForEachPrefix(bucketDevices, nil, func(k, v []byte) error {
			var d Device
			if err := decodeJSON(bucketDevices, k, v, &d); err != nil {
				return err
			}
			idle := d.Idle
			if idle.IsZero() {
				idle = d.Created // a device stored before jobs existed
			}
			switch {
			case d.Job != 0 || waited[d.ID]: // a waiting job keeps its device too
			case idle.Before(cutoff):
				stale = append(stale, d)
			case oldest.IsZero() || idle.Before(oldest):
				oldest = idle
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, d := range stale {
			if err := removeDevice(tx, d.Token, d.ID); err != nil {
				return err
			}
			removed = append(removed, d)
		}
		return nil
	})
	return removed, oldest, ioError(err)
}

// DeviceBinding returns device id of token, its running job (the zero Job
// when none runs) and the pool entries bound to that job, from one snapshot.
func (r *Registry) DeviceBinding(ctx context.Context, token string, id uint64) (Device, Job, []PoolEntry, error) {
	var d Device
	var job Job
	var bound []PoolEntry
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		if d, err = loadDevice(tx, token, id); err != nil || d.Job == 0 {
			return err
		}
		if job, err = loadJob(tx, d.Job); err != nil {
			return err
		}
		pool, err := loadPool(tx)
		for _, g := range pool {
			if g.Job == job.ID {
				bound = append(bound, g)
			}
		}
		return err
	})
	return d, job, bound, ioError(err)
}

// JobRunning reports whether job id still runs, from a fresh snapshot.
func (r *Registry) JobRunning(ctx context.Context, id uint64) (bool, error) {
	var found bool
	err := r.eng.View(ctx, func(tx Tx) error {
		found = tx.Get(bucketJobs, u64(id)) != nil
		return nil
	})
	return found, ioError(err)
}

// waitedDevices is the devices that jobs wait for in the queue.
func waitedDevices(tx Tx) (map[uint64]bool, error) { return waitedDevicesOf(tx, "") }

// waitedDevicesOf is waitedDevices of one token's ("": of every token).
func waitedDevicesOf(tx Tx, token string) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	err := tx.ForEachPrefix(bucketQueue, nil, func(_, v []byte) error {
		var j Job
		if _, err := getJSON(tx, bucketJobs, v, &j); err != nil {
			return err
		}
		if token == "" || j.Token == token {
			out[j.Device] = true
		}
		return nil
	})
	return out, err
}
