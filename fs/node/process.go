package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

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
// process; no one may attach init, the daemon, a kernel thread or a thread
// that is not its process's leader.
func (rt *Runtime) Attach(ctx context.Context, caller Caller, token string, id uint64, command string) (store.Job, error) {
	pid, err := strconv.Atoi(command)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != command {
		return store.Job{}, store.Errorf(store.KindInvalid, "%s is not a pid: write a process id such as $$.", strconv.Quote(command))
	}
	info, err := rt.attachable(caller, pid)
	if err != nil {
		return store.Job{}, err
	}
	proc := store.Proc{PID: pid, Start: info.Start}
	var jobs []store.Job
	if rt.cg == nil { // the /proc tree says whose child it is; a cgroup says so itself
		if jobs, err = rt.reg.Jobs(ctx); err != nil {
			return store.Job{}, err
		}
	}
	member := rt.memberOf(pid, jobs) // a child of a job's process stays in its job
	var job store.Job
	if rt.cg != nil {
		job, err = rt.attachContained(ctx, token, id, proc, member)
	} else {
		job, err = rt.reg.AttachMember(ctx, token, id, proc, member, false)
	}
	if err != nil {
		return job, err
	}
	rt.noteJob(job)
	if job.Waiting {
		rt.queue.add(job.ID) // the follower frees it once the store starts it
	}
	rt.cfg.Log.Info("process attached", "token", token, "device", id, "job", job.ID, "pid", pid, "gpus", len(job.GPUs), "waiting", job.Waiting)
	rt.sampler.Kick()
	return job, nil
}

// pfKthread is PF_KTHREAD of the kernel's task flags.
const pfKthread = 0x00200000

// attachable reads pid and says, as a sentence when not, whether caller may
// make it a job's process.
func (rt *Runtime) attachable(caller Caller, pid int) (gpu.ProcInfo, error) {
	info, err := rt.cfg.Procs.Read(pid)
	if errors.Is(err, gpu.ErrNoProcess) {
		if err := rt.procReadable(); err != nil {
			return info, err
		}
	}
	if errors.Is(err, gpu.ErrNoProcess) || err == nil && (info.State == 'Z' || info.State == 'X') {
		return info, store.Errorf(store.KindNoProcess, "No process %d is running.", pid)
	}
	if err != nil {
		return info, store.Errorf(store.KindIO, "The process table could not be read: %v.", err)
	}
	if caller.UID != 0 && rt.cfg.Procs.Owner(pid) != caller.UID {
		return info, store.Errorf(store.KindNotPermitted, "Process %d belongs to another user: attach your own processes.", pid)
	}
	switch pid {
	case 1:
		return info, store.Errorf(store.KindInvalid, "Process 1 is the system's init: a job holds the programs you start, such as $$.")
	case os.Getpid():
		return info, store.Errorf(store.KindInvalid, "Process %d is the moreh daemon itself: it cannot be a job's.", pid)
	}
	if info.Flags&pfKthread != 0 || info.PPID == 2 && rt.cmdlineEmpty(pid) {
		return info, store.Errorf(store.KindInvalid, "Process %d (%s) is a kernel thread: a job holds user programs only.", pid, info.Comm)
	}
	if tgid := rt.tgid(pid); tgid > 0 && tgid != pid {
		return info, store.Errorf(store.KindInvalid, "%d is a thread of process %d, not a process: attach %d.", pid, tgid, tgid)
	}
	return info, nil
}

// cmdlineEmpty says whether /proc/<pid>/cmdline is empty, as a kernel thread's is.
func (rt *Runtime) cmdlineEmpty(pid int) bool {
	b, err := os.ReadFile(filepath.Join(rt.cfg.Procs.Root, strconv.Itoa(pid), "cmdline"))
	return err == nil && len(b) == 0
}

// tgid is the thread group (process) of a task id, or 0 when unknown.
func (rt *Runtime) tgid(pid int) int {
	b, err := os.ReadFile(filepath.Join(rt.cfg.Procs.Root, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
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
		// No job runs: a reset stops the first job that waits for the device.
		waiting, err := rt.reg.DeviceWaiting(ctx, token, id)
		if err != nil {
			return err
		}
		if len(waiting) == 0 {
			return store.Errorf(store.KindNoProcess, "Device %d is not running a job.", id)
		}
		job = waiting[0]
	}
	if rt.cg != nil {
		if err := rt.resetContained(context.WithoutCancel(ctx), caller, job, store.EndReset); err != nil {
			return err
		}
		rt.cfg.Log.Info("job reset; GPUs released", "token", token, "device", id, "job", job.ID)
		return nil
	}
	if err := rt.procReadable(); err != nil {
		return err
	}
	pids := make([]int, len(job.Procs))
	for i, p := range job.Procs {
		pids[i] = p.PID
	}
	if err := rt.mayReset(caller, job.ID, pids); err != nil {
		return err
	}
	err = rt.stopJob(ctx, job, store.EndReset)
	if err == nil {
		rt.cfg.Log.Info("job reset; GPUs released", "token", token, "device", id, "job", job.ID)
	}
	return err
}

// mayReset is the rule of a reset: root may stop any job, another caller
// only one whose every process it could signal itself (same uid, as kill(2)
// decides); a process gone meanwhile counts for no one.
func (rt *Runtime) mayReset(caller Caller, job uint64, pids []int) error {
	if caller.UID == 0 {
		return nil
	}
	for _, pid := range pids {
		if owner := rt.cfg.Procs.Owner(pid); owner >= 0 && owner != caller.UID {
			return store.Errorf(store.KindNotPermitted, "Job %d runs process %d of another user: only root or that user can reset it.", job, pid)
		}
	}
	return nil
}

// stopJob ends a running job for reason: SIGTERM, SIGKILL after the grace,
// and only then its GPUs back to the pool. Once begun it finishes, whoever
// stops waiting for it.
func (rt *Runtime) stopJob(ctx context.Context, job store.Job, reason store.EndReason) error {
	ctx = context.WithoutCancel(ctx)
	if rt.cg != nil {
		return rt.resetContained(ctx, Caller{}, job, reason) // root's: the runtime's own decision
	}
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

// Procs lists the pids of the device's job: where jobs are cgroups, every
// process of its cgroup, in order; otherwise those the supervisor follows.
// While no job runs, those of the first job that waits for the device.
func (rt *Runtime) Procs(ctx context.Context, token string, id uint64) ([]int, error) {
	_, job, err := rt.reg.DeviceJob(ctx, token, id)
	if err == nil && job.ID == 0 {
		var waiting []store.Job
		if waiting, err = rt.reg.DeviceWaiting(ctx, token, id); len(waiting) > 0 {
			job = waiting[0]
		}
	}
	procs := rt.jobProcs(job)
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.PID
	}
	return pids, err
}

// jobProcs is a job's processes: its cgroup's where the runtime holds one,
// sorted by pid, else the store's record.
func (rt *Runtime) jobProcs(job store.Job) []store.Proc {
	procs, ok := rt.groupProcs(job.ID)
	if !ok {
		procs = slices.Clone(job.Procs)
	}
	slices.SortFunc(procs, func(a, b store.Proc) int { return a.PID - b.PID })
	return procs
}
