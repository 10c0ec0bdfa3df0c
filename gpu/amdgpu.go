package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const bytesPerMiB = 1 << 20

// amdgpuProbe reads AMD GPUs from the amdgpu driver's sysfs files and the
// per-process VRAM figures of kfd.
type amdgpuProbe struct {
	root    string
	devDirs []string    // <root>/class/drm/card<N>/device, by GPU index
	byMinor map[int]int // DRM render minor (renderD<M>) -> GPU index
	gpus    []GPU
}

var _ Probe = (*amdgpuProbe)(nil)

// NewAMDGPU finds the cards under <sysfsRoot>/class/drm that report VRAM
// ("/sys" in production; a fake tree in tests).
func NewAMDGPU(sysfsRoot string) (Probe, error) {
	drm := filepath.Join(sysfsRoot, "class", "drm")
	entries, _ := os.ReadDir(drm) // no drm class at all is "no GPU" below
	var cards []int
	for _, e := range entries {
		if n, ok := drmCardNumber(e.Name()); ok {
			cards = append(cards, n)
		}
	}
	sort.Ints(cards)
	p := &amdgpuProbe{root: sysfsRoot, byMinor: map[int]int{}}
	for _, n := range cards {
		dir := filepath.Join(drm, "card"+strconv.Itoa(n), "device")
		total, err := sysfsUint(filepath.Join(dir, "mem_info_vram_total"))
		if errors.Is(err, os.ErrNotExist) {
			continue // not an amdgpu card (another vendor's, or a display-only device)
		}
		if err != nil {
			return nil, fmt.Errorf("amdgpu: card%d: %w", n, err)
		}
		idx := len(p.gpus)
		g := GPU{
			Index:          idx,
			UUID:           sysfsString(filepath.Join(dir, "unique_id"), "card"+strconv.Itoa(n)),
			Name:           sysfsString(filepath.Join(dir, "product_name"), "AMD GPU"),
			MemoryTotalMiB: total / bytesPerMiB,
		}
		if m, ok := drmRenderMinor(filepath.Join(dir, "drm")); ok {
			p.byMinor[m] = idx
			if g.Node, err = renderNode(drm, dir, m); err != nil {
				return nil, fmt.Errorf("amdgpu: card%d: %w", n, err)
			}
		}
		p.gpus = append(p.gpus, g)
		p.devDirs = append(p.devDirs, dir)
	}
	if len(p.gpus) == 0 {
		return nil, fmt.Errorf("amdgpu: no GPU with mem_info_vram_total under %s", drm)
	}
	return p, nil
}

// drmCardNumber accepts "card<N>" and not connectors such as "card0-DP-1".
func drmCardNumber(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "card")
	n, err := strconv.Atoi(digits)
	return n, ok && err == nil && n >= 0
}

// drmRenderMinor finds the renderD<M> node of a card, which kfd names by M.
func drmRenderMinor(drmDir string) (int, bool) {
	entries, _ := os.ReadDir(drmDir)
	for _, e := range entries {
		if s, ok := strings.CutPrefix(e.Name(), "renderD"); ok {
			if m, err := strconv.Atoi(s); err == nil {
				return m, true
			}
		}
	}
	return 0, false
}

// renderNode is /dev/dri/renderD<m>, with the numbers its sysfs dev file
// ("226:128") gives, from the card's own drm directory or the drm class;
// without either file, DRM's fixed major and the name's minor.
func renderNode(drmClass, devDir string, m int) (DeviceNode, error) {
	name := "renderD" + strconv.Itoa(m)
	node := DeviceNode{Path: "/dev/dri/" + name, Major: drmMajor, Minor: uint32(m)}
	for _, dev := range []string{filepath.Join(devDir, "drm", name, "dev"), filepath.Join(drmClass, name, "dev")} {
		b, err := os.ReadFile(dev)
		if err != nil {
			continue
		}
		maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
		major, err1 := strconv.ParseUint(maj, 10, 32)
		minor, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return DeviceNode{}, fmt.Errorf("%s/dev: %q is not major:minor", name, sysfsClip(string(b)))
		}
		node.Major, node.Minor = uint32(major), uint32(minor)
		return node, nil
	}
	return node, nil
}

