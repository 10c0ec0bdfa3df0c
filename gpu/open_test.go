package gpu

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// backends replaces Open's hardware constructors for one test and records
// the order in which they are called.
type backends struct {
	calls []string
}

func stubBackends(t *testing.T, nvmlFn, amdFn func() (Probe, error)) *backends {
	b := &backends{}
	oldN, oldA := openNVML, openAMDGPU
	t.Cleanup(func() { openNVML, openAMDGPU = oldN, oldA })
	openNVML = func() (Probe, error) { b.calls = append(b.calls, "nvml"); return nvmlFn() }
	openAMDGPU = func() (Probe, error) { b.calls = append(b.calls, "amdgpu"); return amdFn() }
	return b
}

func (b *backends) want(t *testing.T, spec string, calls ...string) {
	t.Helper()
	if strings.Join(b.calls, ",") != strings.Join(calls, ",") {
		t.Errorf("Open(%q) tried %v, want %v", spec, b.calls, calls)
	}
}

// fakeNVML stands for a working NVIDIA backend.
type fakeNVML struct{ noneProbe }

func (fakeNVML) Name() string { return "nvml" }
func (fakeNVML) GPUs() []GPU  { return []GPU{{Index: 0}, {Index: 1}} }

func working(p Probe) func() (Probe, error) { return func() (Probe, error) { return p, nil } }

func failing(msg string) func() (Probe, error) {
	return func() (Probe, error) { return nil, errors.New(msg) }
}

func TestOpenAutoPrefersNVML(t *testing.T) {
	for _, spec := range []string{"auto", ""} {
		b := stubBackends(t, working(fakeNVML{}), failing("amdgpu: must not be tried"))
		p, note, err := Open(spec, "")
		if err != nil || p.Name() != "nvml" || note != "using nvml: 2 GPUs" {
			t.Errorf("Open(%q) = %v, %q, %v", spec, p, note, err)
		}
		b.want(t, spec, "nvml")
	}
}

// TestOpenAutoFallsBackToAMDGPU: nvml's reason stays in the note.
func TestOpenAutoFallsBackToAMDGPU(t *testing.T) {
	root := fakeSysfs(t)
	b := stubBackends(t, failing("nvml: init: ERROR_LIBRARY_NOT_FOUND"),
		func() (Probe, error) { return NewAMDGPU(root) })
	p, note, err := Open("auto", "")
	if err != nil || p.Name() != "amdgpu" || len(p.GPUs()) != 2 {
		t.Fatalf("Open(auto) = %v, %v", p, err)
	}
	if want := "nvml: init: ERROR_LIBRARY_NOT_FOUND; using amdgpu: 2 GPUs"; note != want {
		t.Errorf("note = %q, want %q", note, want)
	}
	b.want(t, "auto", "nvml", "amdgpu")
}

// TestOpenAutoFallsBackToSim: both reasons, on one line, then the sim pool.
func TestOpenAutoFallsBackToSim(t *testing.T) {
	empty := t.TempDir()
	b := stubBackends(t, failing("nvml: init: ERROR_LIBRARY_NOT_FOUND\n(libnvidia-ml.so.1)"),
		func() (Probe, error) { return NewAMDGPU(empty) })
	p, note, err := Open("auto", "")
	if err != nil || p.Name() != "sim" || len(p.GPUs()) != 192 {
		t.Fatalf("Open(auto) = %v, %v", p, err)
	}
	want := "nvml: init: ERROR_LIBRARY_NOT_FOUND (libnvidia-ml.so.1); amdgpu: no GPU with mem_info_vram_total under " +
		empty + "/class/drm; using the simulated pool sim:192x64GB"
	if note != want {
		t.Errorf("note = %q\nwant   %q", note, want)
	}
	b.want(t, "auto", "nvml", "amdgpu")
}

// TestOpenExplicit: the named backend answers, or its error is returned as
// is, without falling back to another one.
func TestOpenExplicit(t *testing.T) {
	root := fakeSysfs(t)
	b := stubBackends(t, failing("nvml: init: ERROR_DRIVER_NOT_LOADED"), func() (Probe, error) { return NewAMDGPU(root) })
	if p, note, err := Open("nvml", ""); p != nil || err == nil || err.Error() != "nvml: init: ERROR_DRIVER_NOT_LOADED" || note != "" {
		t.Errorf("Open(nvml) = %v, %q, %v; want nvml's error", p, note, err)
	}
	b.want(t, "nvml", "nvml")

	b.calls = nil
	if p, note, err := Open("amdgpu", ""); err != nil || p.Name() != "amdgpu" || note != "using amdgpu: 2 GPUs" {
		t.Errorf("Open(amdgpu) = %v, %q, %v", p, note, err)
	}
	b.want(t, "amdgpu", "amdgpu")

	b = stubBackends(t, working(fakeNVML{}), failing("amdgpu: no GPU with mem_info_vram_total under /sys/class/drm"))
	if p, _, err := Open("amdgpu", ""); p != nil || err == nil || !strings.HasPrefix(err.Error(), "amdgpu: no GPU") {
		t.Errorf("Open(amdgpu) = %v, %v; want amdgpu's error", p, err)
	}
	b.want(t, "amdgpu", "amdgpu")
	if p, note, err := Open("nvml", ""); err != nil || p.Name() != "nvml" || note != "using nvml: 2 GPUs" {
		t.Errorf("Open(nvml) = %v, %q, %v", p, note, err)
	}
}

// TestOpenNone: an empty pool named none, with no hardware touched.
func TestOpenNone(t *testing.T) {
	b := stubBackends(t, failing("nvml: must not be tried"), failing("amdgpu: must not be tried"))
	p, note, err := Open("none", "")
	if err != nil || p.Name() != "none" || len(p.GPUs()) != 0 || note != "GPU probe disabled: the pool is empty" {
		t.Fatalf("Open(none) = %v, %q, %v", p, note, err)
	}
	rs, err1 := p.Sample(context.Background())
	ps, err2 := p.Processes(context.Background())
	if len(rs) != 0 || len(ps) != 0 || err1 != nil || err2 != nil || p.Close() != nil {
		t.Errorf("none probe answered %v, %v, %v, %v", rs, ps, err1, err2)
	}
	if p, note, err := Open("sim:3", ""); err != nil || len(p.GPUs()) != 3 || note != "using the simulated pool sim:3" {
		t.Errorf("Open(sim:3) = %v, %q, %v", p, note, err)
	}
	b.want(t, "none, sim:3")
}

func TestOpenUnknown(t *testing.T) {
	b := stubBackends(t, working(fakeNVML{}), working(fakeNVML{}))
	for _, spec := range []string{"cuda", "NVML", "Auto", " auto", "nvml:0", "amd", "nonee"} {
		p, _, err := Open(spec, "")
		want := `unknown --gpus "` + spec + `": use auto, nvml, amdgpu, sim[:N[xSIZE]] or none`
		if p != nil || err == nil || err.Error() != want {
			t.Errorf("Open(%q) = %v, %v; want %q", spec, p, err, want)
		}
	}
	b.want(t, "unknown specs")
}

// TestOpenNVMLWithoutGPU: with or without cgo, the real OpenNVML on a machine
// without an NVIDIA driver is an "nvml: " error, never a crash.
func TestOpenNVMLWithoutGPU(t *testing.T) {
	p, err := OpenNVML()
	if err == nil {
		p.Close()
		t.Skip("this machine has an NVIDIA driver")
	}
	t.Logf("OpenNVML: %v", err)
	if p != nil || !strings.HasPrefix(err.Error(), "nvml: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("OpenNVML() = %v, %v", p, err)
	}
}
