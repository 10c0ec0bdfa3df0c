//go:build cgo

package gpu

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// fakeGPU is what one mocked device answers.
type fakeGPU struct {
	uuid, name  string
	total, used uint64 // bytes
	util        uint32
	compute     []nvml.ProcessInfo
	graphics    []nvml.ProcessInfo
	graphicsRet nvml.Return
	minor       int         // /dev/nvidia<minor>
	minorRet    nvml.Return // what GetMinorNumber answers when not SUCCESS
}

// mockDevice answers only the calls the probe makes: any other call panics.
func mockDevice(g fakeGPU) *mock.Device {
	return &mock.Device{
		GetUUIDFunc: func() (string, nvml.Return) { return g.uuid, nvml.SUCCESS },
		GetNameFunc: func() (string, nvml.Return) { return g.name, nvml.SUCCESS },
		GetMinorNumberFunc: func() (int, nvml.Return) {
			if g.minorRet != nvml.SUCCESS {
				return 0, g.minorRet
			}
			return g.minor, nvml.SUCCESS
		},
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: g.total, Used: g.used, Free: g.total - g.used}, nvml.SUCCESS
		},
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: g.util, Memory: 99}, nvml.SUCCESS
		},
		GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
			return g.compute, nvml.SUCCESS
		},
		GetGraphicsRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
			if g.graphicsRet != nvml.SUCCESS {
				return nil, g.graphicsRet
			}
			return g.graphics, nvml.SUCCESS
		},
	}
}

func mockLib(devs ...*mock.Device) *mock.Interface {
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}
}

// twoGPUs: an H200 and an H100, with byte counts that are not whole MiB so
// that a wrong conversion shows, and minors not in index order (NVML's index
// follows PCI order, the minor the driver's probe order).
func twoGPUs() (*mock.Interface, []*mock.Device) {
	devs := []*mock.Device{
		mockDevice(fakeGPU{uuid: "GPU-aaaa-0000", name: "NVIDIA H200", total: 143771*bytesPerMiB + 512,
			used: 1234*bytesPerMiB + 999, util: 37, minor: 4}),
		mockDevice(fakeGPU{uuid: "GPU-bbbb-1111", name: "NVIDIA H100 80GB HBM3", total: 81559 * bytesPerMiB,
			used: 0, util: 100, minor: 1}),
	}
	return mockLib(devs...), devs
}

func newNVML(t *testing.T, lib nvml.Interface) Probe {
	t.Helper()
	p, err := NewNVML(lib)
	if err != nil {
		t.Fatalf("NewNVML: %v", err)
	}
	return p
}

func TestNVMLInventory(t *testing.T) {
	lib, _ := twoGPUs()
	p := newNVML(t, lib)
	want := []GPU{
		{Index: 0, UUID: "GPU-aaaa-0000", Name: "NVIDIA H200", MemoryTotalMiB: 143771,
			Node: DeviceNode{Path: "/dev/nvidia4", Major: 195, Minor: 4}},
		{Index: 1, UUID: "GPU-bbbb-1111", Name: "NVIDIA H100 80GB HBM3", MemoryTotalMiB: 81559,
			Node: DeviceNode{Path: "/dev/nvidia1", Major: 195, Minor: 1}},
	}
	if got := p.GPUs(); !reflect.DeepEqual(got, want) {
		t.Errorf("GPUs() = %+v\nwant %+v", got, want)
	}
	if p.Name() != "nvml" {
		t.Errorf("Name() = %q", p.Name())
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}
}

// A GPU whose minor NVML cannot give is still in the pool, with no known node.
func TestNVMLMinorNotSupported(t *testing.T) {
	p := newNVML(t, mockLib(
		mockDevice(fakeGPU{uuid: "GPU-0", name: "A", total: bytesPerMiB, minorRet: nvml.ERROR_NOT_SUPPORTED}),
		mockDevice(fakeGPU{uuid: "GPU-1", name: "B", total: bytesPerMiB, minor: 0}),
	))
	gpus := p.GPUs()
	if len(gpus) != 2 || gpus[0].Node.Known() || gpus[1].Node != (DeviceNode{Path: "/dev/nvidia0", Major: 195, Minor: 0}) {
		t.Errorf("nodes = %+v, %+v; want none, then /dev/nvidia0 195:0", gpus[0].Node, gpus[1].Node)
	}
	if got := ControlNodes(p); !reflect.DeepEqual(got, NVIDIAControlNodes) {
		t.Errorf("ControlNodes = %v", got)
	}
}

func TestNVMLSample(t *testing.T) {
	lib, _ := twoGPUs()
	p := newNVML(t, lib)
	got, err := p.Sample(context.Background())
	want := []Reading{{Index: 0, MemoryUsedMiB: 1234, Utilization: 37}, {Index: 1, MemoryUsedMiB: 0, Utilization: 100}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Sample() = %+v, %v\nwant %+v", got, err, want)
	}
}

