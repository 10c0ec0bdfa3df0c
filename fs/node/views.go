package node

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// NoUtilization is the utilisation of a device without a job: shown as "-".
const NoUtilization = -1

// Usage is what a device's GPUs report right now.
type Usage struct {
	UsedMiB, TotalMiB uint64
	Utilization       int // percent, or NoUtilization while no job runs
}

// DeviceStatus is a device with its job and figures.
type DeviceStatus struct {
	store.Device
	Job     store.Job // the zero Job when none runs
	Usage   Usage
	Waiting bool // a job waits in the queue for this device
}

// ProcessStatus is one process of a job, named and measured by the last sample.
type ProcessStatus struct {
	Device, Job uint64
	PID         int
	Name        string
	MemoryMiB   uint64
}

// TokenStatus is one token's devices and their processes, from one store
// snapshot and one sample.
type TokenStatus struct {
	Token     store.Token
	Devices   []DeviceStatus // by id
	Processes []ProcessStatus
}

// Stamp names what TokenStatus joins: the store's generation and the
// latest sample. Equal stamps give equal statuses, but for processes born
// to a job's cgroup since the sample, which the next sample shows.
type Stamp struct {
	store  uint64
	sample *gpu.Snapshot
}

// Stamp is the stamp of what TokenStatus would read now.
func (rt *Runtime) Stamp() Stamp {
	return Stamp{store: rt.reg.Generation(), sample: rt.sampler.Latest()}
}

// TokenStatus gathers token's devices, or device alone when it is not 0.
func (rt *Runtime) TokenStatus(ctx context.Context, token string, device uint64) (TokenStatus, error) {
	v, err := rt.reg.View(ctx, token)
	if err != nil {
		return TokenStatus{}, err
	}
	waited, err := rt.reg.WaitedDevices(ctx, token)
	if err != nil {
		return TokenStatus{}, err
	}
	snap := rt.sampler.Latest()
	st := TokenStatus{Token: v.Token}
	for _, d := range v.Devices {
		if device != 0 && d.ID != device {
			continue
		}
		job := v.Jobs[d.ID]
		st.Devices = append(st.Devices, DeviceStatus{Device: d, Job: job, Usage: rt.usage(snap, d, job), Waiting: waited[d.ID]})
		st.Processes = rt.appendProcesses(st.Processes, snap, job)
	}
	if device != 0 && len(st.Devices) == 0 {
		return st, store.Errorf(store.KindNotFound, "Device %d does not exist.", device)
	}
	return st, nil
}

// DeviceUsage is the figures of one device.
func (rt *Runtime) DeviceUsage(ctx context.Context, token string, id uint64) (Usage, error) {
	d, job, err := rt.reg.DeviceJob(ctx, token, id)
	if err != nil {
		return Usage{}, err
	}
	return rt.usage(rt.sampler.Latest(), d, job), nil
}

// usage reads a device's figures from the sample of the GPUs bound to its
// job on this node; without a job it uses nothing and shows no utilisation.
func (rt *Runtime) usage(snap *gpu.Snapshot, d store.Device, job store.Job) Usage {
	u := Usage{TotalMiB: d.ModelInfo().MemoryMiB(), Utilization: NoUtilization}
	if d.Job == 0 || job.ID != d.Job {
		return u
	}
	u.UsedMiB, u.Utilization, _ = rt.jobReading(snap, job)
	return u
}

// jobReading sums the sample of a job's GPUs on this node: memory, mean
// utilisation, and how many GPUs the sample read (0: none to judge by).
func (rt *Runtime) jobReading(snap *gpu.Snapshot, j store.Job) (usedMiB uint64, utilization, gpus int) {
	busy := 0
	for _, uuid := range j.GPUs {
		if r, ok := rt.reading(snap, j.Node, uuid); ok {
			usedMiB += r.MemoryUsedMiB
			busy += r.Utilization
			gpus++
		}
	}
	if gpus > 0 {
		utilization = busy / gpus
	}
	return usedMiB, utilization, gpus
}

// reading is the sample of GPU uuid of node, when it is this node's and was read.
func (rt *Runtime) reading(snap *gpu.Snapshot, node, uuid string) (gpu.Reading, bool) {
	if node != rt.Node() && node != "" {
		return gpu.Reading{}, false
	}
	idx, ok := rt.index[uuid]
	if !ok {
		return gpu.Reading{}, false
	}
	r, ok := snap.Readings[idx]
	return r, ok && r.Err == nil
}

