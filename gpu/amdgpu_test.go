package gpu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// writeSysfs creates files (content) and, for names ending in "/", directories.
func writeSysfs(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(root, name)
		dir := path
		if !strings.HasSuffix(name, "/") {
			dir = filepath.Dir(path)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(name, "/") {
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

const testGiB = 1 << 30

// fakeSysfs is a machine with a non-GPU card0, an MI300X as card9 (render
// minor 128) and a nameless card10 (minor 137): numeric order, not lexical,
// puts card9 first. Its kfd nodes list the GPUs in the other order.
func fakeSysfs(t *testing.T) string {
	root := t.TempDir()
	n := func(v uint64) string { return strconv.FormatUint(v, 10) + "\n" }
	writeSysfs(t, root, map[string]string{
		"class/drm/version":                           "drm 1.1.0 20060810\n",
		"class/drm/card0/device/vendor":               "0x1a03\n", // a BMC's VGA: no VRAM figures
		"class/drm/card0/device/drm/card0/":           "",
		"class/drm/card0-VGA-1/status":                "connected\n",
		"class/drm/renderD128/dev":                    "226:128\n",
		"class/drm/card9/device/product_name":         "AMD Instinct MI300X\n",
		"class/drm/card9/device/unique_id":            "3f8a51c2e0d1b7a4\n",
		"class/drm/card9/device/mem_info_vram_total":  n(192 * testGiB),
		"class/drm/card9/device/mem_info_vram_used":   n(2048*bytesPerMiB + 7),
		"class/drm/card9/device/gpu_busy_percent":     "45\n",
		"class/drm/card9/device/drm/card9/":           "",
		"class/drm/card9/device/drm/renderD128/":      "",
		"class/drm/card10/device/mem_info_vram_total": n(64*testGiB + 100),
		"class/drm/card10/device/mem_info_vram_used":  "0\n",
		"class/drm/card10/device/gpu_busy_percent":    "100\n",
		"class/drm/card10/device/drm/renderD137/":     "",
		"class/drm/card10/device/drm/card10/":         "",

		"class/kfd/kfd/topology/nodes/0/gpu_id":     "0\n",
		"class/kfd/kfd/topology/nodes/0/properties": "cpu_cores_count 96\nsimd_count 0\ndrm_render_minor 0\n",
		"class/kfd/kfd/topology/nodes/1/gpu_id":     "53124\n",
		"class/kfd/kfd/topology/nodes/1/properties": "cpu_cores_count 0\nsimd_count 1216\ndrm_render_minor 137\nhive_id 0\n",
		"class/kfd/kfd/topology/nodes/2/gpu_id":     "4369\n",
		"class/kfd/kfd/topology/nodes/2/properties": "simd_count 1216\ndrm_render_minor 128\n",

		"class/kfd/kfd/proc/1000/pasid":        "32770\n",
		"class/kfd/kfd/proc/1000/vram_53124":   n(testGiB),
		"class/kfd/kfd/proc/1000/vram_4369":    "0\n", // opened but unused: not listed
		"class/kfd/kfd/proc/2000/vram_4369":    n(3*bytesPerMiB + 5),
		"class/kfd/kfd/proc/2000/vram_99999":   n(5 * testGiB), // no such GPU
		"class/kfd/kfd/proc/2000/stats_4369/":  "",
		"class/kfd/kfd/proc/3000/vram_4369":    "garbage\n",
		"class/kfd/kfd/proc/notapid/vram_4369": n(testGiB),
	})
	return root
}

func newAMD(t *testing.T, root string) Probe {
	t.Helper()
	p, err := NewAMDGPU(root)
	if err != nil {
		t.Fatalf("NewAMDGPU: %v", err)
	}
	return p
}

func TestAMDGPUInventory(t *testing.T) {
	p := newAMD(t, fakeSysfs(t))
	want := []GPU{
		{Index: 0, UUID: "3f8a51c2e0d1b7a4", Name: "AMD Instinct MI300X", MemoryTotalMiB: 196608,
			Node: DeviceNode{Path: "/dev/dri/renderD128", Major: 226, Minor: 128}}, // from class/drm/renderD128/dev
		{Index: 1, UUID: "card10", Name: "AMD GPU", MemoryTotalMiB: 65536,
			Node: DeviceNode{Path: "/dev/dri/renderD137", Major: 226, Minor: 137}}, // no dev file: DRM's major, the name's minor
	}
	if got := p.GPUs(); !reflect.DeepEqual(got, want) {
		t.Errorf("GPUs() = %+v\nwant %+v", got, want)
	}
	if p.Name() != "amdgpu" {
		t.Errorf("Name() = %q", p.Name())
	}
	if got := ControlNodes(p); !reflect.DeepEqual(got, []string{"/dev/kfd"}) {
		t.Errorf("ControlNodes = %v, want [/dev/kfd]", got)
	}
}

// The card's own drm/renderD<M>/dev is read first, and its numbers are the
// node's even where they are not DRM's usual ones; a garbled one fails the card.
func TestAMDGPURenderNodeDevFile(t *testing.T) {
	root := fakeSysfs(t)
	writeSysfs(t, root, map[string]string{"class/drm/card10/device/drm/renderD137/dev": "511:7\n"})
	if got := newAMD(t, root).GPUs()[1].Node; got != (DeviceNode{Path: "/dev/dri/renderD137", Major: 511, Minor: 7}) {
		t.Errorf("card10's node = %+v, want /dev/dri/renderD137 511:7 from its dev file", got)
	}
	writeSysfs(t, root, map[string]string{"class/drm/renderD128/dev": "226-128\n"})
	if p, err := NewAMDGPU(root); p != nil || err == nil || !strings.Contains(err.Error(), `card9: renderD128/dev: "226-128" is not major:minor`) {
		t.Errorf("NewAMDGPU with a garbled dev file = %v, %v", p, err)
	}
}

func TestAMDGPUSample(t *testing.T) {
	p := newAMD(t, fakeSysfs(t))
	got, err := p.Sample(context.Background())
	want := []Reading{{Index: 0, MemoryUsedMiB: 2048, Utilization: 45}, {Index: 1, MemoryUsedMiB: 0, Utilization: 100}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Sample() = %+v, %v\nwant %+v", got, err, want)
	}
}

// TestAMDGPUSampleBadCard: garbage, an impossible percentage or a missing file
// on card10 sets its Err only; card9 is still read.
func TestAMDGPUSampleBadCard(t *testing.T) {
	root := fakeSysfs(t)
	p := newAMD(t, root)
	dev := filepath.Join(root, "class/drm/card10/device")
	for _, c := range []struct{ file, content, want string }{
		{"gpu_busy_percent", "N/A\n", `gpu_busy_percent: not a number: "N/A"`},
		{"gpu_busy_percent", "250\n", "250 is over 100"},
		{"mem_info_vram_used", "-4\n", "mem_info_vram_used: not a number"},
		{"mem_info_vram_used", "", "mem_info_vram_used: not a number"},
		{"mem_info_vram_used", "\x00\xff" + strings.Repeat("9", 100), "not a number"},
		{"mem_info_vram_used", "remove", "no such file"},
	} {
		path := filepath.Join(dev, c.file)
		old, _ := os.ReadFile(path)
		if c.content == "remove" {
			os.Remove(path)
		} else {
			os.WriteFile(path, []byte(c.content), 0o644)
		}
		got, err := p.Sample(context.Background())
		if err != nil || len(got) != 2 {
			t.Fatalf("%s=%q: Sample() = %+v, %v", c.file, c.content, got, err)
		}
		if got[0] != (Reading{Index: 0, MemoryUsedMiB: 2048, Utilization: 45}) {
			t.Errorf("%s=%q: card9 reading = %+v", c.file, c.content, got[0])
		}
		r := got[1]
		if r.Err == nil || r.Index != 1 || r.MemoryUsedMiB != 0 || r.Utilization != 0 ||
			!strings.Contains(r.Err.Error(), c.want) || !strings.HasPrefix(r.Err.Error(), "amdgpu: GPU 1: ") ||
			strings.Contains(r.Err.Error(), "\n") || len(r.Err.Error()) > 200 {
			t.Errorf("%s=%q: card10 reading = %+v, want an error with %q", c.file, c.content, r, c.want)
		}
		os.WriteFile(path, old, 0o644)
	}
}

// TestAMDGPUProcesses: vram_<gpu_id> maps through the kfd node's render minor
// to the card that holds renderD<minor>; unused, unknown or garbled entries
// and non-pid directories are left out.
func TestAMDGPUProcesses(t *testing.T) {
	p := newAMD(t, fakeSysfs(t))
	got, err := p.Processes(context.Background())
	want := []Process{{PID: 2000, GPU: 0, MemoryMiB: 3}, {PID: 1000, GPU: 1, MemoryMiB: 1024}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Processes() = %+v, %v\nwant %+v", got, err, want)
	}
}

// TestAMDGPUProcessVanished: a pid directory or a vram file that disappears
// between the listing and the read is skipped, the others still count.
func TestAMDGPUProcessVanished(t *testing.T) {
	root := fakeSysfs(t)
	p := newAMD(t, root)
	proc := filepath.Join(root, "class/kfd/kfd/proc")
	// Dangling links list like entries but fail to open, as an exited process does.
	if err := os.Symlink(filepath.Join(root, "gone"), filepath.Join(proc, "5000")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(proc, "6000"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "gone"), filepath.Join(proc, "6000", "vram_4369")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(proc, "2000")); err != nil {
		t.Fatal(err)
	}
	got, err := p.Processes(context.Background())
	want := []Process{{PID: 1000, GPU: 1, MemoryMiB: 1024}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Processes() = %+v, %v\nwant %+v", got, err, want)
	}

	// Without kfd there is nothing to list, and that is no error.
	os.RemoveAll(filepath.Join(root, "class/kfd"))
	if got, err := p.Processes(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("Processes() without kfd = %+v, %v", got, err)
	}
}

func TestAMDGPUCancelled(t *testing.T) {
	p := newAMD(t, fakeSysfs(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rs, err := p.Sample(ctx); !errors.Is(err, context.Canceled) || rs != nil {
		t.Errorf("Sample = %v, %v", rs, err)
	}
	if ps, err := p.Processes(ctx); !errors.Is(err, context.Canceled) || ps != nil {
		t.Errorf("Processes = %v, %v", ps, err)
	}
}

// TestAMDGPUNoCard: no drm class, or only cards without VRAM figures, is an
// error naming where it looked; a garbled VRAM total names the card.
func TestAMDGPUNoCard(t *testing.T) {
	root := t.TempDir()
	want := "amdgpu: no GPU with mem_info_vram_total under " + filepath.Join(root, "class", "drm")
	if p, err := NewAMDGPU(root); p != nil || err == nil || err.Error() != want {
		t.Errorf("NewAMDGPU(empty) = %v, %v; want %q", p, err, want)
	}
	writeSysfs(t, root, map[string]string{"class/drm/card0/device/vendor": "0x10de\n", "class/drm/card0-DP-1/": ""})
	if p, err := NewAMDGPU(root); p != nil || err == nil || err.Error() != want {
		t.Errorf("NewAMDGPU(no amdgpu card) = %v, %v; want %q", p, err, want)
	}
	writeSysfs(t, root, map[string]string{"class/drm/card3/device/mem_info_vram_total": "lots\n"})
	if p, err := NewAMDGPU(root); p != nil || err == nil || !strings.HasPrefix(err.Error(), "amdgpu: card3: mem_info_vram_total: not a number") {
		t.Errorf("NewAMDGPU(garbled total) = %v, %v", p, err)
	}
}