// TestNVMLSampleOneGPUFails: GPU 1 is lost after the inventory; its reading
// carries the error, GPU 0 is read as usual.
func TestNVMLSampleOneGPUFails(t *testing.T) {
	lib, devs := twoGPUs()
	p := newNVML(t, lib)
	devs[1].GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST }
	got, err := p.Sample(context.Background())
	if err != nil || len(got) != 2 {
		t.Fatalf("Sample() = %+v, %v", got, err)
	}
	if got[0] != (Reading{Index: 0, MemoryUsedMiB: 1234, Utilization: 37}) {
		t.Errorf("GPU 0 reading = %+v", got[0])
	}
	if !errors.Is(got[1].Err, nvml.ERROR_GPU_IS_LOST) || got[1].Index != 1 || got[1].MemoryUsedMiB != 0 || got[1].Utilization != 0 {
		t.Errorf("GPU 1 reading = %+v, want Index 1 with ERROR_GPU_IS_LOST", got[1])
	}
	if !strings.Contains(got[1].Err.Error(), "GPU 1") {
		t.Errorf("error %q does not name the GPU", got[1].Err)
	}

	// A failing utilisation read is an error too, not a 0 % GPU.
	devs[1].GetMemoryInfoFunc = devs[0].GetMemoryInfoFunc
	devs[1].GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED }
	got, _ = p.Sample(context.Background())
	if !errors.Is(got[1].Err, nvml.ERROR_NOT_SUPPORTED) || got[1].MemoryUsedMiB != 0 || got[0].Err != nil {
		t.Errorf("after a utilisation failure: %+v", got)
	}
}

// TestNVMLProcesses: compute and graphics lists of both GPUs, merged, with a
// process listed twice on GPU 0 counted once and an unknown size as 0.
func TestNVMLProcesses(t *testing.T) {
	lib := mockLib(
		mockDevice(fakeGPU{uuid: "GPU-0", name: "A", total: bytesPerMiB,
			compute: []nvml.ProcessInfo{{Pid: 300, UsedGpuMemory: 2000*bytesPerMiB + 1}, {Pid: 100, UsedGpuMemory: 512 * bytesPerMiB}},
			graphics: []nvml.ProcessInfo{{Pid: 100, UsedGpuMemory: 512 * bytesPerMiB}, {Pid: 200, UsedGpuMemory: 64 * bytesPerMiB},
				{Pid: 400, UsedGpuMemory: ^uint64(0)}}}),
		mockDevice(fakeGPU{uuid: "GPU-1", name: "B", total: bytesPerMiB,
			compute:     []nvml.ProcessInfo{{Pid: 300, UsedGpuMemory: 1 << 30}},
			graphicsRet: nvml.ERROR_NOT_SUPPORTED}),
	)
	p := newNVML(t, lib)
	got, err := p.Processes(context.Background())
	want := []Process{
		{PID: 100, GPU: 0, MemoryMiB: 512},
		{PID: 200, GPU: 0, MemoryMiB: 64},
		{PID: 300, GPU: 0, MemoryMiB: 2000},
		{PID: 400, GPU: 0, MemoryMiB: 0},
		{PID: 300, GPU: 1, MemoryMiB: 1024},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Processes() = %+v, %v\nwant %+v", got, err, want)
	}
}

// TestNVMLProcessesError: a failure other than NOT_SUPPORTED is reported.
func TestNVMLProcessesError(t *testing.T) {
	lib, devs := twoGPUs()
	p := newNVML(t, lib)
	devs[1].GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_GPU_IS_LOST }
	got, err := p.Processes(context.Background())
	if !errors.Is(err, nvml.ERROR_GPU_IS_LOST) || got != nil {
		t.Errorf("Processes() = %+v, %v; want ERROR_GPU_IS_LOST", got, err)
	}
}

// TestNVMLInitFails: no library, no panic, no call past Init, no Shutdown.
func TestNVMLInitFails(t *testing.T) {
	lib := &mock.Interface{
		InitFunc:     func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND },
		ShutdownFunc: func() nvml.Return { return nvml.SUCCESS },
	}
	p, err := NewNVML(lib)
	if p != nil || !errors.Is(err, nvml.ERROR_LIBRARY_NOT_FOUND) {
		t.Fatalf("NewNVML = %v, %v; want ERROR_LIBRARY_NOT_FOUND", p, err)
	}
	if !strings.HasPrefix(err.Error(), "nvml: init: ERROR_LIBRARY_NOT_FOUND") {
		t.Errorf("error = %q", err)
	}
	if n := len(lib.ShutdownCalls()); n != 0 {
		t.Errorf("Shutdown called %d times after a failed Init", n)
	}
}