// appendProcesses appends a job's processes with their names and GPU
// memory, as the last sample read them; /proc names one attached since.
func (rt *Runtime) appendProcesses(rows []ProcessStatus, snap *gpu.Snapshot, job store.Job) []ProcessStatus {
	for _, p := range rt.jobProcs(job) {
		name, named := snap.ProcessName(procID(p))
		if !named {
			name = rt.lateName(snap, p)
		}
		rows = append(rows, ProcessStatus{Device: job.Device, Job: job.ID, PID: p.PID, Name: name, MemoryMiB: snap.ProcessMiB(p.PID)})
	}
	return rows
}

// lateNames are the names /proc gave of processes that a sample did not
// name (attached since): read once per sample, however often tables render.
type lateNames struct {
	snap  *gpu.Snapshot
	mu    sync.Mutex
	names map[store.Proc]string
}

// lateName is p's name from /proc, read once for snap.
func (rt *Runtime) lateName(snap *gpu.Snapshot, p store.Proc) string {
	late := rt.lateNames.Load()
	if late == nil || late.snap != snap {
		late = &lateNames{snap: snap, names: map[store.Proc]string{}}
		rt.lateNames.Store(late) // a render of another sample may replace it: one more read
	}
	late.mu.Lock()
	name, ok := late.names[p]
	late.mu.Unlock()
	if !ok {
		name = rt.cfg.Procs.Comm(p.PID)
		late.mu.Lock()
		late.names[p] = name
		late.mu.Unlock()
	}
	return name
}

// GPUStatus is a GPU of the pool with what holds it and, for this node's
// GPUs, the last sample of it.
type GPUStatus struct {
	store.PoolEntry
	Reading gpu.Reading
	Sampled bool // Reading holds this node's sample of the GPU
	Hidden  bool // bound to a token the caller may not see: Token and Device are left out
}

// Pool lists every GPU of the pool, this node's with their readings.
func (rt *Runtime) Pool(ctx context.Context) ([]GPUStatus, error) {
	pool, err := rt.reg.Pool(ctx)
	return rt.join(pool), err
}

// PoolFor is Pool as uid may see it: a GPU bound to another token's job
// shows that it is bound, but not to which token or device.
func (rt *Runtime) PoolFor(ctx context.Context, uid int) ([]GPUStatus, error) {
	pool, err := rt.Pool(ctx)
	if err != nil {
		return nil, err
	}
	for i := range pool {
		if pool[i].Job == 0 {
			continue
		}
		sees, err := rt.reg.SeesToken(ctx, uid, pool[i].Token)
		if err != nil {
			return nil, err
		}
		if !sees {
			pool[i].Token, pool[i].Device, pool[i].Hidden = "", 0, true
		}
	}
	return pool, nil
}

// DeviceGPUs lists the GPUs bound to the device's job; none while no job runs.
func (rt *Runtime) DeviceGPUs(ctx context.Context, token string, id uint64) ([]GPUStatus, error) {
	_, _, bound, err := rt.reg.DeviceBinding(ctx, token, id)
	return rt.join(bound), err
}

func (rt *Runtime) join(pool []store.PoolEntry) []GPUStatus {
	snap := rt.sampler.Latest()
	out := make([]GPUStatus, len(pool))
	for i, g := range pool {
		out[i].PoolEntry = g
		out[i].Reading, out[i].Sampled = rt.reading(snap, g.Node, g.UUID)
	}
	return out
}

// DeviceEnv is what a program needs to see the device's GPUs: this node's
// by index and, when the job spans nodes, the host list a multi-node
// launcher needs. Each entry is NAME=VALUE.
func (rt *Runtime) DeviceEnv(ctx context.Context, token string, id uint64) ([]string, error) {
	bound, err := rt.DeviceGPUs(ctx, token, id)
	var idx, hosts []string
	for _, g := range bound {
		if g.Node == rt.Node() {
			idx = append(idx, strconv.Itoa(g.Index))
		}
		if !slices.Contains(hosts, g.Node) {
			hosts = append(hosts, g.Node)
		}
	}
	visible := strings.Join(idx, ",")
	env := []string{"CUDA_VISIBLE_DEVICES=" + visible, "HIP_VISIBLE_DEVICES=" + visible, "MOREH_DEVICE=" + strconv.FormatUint(id, 10)}
	if len(hosts) > 1 {
		env = append(env, "MOREH_HOSTS="+strings.Join(hosts, ","))
	}
	return env, err
}
