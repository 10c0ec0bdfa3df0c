//go:build cgo

package gpu

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// errNVMLClosed answers calls made after Close: the library is unloaded by then,
// and calling into it would crash the daemon.
var errNVMLClosed = errors.New("the GPU probe is closed")

// nvmlProbe reads NVIDIA GPUs through NVML.
type nvmlProbe struct {
	lib     nvml.Interface
	devices []nvml.Device // by GPU index; fixed once built
	gpus    []GPU

	mu     sync.RWMutex // Close waits for the calls in flight
	closed bool
}

var _ Probe = (*nvmlProbe)(nil)

// OpenNVML loads libnvidia-ml.so.1 at run time; without it, it returns an
// error (go-nvml answers ERROR_LIBRARY_NOT_FOUND rather than crashing).
func OpenNVML() (Probe, error) { return NewNVML(nvml.New()) }

// NewNVML initialises lib and takes the inventory of its GPUs.
func NewNVML(lib nvml.Interface) (Probe, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, fmt.Errorf("nvml: init: %w (libnvidia-ml.so.1 is not installed): install the NVIDIA driver, or use --gpus auto (which falls back to the simulated pool) or --gpus sim", ret)
		}
		return nil, fmt.Errorf("nvml: init: %w (check the NVIDIA driver with nvidia-smi, or use --gpus auto or sim)", ret)
	}
	p, err := inventory(lib)
	if err != nil {
		lib.Shutdown() // the inventory error is the one worth reporting
		return nil, err
	}
	return p, nil
}

// inventory enumerates the devices of an initialised library.
func inventory(lib nvml.Interface) (*nvmlProbe, error) {
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml: device count: %w", ret)
	}
	if count == 0 {
		return nil, errors.New("nvml: no GPU found")
	}
	p := &nvmlProbe{lib: lib}
	for i := 0; i < count; i++ {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml: GPU %d: handle: %w", i, ret)
		}
		uuid, ret := dev.GetUUID()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml: GPU %d: uuid: %w", i, ret)
		}
		name, ret := dev.GetName()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml: GPU %d: name: %w", i, ret)
		}
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml: GPU %d: memory: %w", i, ret)
		}
		p.devices = append(p.devices, dev)
		p.gpus = append(p.gpus, GPU{Index: i, UUID: uuid, Name: name, MemoryTotalMiB: mem.Total / bytesPerMiB,
			Node: nvidiaNode(dev)})
	}
	return p, nil
}

// nvidiaNode is /dev/nvidia<minor>; a GPU NVML gives no minor for (not
// supported on some platforms) has no known node rather than failing the probe.
func nvidiaNode(dev nvml.Device) DeviceNode {
	minor, ret := dev.GetMinorNumber()
	if ret != nvml.SUCCESS || minor < 0 {
		return DeviceNode{}
	}
	return DeviceNode{Path: fmt.Sprintf("/dev/nvidia%d", minor), Major: nvidiaMajor, Minor: uint32(minor)}
}

func (p *nvmlProbe) Name() string { return "nvml" }

func (p *nvmlProbe) GPUs() []GPU { return append([]GPU(nil), p.gpus...) }

// Sample reads each GPU on its own: one that fails gets Err, the others are read.
func (p *nvmlProbe) Sample(ctx context.Context) ([]Reading, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, errNVMLClosed
	}
	out := make([]Reading, len(p.devices))
	for i, dev := range p.devices {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = readNVML(i, dev)
	}
	return out, nil
}

func readNVML(i int, dev nvml.Device) Reading {
	mem, ret := dev.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return Reading{Index: i, Err: fmt.Errorf("nvml: GPU %d: memory: %w", i, ret)}
	}
	util, ret := dev.GetUtilizationRates()
	if ret != nvml.SUCCESS {
		return Reading{Index: i, Err: fmt.Errorf("nvml: GPU %d: utilization: %w", i, ret)}
	}
	return Reading{Index: i, MemoryUsedMiB: mem.Used / bytesPerMiB, Utilization: int(util.Gpu)}
}

// Processes merges the compute and graphics lists of every GPU; a process in
// both lists of one GPU is counted once.
func (p *nvmlProbe) Processes(ctx context.Context) ([]Process, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, errNVMLClosed
	}
	type key struct{ pid, gpu int }
	seen := map[key]uint64{}
	for i, dev := range p.devices {
		for _, list := range []struct {
			kind string
			get  func() ([]nvml.ProcessInfo, nvml.Return)
		}{{"compute", dev.GetComputeRunningProcesses}, {"graphics", dev.GetGraphicsRunningProcesses}} {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			infos, ret := list.get()
			if ret == nvml.ERROR_NOT_SUPPORTED {
				continue // e.g. no graphics on a compute-only GPU
			}
			if ret != nvml.SUCCESS {
				return nil, fmt.Errorf("nvml: GPU %d: %s processes: %w", i, list.kind, ret)
			}
			for _, info := range infos {
				k := key{int(info.Pid), i}
				seen[k] = max(seen[k], usedMiB(info.UsedGpuMemory))
			}
		}
	}
	out := make([]Process, 0, len(seen))
	for k, m := range seen {
		out = append(out, Process{PID: k.pid, GPU: k.gpu, MemoryMiB: m})
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].GPU != out[b].GPU {
			return out[a].GPU < out[b].GPU
		}
		return out[a].PID < out[b].PID
	})
	return out, nil
}

// usedMiB converts NVML's figure, which is all ones when the driver cannot
// tell (no permission, some containers), into MiB.
func usedMiB(b uint64) uint64 {
	if b == ^uint64(0) {
		return 0
	}
	return b / bytesPerMiB
}

// Close shuts NVML down once; later calls into the probe get errNVMLClosed.
func (p *nvmlProbe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if ret := p.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml: shutdown: %w", ret)
	}
	return nil
}
