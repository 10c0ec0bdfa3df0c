package gpu

import "github.com/moreh-io/moreh/store"

// DefaultUnitMiB is the memory one 64 GB unit of the pool takes.
const DefaultUnitMiB = store.UnitMiB

// PoolGPUs turns an inventory into pool entries: each GPU gives
// floor(memory / unitMiB) units.
func PoolGPUs(gpus []GPU, unitMiB uint64) []store.PoolGPU {
	out := make([]store.PoolGPU, len(gpus))
	for i, g := range gpus {
		out[i] = store.PoolGPU{UUID: g.UUID, Index: g.Index, Name: g.Name, Units: int(g.MemoryTotalMiB / unitMiB), MemoryMiB: g.MemoryTotalMiB}
	}
	return out
}

// AssignJobs tells a probe that cannot see processes by itself (the sim)
// which GPUs each job process runs on.
func AssignJobs(p Probe, jobs []store.Job) {
	a, ok := p.(Assigner)
	if !ok {
		return
	}
	index := map[string]int{}
	for _, g := range p.GPUs() {
		index[g.UUID] = g.Index
	}
	assigned := map[int][]int{}
	for _, j := range jobs {
		var gpus []int
		for _, uuid := range j.GPUs {
			if i, ok := index[uuid]; ok {
				gpus = append(gpus, i)
			}
		}
		for _, p := range j.Procs {
			assigned[p.PID] = gpus
		}
	}
	a.Assign(assigned)
}