// sysfsUint reads a sysfs file holding one unsigned number.
func sysfsUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: not a number: %q", filepath.Base(path), sysfsClip(string(b)))
	}
	return v, nil
}

// sysfsString returns a file's trimmed content, or def when it is missing or empty.
func sysfsString(path, def string) string {
	b, err := os.ReadFile(path)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return def
}

// sysfsClip keeps error messages one short line whatever a file holds.
func sysfsClip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return s
}

func (p *amdgpuProbe) Name() string { return "amdgpu" }

func (p *amdgpuProbe) GPUs() []GPU { return append([]GPU(nil), p.gpus...) }

// Sample reads each card on its own: one that fails gets Err, the others are read.
func (p *amdgpuProbe) Sample(ctx context.Context) ([]Reading, error) {
	out := make([]Reading, len(p.devDirs))
	for i, dir := range p.devDirs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = readAMDGPU(i, dir)
	}
	return out, nil
}

func readAMDGPU(i int, dir string) Reading {
	used, err := sysfsUint(filepath.Join(dir, "mem_info_vram_used"))
	if err != nil {
		return Reading{Index: i, Err: fmt.Errorf("amdgpu: GPU %d: %w", i, err)}
	}
	busy, err := sysfsUint(filepath.Join(dir, "gpu_busy_percent"))
	if err == nil && busy > 100 {
		err = fmt.Errorf("gpu_busy_percent: %d is over 100", busy)
	}
	if err != nil {
		return Reading{Index: i, Err: fmt.Errorf("amdgpu: GPU %d: %w", i, err)}
	}
	return Reading{Index: i, MemoryUsedMiB: used / bytesPerMiB, Utilization: int(busy)}
}

// Processes reads kfd's vram_<gpuid> file of every process. A process that
// exits while it is read, or a file that makes no sense, is left out.
func (p *amdgpuProbe) Processes(ctx context.Context) ([]Process, error) {
	kfd := filepath.Join(p.root, "class", "kfd", "kfd")
	byGPUID := p.kfdGPUs(filepath.Join(kfd, "topology", "nodes"))
	pids, _ := os.ReadDir(filepath.Join(kfd, "proc")) // no kfd: no process to see
	var out []Process
	for _, e := range pids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(kfd, "proc", e.Name())
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			id, ok := strings.CutPrefix(f.Name(), "vram_")
			idx, known := byGPUID[id]
			if !ok || !known {
				continue
			}
			b, err := sysfsUint(filepath.Join(dir, f.Name()))
			if err != nil || b == 0 {
				continue // kfd lists every GPU the process opened, used or not
			}
			out = append(out, Process{PID: pid, GPU: idx, MemoryMiB: b / bytesPerMiB})
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].GPU != out[b].GPU {
			return out[a].GPU < out[b].GPU
		}
		return out[a].PID < out[b].PID
	})
	return out, nil
}

// kfdGPUs maps kfd's gpu_id (as written in vram_<gpu_id>) to a GPU index,
// through the node's drm_render_minor; CPU nodes have gpu_id 0.
func (p *amdgpuProbe) kfdGPUs(nodesDir string) map[string]int {
	m := map[string]int{}
	nodes, _ := os.ReadDir(nodesDir)
	for _, n := range nodes {
		dir := filepath.Join(nodesDir, n.Name())
		id, err := sysfsUint(filepath.Join(dir, "gpu_id"))
		if err != nil || id == 0 {
			continue
		}
		props, err := os.ReadFile(filepath.Join(dir, "properties"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(props), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 || f[0] != "drm_render_minor" {
				continue
			}
			if minor, err := strconv.Atoi(f[1]); err == nil {
				if idx, ok := p.byMinor[minor]; ok {
					m[strconv.FormatUint(id, 10)] = idx
				}
			}
		}
	}
	return m
}

func (p *amdgpuProbe) Close() error { return nil }
