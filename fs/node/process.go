package node

import (
	"context"
	"errors"
	"strconv"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// Caller is the process behind a request, as the kernel named it.
type Caller struct {
	UID int
	PID int
}

// Attach is a write to procs: the pid joins the device's job, starting one
// (and binding GPUs) when none runs. Only root may attach another user's
// process.
func (rt *Runtime) Attach(ctx context.Context, caller Caller, token string, id uint64, command string) (store.Job, error) {
	pid, err := strconv.Atoi(command)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != command {
		return store.Job{}, store.Errorf(store.KindInvalid, "%s is not a pid: write a process id such as $$.", strconv.Quote(command))
	}
	info, err := rt.cfg.Procs.Read(pid)
	if errors.Is(err, gpu.ErrNoProcess) || err == nil && (info.State == 'Z' || info.State == 'X') {
		return store.Job{}, store.Errorf(store.KindNoProcess, "No process %d is running.", pid)
	}
	if err != nil {
		return store.Job{}, store.Errorf(store.KindIO, "The process table could not be read: %v.", err)
	}
	if caller.UID != 0 && rt.cfg.Procs.Owner(pid) != caller.UID {
		return store.Job{}, store.Errorf(store.KindNotPermitted, "Process %d belongs to another user: attach your own processes.", pid)
	}
	job, err := rt.reg.Attach(ctx, token, id, store.Proc{PID: pid, Start: info.Start})
	if err != nil {
		return job, err
	}
	rt.noteJob(job)
	rt.cfg.Log.Info("process attached", "token", token, "device", id, "job", job.ID, "pid", pid, "gpus", len(job.GPUs))
	rt.sampler.Kick()
	return job, nil
}

// Reset is a write to reset: "1" stops the device's job and releases its
// GPUs. Root may reset any job; another caller only one whose every process
// it could signal itself. An interrupted request still finishes: the GPUs
// are released only once no process of the job runs.
func (rt *Runtime) Reset(ctx context.Context, caller Caller, token string, id uint64, command string) error {
	if command != "1" {
		return store.Errorf(store.KindInvalid, "Write 1 to reset to stop the device's job.")
	}
	_, job, err := rt.reg.DeviceJob(ctx, token, id)
	if err != nil {
		return err
	}
	if job.ID == 0 {
		return store.Errorf(store.KindNoProcess, "Device %d is not running a job.", id)
	}
	if caller.UID != 0 {
		for _, p := range job.Procs {
			if owner := rt.cfg.Procs.Owner(p.PID); owner >= 0 && owner != caller.UID {
				return store.Errorf(store.KindNotPermitted, "Job %d runs process %d of another user: only root or that user can reset it.", job.ID, p.PID)
			}
		}
	}
	err = rt.stopJob(ctx, job, store.EndReset)
	if err == nil {
		rt.cfg.Log.Info("job reset; GPUs released", "token", token, "device", id, "job", job.ID)
	}
	return err
}

// stopJob ends a running job for reason: SIGTERM, SIGKILL after the grace,
// and only then its GPUs back to the pool. Once begun it finishes, whoever
// stops waiting for it.
func (rt *Runtime) stopJob(ctx context.Context, job store.Job, reason store.EndReason) error {
	ctx = context.WithoutCancel(ctx)
	if err := rt.reg.MarkEnding(ctx, job.ID, reason); err != nil {
		if store.KindOf(err) == store.KindNoProcess {
			return nil // it ended meanwhile
		}
		return err
	}
	rt.cfg.Procs.Terminate(ctx, procIDs(job.Procs), rt.cfg.ResetGrace)
	defer rt.dirty.Store(true)
	err := rt.reg.EndJob(ctx, job.ID, reason)
	if store.KindOf(err) == store.KindNoProcess {
		err = nil // the supervisor saw it end first
	}
	return err
}

// Procs lists the pids of the device's job.
func (rt *Runtime) Procs(ctx context.Context, token string, id uint64) ([]int, error) {
	_, job, err := rt.reg.DeviceJob(ctx, token, id)
	pids := make([]int, len(job.Procs))
	for i, p := range job.Procs {
		pids[i] = p.PID
	}
	return pids, err
}
