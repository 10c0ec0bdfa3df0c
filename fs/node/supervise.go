package node

import (
	"context"
	"slices"
	"time"

	"github.com/moreh-io/moreh/fs/node/cgroup"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// supervise checks jobs every ReapEvery (first at once, which releases the
// jobs that died while the daemon was down), removes idle devices, and
// refreshes what the registry keeps of every token, until ctx ends.
func (rt *Runtime) supervise(ctx context.Context) {
	t := time.NewTicker(rt.cfg.ReapEvery)
	defer t.Stop()
	for {
		rt.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round is one pass of the supervisor: reap, remove idle devices, refresh
// tokens, then tell the probe and the sampler which processes run where.
//
// Where jobs are cgroups the kernel follows the processes, so a round costs
// nothing per job: the reaper runs only once a second (for jobs whose
// GPUs left the pool), and the probe learns which processes run where once
// per sample, or at once after an attach or a release.
func (rt *Runtime) Round(ctx context.Context) {
	log := rt.cfg.Log
	n := rt.rounds.Add(1) - 1
	var table store.ProcessTable = procTable{rt}
	reap, assign := true, true
	if rt.cg != nil {
		table = kernelKept{}
		reap = n%uint64(max(1, poolCheckEvery/rt.cfg.ReapEvery)) == 0
		assign = rt.cg.changed.Swap(false) || n%uint64(max(1, rt.cfg.SampleEvery/rt.cfg.ReapEvery)) == 0
	}
	if reap {
		ended, err := rt.reg.Reap(ctx, table)
		if err != nil && ctx.Err() == nil {
			log.Error("reaping jobs", "err", err)
		}
		for _, j := range ended {
			log.Info("job ended; GPUs released", "job", j.ID, "token", j.Token, "device", j.Device, "gpus", len(j.GPUs))
		}
	}
	if rt.cfg.IdleTimeout > 0 {
		removed, err := rt.reg.RemoveIdle(ctx, time.Now().Add(-rt.cfg.IdleTimeout))
		if err != nil && ctx.Err() == nil {
			log.Error("removing idle devices", "err", err)
		}
		for _, d := range removed {
			log.Info("idle device removed", "token", d.Token, "id", d.ID, "idle_timeout", rt.cfg.IdleTimeout)
		}
	}
	if err := rt.reg.RefreshTokens(ctx); err != nil && ctx.Err() == nil {
		log.Error("counting tokens", "err", err)
	}
	if !assign {
		return
	}
	if jobs, err := rt.reg.Jobs(ctx); err == nil {
		rt.assign(jobs)
	}
}

// poolCheckEvery is how often, where jobs are cgroups, the reaper looks for
// jobs whose GPUs left the pool (a node of the cluster went away).
const poolCheckEvery = time.Second

// assign tells a probe that cannot see processes by itself (the sim) which
// of this node's GPUs each job process runs on, and the sampler whose names
// to read.
func (rt *Runtime) assign(jobs []store.Job) {
	var named []gpu.ProcID
	var whole []gpu.JobFigures
	assigned := map[int][]int{}
	for _, j := range jobs {
		if j.Node != rt.Node() && j.Node != "" {
			continue // its processes are another machine's
		}
		var gpus []int
		for _, uuid := range j.GPUs {
			if i, ok := rt.index[uuid]; ok {
				gpus = append(gpus, i)
			}
		}
		for _, p := range rt.jobProcs(j) {
			assigned[p.PID] = gpus
			named = append(named, procID(p))
		}
		if rt.cg != nil {
			if jg := rt.group(j.ID); jg != nil {
				whole = append(whole, gpu.JobFigures{ID: j.ID, GPUs: gpus, Meter: groupMeter{jg.g, rt.cg.memory}})
			}
		}
	}
	if a, ok := rt.cfg.Probe.(gpu.Assigner); ok {
		a.Assign(assigned)
	}
	if a, ok := rt.cfg.Probe.(gpu.JobAssigner); ok {
		a.AssignJobs(whole)
	}
	rt.sampler.NameProcesses(named)
}

// procTable is the machine's processes as the registry's reaper asks for
// them. A process that cannot be seen because /proc cannot be read is alive.
type procTable struct{ rt *Runtime }

var _ store.ProcessTable = procTable{}

func (p procTable) Readable() error { return p.rt.procReadable() }

func (p procTable) Alive(proc store.Proc) bool {
	return p.rt.cfg.Procs.Alive(procID(proc)) || p.rt.procReadable() != nil
}

func (p procTable) Descendants(procs []store.Proc) []store.Proc {
	var out []store.Proc
	for _, c := range p.rt.cfg.Procs.Descendants(procIDs(procs)) {
		if child := (store.Proc{PID: c.PID, Start: c.Start}); !slices.Contains(out, child) {
			out = append(out, child)
		}
	}
	return out
}

func procID(p store.Proc) gpu.ProcID { return gpu.ProcID{PID: p.PID, Start: p.Start} }

func procIDs(procs []store.Proc) []gpu.ProcID {
	ids := make([]gpu.ProcID, len(procs))
	for i, p := range procs {
		ids[i] = procID(p)
	}
	return ids
}

// kernelKept is the reaper's table where jobs are cgroups: every recorded
// process counts as alive and none is followed, since the job's cgroup, not
// its record, says when it ends (the watcher's report).
type kernelKept struct{}

var _ store.ProcessTable = kernelKept{}

func (kernelKept) Readable() error                       { return nil }
func (kernelKept) Alive(store.Proc) bool                 { return true }
func (kernelKept) Descendants([]store.Proc) []store.Proc { return nil }

// groupMeter reads a job's figures from its cgroup: memory where the memory
// controller is on, CPU time from cpu.stat (there with or without the cpu
// controller).
type groupMeter struct {
	g      *cgroup.Group
	memory bool // the subtree has the memory controller
}

func (m groupMeter) MemoryBytes() (uint64, bool) {
	if !m.memory {
		return 0, false
	}
	b, ok, err := m.g.MemoryCurrent()
	return b, ok && err == nil
}

func (m groupMeter) CPUUsec() (uint64, bool) {
	usec, err := m.g.CPUUsec()
	return usec, err == nil
}
