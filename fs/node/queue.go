package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moreh-io/moreh/store"
)

// queueWaiters is the runtime's half of the queue: the local jobs that wait
// in it, which the follower confines until the store starts them, and a
// broadcast for the readers that wait for their job (the job file).
type queueWaiters struct {
	mu      sync.Mutex
	waiting map[uint64]bool // local jobs that wait; a started one leaves once its cgroup allows its GPUs
	gen     chan struct{}   // closed and replaced after each pass of the follower
	kick    chan struct{}
	stop    chan struct{} // closed by Drain: blocked readers give up, the daemon is stopping
	once    sync.Once
}

func (q *queueWaiters) init() {
	q.waiting, q.gen, q.kick, q.stop = map[uint64]bool{}, make(chan struct{}), make(chan struct{}, 1), make(chan struct{})
}

// Drain ends every blocked read of a job or waiting file (EIO: the daemon
// is stopping), so that the mount can go; the jobs keep their places.
func (rt *Runtime) Drain() { rt.queue.once.Do(func() { close(rt.queue.stop) }) }

// next is closed once the follower has looked at the store again.
func (q *queueWaiters) next() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.gen
}

func (q *queueWaiters) passed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	close(q.gen)
	q.gen = make(chan struct{})
}

func (q *queueWaiters) add(id uint64) {
	q.mu.Lock()
	q.waiting[id] = true
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *queueWaiters) has(id uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting[id]
}

func (q *queueWaiters) ids() []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []uint64
	for id := range q.waiting {
		out = append(out, id)
	}
	return out
}

func (q *queueWaiters) drop(id uint64) {
	q.mu.Lock()
	delete(q.waiting, id)
	q.mu.Unlock()
}

// followQueue confines and frees this node's waiting jobs as the store
// starts them (here, or on another node's end of a job), until ctx ends:
// it reads the store only after a change of jobs and only while a local
// job waits.
func (rt *Runtime) followQueue(ctx context.Context) {
	q := &rt.queue
	if jobs, err := rt.reg.Jobs(ctx); err == nil {
		for _, j := range jobs {
			if j.Waiting && (j.Node == rt.Node() || j.Node == "") {
				q.add(j.ID)
			}
		}
	}
	for {
		changed := rt.reg.JobsChanged()
		rt.applyStarts(ctx)
		q.passed()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-q.kick:
		}
	}
}

// applyStarts gives each local job the store started its GPUs' device
// nodes; a job that left the queue is forgotten.
func (rt *Runtime) applyStarts(ctx context.Context) {
	ids := rt.queue.ids()
	if len(ids) == 0 {
		return
	}
	jobs, err := rt.reg.Jobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			rt.cfg.Log.Error("reading the queue's jobs", "err", err)
		}
		return
	}
	byID := map[uint64]store.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	for _, id := range ids {
		j, ok := byID[id]
		switch {
		case !ok:
			rt.queue.drop(id) // its processes exited, or moved
			rt.cfg.Log.Info("waiting job left the queue", "job", id)
		case !j.Waiting:
			if err := rt.allowGPUs(j); err != nil {
				rt.cfg.Log.Error("allowing a started job its GPUs; it keeps waiting here", "job", id, "err", err)
				continue
			}
			rt.queue.drop(id)
			rt.dirty.Store(true)
			rt.cfg.Log.Info("waiting job started", "job", id, "token", j.Token, "device", j.Device, "gpus", len(j.GPUs), "waited", j.Started.Sub(j.Queued).Round(1e6))
		}
	}
	rt.sampler.Kick()
}