// TestNVMLInventoryFails: an inventory error shuts the library down again.
func TestNVMLInventoryFails(t *testing.T) {
	lib, devs := twoGPUs()
	devs[1].GetNameFunc = func() (string, nvml.Return) { return "", nvml.ERROR_UNKNOWN }
	p, err := NewNVML(lib)
	if p != nil || !errors.Is(err, nvml.ERROR_UNKNOWN) || !strings.Contains(err.Error(), "GPU 1") {
		t.Errorf("NewNVML = %v, %v; want GPU 1's ERROR_UNKNOWN", p, err)
	}
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}

	empty := mockLib()
	if p, err := NewNVML(empty); p != nil || err == nil || err.Error() != "nvml: no GPU found" {
		t.Errorf("NewNVML with no device = %v, %v", p, err)
	}
	if n := len(empty.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times with no device, want 1", n)
	}
}

// TestNVMLClose: Shutdown once; later calls never reach the unloaded library.
func TestNVMLClose(t *testing.T) {
	lib, devs := twoGPUs()
	p := newNVML(t, lib)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if rs, err := p.Sample(context.Background()); !errors.Is(err, errNVMLClosed) || rs != nil {
		t.Errorf("Sample after Close = %v, %v", rs, err)
	}
	if ps, err := p.Processes(context.Background()); !errors.Is(err, errNVMLClosed) || ps != nil {
		t.Errorf("Processes after Close = %v, %v", ps, err)
	}
	if n := len(devs[0].GetUtilizationRatesCalls()); n != 0 {
		t.Errorf("a device was read %d times after Close", n)
	}

	failing := mockLib(mockDevice(fakeGPU{uuid: "u", name: "n"}))
	failing.ShutdownFunc = func() nvml.Return { return nvml.ERROR_UNKNOWN }
	if err := newNVML(t, failing).Close(); !errors.Is(err, nvml.ERROR_UNKNOWN) {
		t.Errorf("Close with a failing Shutdown = %v", err)
	}
}

// TestNVMLCancelled: a cancelled context stops between device calls.
func TestNVMLCancelled(t *testing.T) {
	lib, devs := twoGPUs()
	p := newNVML(t, lib)
	ctx, cancel := context.WithCancel(context.Background())
	devs[0].GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		cancel() // the caller gives up while GPU 0 is read
		return nvml.Utilization{Gpu: 1}, nvml.SUCCESS
	}
	before := len(devs[1].GetMemoryInfoCalls())
	if rs, err := p.Sample(ctx); !errors.Is(err, context.Canceled) || rs != nil {
		t.Errorf("Sample = %v, %v; want context.Canceled", rs, err)
	}
	if n := len(devs[1].GetMemoryInfoCalls()); n != before {
		t.Errorf("GPU 1 was read after the cancellation")
	}
	if ps, err := p.Processes(ctx); !errors.Is(err, context.Canceled) || ps != nil {
		t.Errorf("Processes = %v, %v; want context.Canceled", ps, err)
	}
	if n := len(devs[0].GetComputeRunningProcessesCalls()); n != 0 {
		t.Errorf("a process list was read after the cancellation")
	}
}

// TestOpenNVMLReal loads the real library: where it is absent (every test
// machine without an NVIDIA driver) the answer is an error, never a crash.
func TestOpenNVMLReal(t *testing.T) {
	p, err := OpenNVML()
	if err != nil {
		if p != nil || !errors.Is(err, nvml.ERROR_LIBRARY_NOT_FOUND) || !strings.HasPrefix(err.Error(), "nvml: init: ") {
			t.Errorf("OpenNVML() = %v, %v; want ERROR_LIBRARY_NOT_FOUND", p, err)
		}
		return
	}
	// A machine with an NVIDIA driver: the real library must answer sensibly.
	defer p.Close()
	gpus := p.GPUs()
	rs, err := p.Sample(context.Background())
	if len(gpus) == 0 || err != nil || len(rs) != len(gpus) {
		t.Fatalf("real NVML: %d GPUs, Sample = %+v, %v", len(gpus), rs, err)
	}
	for i, g := range gpus {
		if g.Index != i || g.UUID == "" || g.Name == "" || g.MemoryTotalMiB == 0 || rs[i].Err != nil ||
			rs[i].MemoryUsedMiB > g.MemoryTotalMiB || rs[i].Utilization < 0 || rs[i].Utilization > 100 {
			t.Errorf("real NVML GPU %d: %+v, reading %+v", i, g, rs[i])
		}
	}
	if _, err := p.Processes(context.Background()); err != nil {
		t.Errorf("real NVML Processes: %v", err)
	}
	t.Logf("real NVML: %+v %+v", gpus, rs)
}
