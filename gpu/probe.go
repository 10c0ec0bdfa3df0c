// Package gpu reads physical GPUs: an inventory, per-GPU memory and
// utilisation, and per-process GPU memory, behind one small interface
// (Probe) with backends nvml, amdgpu and sim; a Sampler keeps the figures
// ready, and ProcFS reads /proc.
//
// It measures and decides nothing: it imports no other moreh package, knows
// no token, device or job, and names processes by its own ProcID.
package gpu

import "context"

// GPU is one physical accelerator of the pool.
type GPU struct {
	Index          int
	UUID           string
	Name           string
	MemoryTotalMiB uint64
	Node           DeviceNode // the node a process opens to use this GPU; zero when the backend cannot tell
}

// Reading is one sample of a GPU.
type Reading struct {
	Index         int
	MemoryUsedMiB uint64
	Utilization   int   // percent
	Err           error // this GPU could not be read; the other fields are zero
}

// Process is one process holding GPU memory.
type Process struct {
	PID       int
	GPU       int // GPU index
	MemoryMiB uint64
}

// Probe is a backend that answers for the GPUs of this machine.
type Probe interface {
	// Name says which backend answers ("sim", "nvml", "amdgpu").
	Name() string
	// GPUs is the inventory; it does not change while the probe is open.
	GPUs() []GPU
	// Sample reads every GPU's memory and utilisation.
	Sample(ctx context.Context) ([]Reading, error)
	// Processes lists the processes holding GPU memory.
	Processes(ctx context.Context) ([]Process, error)
	Close() error
}