// allowGPUs replaces a started job's device filter with its bound GPUs'.
func (rt *Runtime) allowGPUs(j store.Job) error {
	c := rt.cg
	if c == nil {
		return nil // /proc supervision denies no device node
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	jg, ok := c.groups[j.ID]
	if !ok {
		return nil // released meanwhile
	}
	jg.job = j
	c.changed.Store(true)
	if !c.devices {
		return nil
	}
	return jg.g.SetDevices(rt.denied(j))
}

// memberOf is the job that process pid is part of already, as the machine
// sees it (0: none): where jobs are cgroups, the job whose cgroup holds it;
// otherwise a local job of jobs that it descends from.
func (rt *Runtime) memberOf(pid int, jobs []store.Job) uint64 {
	if rt.cg != nil {
		b, err := os.ReadFile(filepath.Join(rt.cfg.Procs.Root, strconv.Itoa(pid), "cgroup"))
		if err != nil {
			return 0
		}
		for line := range strings.Lines(string(b)) {
			path, ok := strings.CutPrefix(strings.TrimSpace(line), "0::")
			if !ok || filepath.Base(filepath.Dir(path)) != filepath.Base(rt.cg.mgr.Dir()) {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimPrefix(filepath.Base(path), "job-"), 10, 64)
			if err == nil && rt.group(id) != nil {
				return id
			}
		}
		return 0
	}
	for _, j := range jobs {
		if j.Node != rt.Node() && j.Node != "" {
			continue
		}
		if slices.ContainsFunc(j.Procs, func(p store.Proc) bool { return p.PID == pid }) {
			return j.ID
		}
		for _, c := range rt.cfg.Procs.Descendants(procIDs(j.Procs)) {
			if c.PID == pid {
				return j.ID
			}
		}
	}
	return 0
}

// JobWait is a job and, while it waits, why: what the job and waiting
// files show.
type JobWait struct {
	Job  store.Job
	Wait store.Wait // zero once the job runs
	// While it waits for its device: the running job's first process.
	BlockerPID  int
	BlockerCmd  string // its command line, control characters escaped; "" when not on this node
	BlockerNode string
	Starting    bool // the store started it; this node has not yet allowed its GPUs
}

// Started says the job holds its GPUs and may open them.
func (w JobWait) Started() bool { return w.Job.ID != 0 && !w.Job.Waiting }

// callerJob is the job of device id that the caller's process is part of.
func (rt *Runtime) callerJob(ctx context.Context, caller Caller, token string, id uint64) (uint64, error) {
	if _, err := rt.reg.Device(ctx, token, id); err != nil {
		return 0, err
	}
	jobs, err := rt.reg.Jobs(ctx)
	if err != nil {
		return 0, err
	}
	mine := func(j store.Job) bool { return j.Token == token && j.Device == id }
	for _, j := range jobs {
		if mine(j) && slices.ContainsFunc(j.Procs, func(p store.Proc) bool { return p.PID == caller.PID }) {
			return j.ID, nil
		}
	}
	if m := rt.memberOf(caller.PID, jobs); m != 0 {
		for _, j := range jobs {
			if j.ID == m && mine(j) {
				return m, nil
			}
		}
	}
	return 0, store.Errorf(store.KindNoProcess, "Process %d is in no job of device %d: write its pid to procs first.", caller.PID, id)
}

// jobWait reads job id's state; a job gone is KindNoProcess.
func (rt *Runtime) jobWait(ctx context.Context, id uint64) (JobWait, error) {
	j, w, err := rt.reg.JobState(ctx, id)
	if err != nil {
		if store.KindOf(err) == store.KindNoProcess {
			err = store.Errorf(store.KindNoProcess, "Job %d is gone: its processes exited, or it ended.", id)
		}
		return JobWait{}, err
	}
	out := JobWait{Job: j, Wait: w}
	if !j.Waiting && rt.queue.has(j.ID) {
		out.Job.Waiting, out.Starting = true, true // started in the store, its GPUs not yet allowed here
	}
	if w.Reason == store.WaitDevice && w.Blocker != 0 {
		if b, _, err := rt.reg.JobState(ctx, w.Blocker); err == nil {
			out.BlockerNode = b.Node
			if procs := rt.jobProcs(b); len(b.Procs) > 0 {
				out.BlockerPID = b.Procs[0].PID
			} else if len(procs) > 0 {
				out.BlockerPID = procs[0].PID
			}
			if b.Node == rt.Node() || b.Node == "" {
				out.BlockerCmd = rt.cmdline(out.BlockerPID)
			}
		}
	}
	return out, nil
}

// cmdline is a process's command line with spaces between its arguments,
// safe to print; its name when the command line is empty.
func (rt *Runtime) cmdline(pid int) string {
	b, err := os.ReadFile(filepath.Join(rt.cfg.Procs.Root, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return store.TermSafe(rt.cfg.Procs.Comm(pid))
	}
	return store.TermSafe(string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
}

// CallerJob finds the caller's job on device id and returns its state.
func (rt *Runtime) CallerJob(ctx context.Context, caller Caller, token string, id uint64) (uint64, error) {
	return rt.callerJob(ctx, caller, token, id)
}

// WaitJob returns job id's state once changed is false for it: at once
// when changed(state) holds, else after the next change that makes it hold;
// KindInterrupted when ctx ends first. A job that is gone is KindNoProcess.
func (rt *Runtime) WaitJob(ctx context.Context, id uint64, done func(JobWait) bool) (JobWait, error) {
	for {
		next := rt.queue.next()
		w, err := rt.jobWait(ctx, id)
		if err != nil || done(w) {
			return w, err
		}
		select {
		case <-ctx.Done():
			return w, store.Errorf(store.KindInterrupted, "The wait was interrupted.")
		case <-next:
		case <-rt.stopped:
			return w, store.Errorf(store.KindIO, "The daemon is stopping: job %d keeps its place in the queue.", id)
		case <-rt.queue.stop:
			return w, store.Errorf(store.KindIO, "The daemon is stopping: job %d keeps its place in the queue.", id)
		}
	}
}

// Queue lists the waiting jobs in order.
func (rt *Runtime) Queue(ctx context.Context) ([]store.QueueEntry, error) {
	return rt.reg.Queue(ctx)
}
