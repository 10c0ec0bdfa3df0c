package gpu

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParseSimSpec: the accepted spellings and their count and per-GPU MiB.
func TestParseSimSpec(t *testing.T) {
	ok := []struct {
		spec  string
		count int
		mib   uint64
	}{
		{"sim", 192, 65536}, // DefaultSimSpec: enough for 24xLarge (192 units)
		{DefaultSimSpec, 192, 65536},
		{"sim:8", 8, 65536},
		{"sim:1", 1, 65536},
		{"sim:4096", 4096, 65536},
		{"sim:8x80GB", 8, 81920},
		{"sim:8x80gb", 8, 81920},
		{"sim:2x65536MiB", 2, 65536},
		{"sim:2x65536mib", 2, 65536},
		{"sim:4x64GB", 4, 65536},
		{"sim:1x1MiB", 1, 1},
		{"sim:1x4294967295GB", 1, 4294967295 * 1024},
	}
	for _, c := range ok {
		count, mib, err := ParseSimSpec(c.spec)
		if err != nil || count != c.count || mib != c.mib {
			t.Errorf("ParseSimSpec(%q) = %d, %d, %v; want %d, %d", c.spec, count, mib, err, c.count, c.mib)
		}
	}
	bad := []string{
		"", "nvml", "amdgpu", "auto", "none", "SIM", "sim:", "simx", "sim8",
		"sim:0", "sim:-1", "sim:4097", "sim:99999999999999999999", "sim:x", "sim:8x",
		"sim:8x0GB", "sim:8x0MiB", "sim:8x80", "sim:8x80TB", "sim:8x80MB", "sim:8xGB", "sim:8xMiB",
		"sim:8x80GBx", "sim:8x8x80GB", "sim:8x-80GB", "sim:8x4294967296GB", "sim:8 x80GB",
		"sim: 8", "sim:8 ", " sim:8", "sim:8\n", "sim:abc", "sim:1.5", "sim:8x1.5GB",
	}
	for _, spec := range bad {
		count, mib, err := ParseSimSpec(spec)
		if err == nil {
			t.Errorf("ParseSimSpec(%q) = %d, %d; want an error", spec, count, mib)
			continue
		}
		if count != 0 || mib != 0 {
			t.Errorf("ParseSimSpec(%q) failed but returned %d, %d", spec, count, mib)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSimSpec(%q) error spans lines: %q", spec, err)
		}
	}
}

// TestNewSimInventory: N GPUs indexed 0..N-1 with distinct UUIDs and the
// spec's memory; GPUs() is a copy.
func TestNewSimInventory(t *testing.T) {
	for _, c := range []struct {
		spec  string
		count int
		mib   uint64
	}{
		{"sim", 192, 65536},
		{"sim:8x80GB", 8, 81920},
		{"sim:1", 1, 65536},
		{"sim:3x1024MiB", 3, 1024},
	} {
		p, err := NewSim(c.spec)
		if err != nil {
			t.Fatalf("NewSim(%q): %v", c.spec, err)
		}
		if p.Name() != "sim" {
			t.Errorf("Name() = %q, want sim", p.Name())
		}
		gpus := p.GPUs()
		if len(gpus) != c.count {
			t.Fatalf("NewSim(%q) has %d GPUs, want %d", c.spec, len(gpus), c.count)
		}
		uuids := map[string]bool{}
		for i, g := range gpus {
			if g.Index != i {
				t.Errorf("%s GPU %d has index %d", c.spec, i, g.Index)
			}
			if g.MemoryTotalMiB != c.mib {
				t.Errorf("%s GPU %d has %d MiB, want %d", c.spec, i, g.MemoryTotalMiB, c.mib)
			}
			if g.UUID == "" || uuids[g.UUID] {
				t.Errorf("%s GPU %d UUID %q empty or repeated", c.spec, i, g.UUID)
			}
			uuids[g.UUID] = true
			if g.Name == "" {
				t.Errorf("%s GPU %d has no name", c.spec, i)
			}
		}
		gpus[0].Index, gpus[0].UUID = 99, "changed"
		if again := p.GPUs(); again[0].Index != 0 || again[0].UUID == "changed" {
			t.Errorf("GPUs() shares its backing array")
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if p, err := NewSim("sim:0"); err == nil || p != nil {
		t.Errorf("NewSim(sim:0) = %v, %v; want an error", p, err)
	}
}

// TestSimSample: one idle reading per GPU, by index; no processes.
func TestSimSample(t *testing.T) {
	p, err := NewSim("sim:5x80GB")
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		rs, err := p.Sample(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 5 {
			t.Fatalf("Sample returned %d readings, want 5", len(rs))
		}
		for i, r := range rs {
			if r != (Reading{Index: i}) {
				t.Errorf("reading %d = %+v, want {Index:%d}", i, r, i)
			}
		}
	}
	procs, err := p.Processes(context.Background())
	if err != nil || len(procs) != 0 {
		t.Fatalf("Processes() = %v, %v; want none", procs, err)
	}
}

// TestOpen: auto and "" answer with the default pool, none with an empty one,
// sim specs with theirs; anything else is refused.
func TestOpen(t *testing.T) {
	for _, c := range []struct {
		spec  string
		count int
	}{{"auto", 192}, {"", 192}, {"none", 0}, {"sim", 192}, {"sim:3", 3}} {
		p, note, err := Open(c.spec, "")
		if err != nil {
			t.Fatalf("Open(%q): %v", c.spec, err)
		}
		if note == "" {
			t.Errorf("Open(%q) gave no note", c.spec)
		}
		if n := len(p.GPUs()); n != c.count {
			t.Errorf("Open(%q) has %d GPUs, want %d", c.spec, n, c.count)
		}
		rs, err := p.Sample(context.Background())
		if err != nil || len(rs) != c.count {
			t.Errorf("Open(%q).Sample = %d readings, %v", c.spec, len(rs), err)
		}
	}
	for _, spec := range []string{"sim:0", "nvml-ish", "cuda", "sim:8x"} {
		if p, _, err := Open(spec, ""); err == nil {
			t.Errorf("Open(%q) = %v, want an error", spec, p)
		}
	}
}

// FuzzParseSimSpec: never panics; a success has 1..4096 GPUs of some memory.
func FuzzParseSimSpec(f *testing.F) {
	f.Add("sim:8x80GB")
	f.Fuzz(func(t *testing.T, spec string) {
		count, mib, err := ParseSimSpec(spec)
		if err != nil {
			if count != 0 || mib != 0 {
				t.Fatalf("ParseSimSpec(%q) failed but returned %d, %d", spec, count, mib)
			}
			return
		}
		if count < 1 || count > 4096 || mib == 0 {
			t.Fatalf("ParseSimSpec(%q) = %d GPUs of %d MiB", spec, count, mib)
		}
		if spec != "sim" && !strings.HasPrefix(spec, "sim:") {
			t.Fatalf("ParseSimSpec(%q) accepted a spec without the sim: prefix", spec)
		}
	})
}

// With a device directory, GPU i's node is dir/nvidia<i> with the numbers
// mknod gave it; a missing node fails the pool with the command that makes it.
func TestSimDevDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dir := t.TempDir()
	for i, minor := range []uint32{0, 7} { // the numbers come from the file, not from the index
		path := filepath.Join(dir, "nvidia"+strconv.Itoa(i))
		if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(195, minor))); err != nil {
			t.Fatal(err)
		}
	}
	p, _, err := Open("sim:2", "", WithSimDevDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := []DeviceNode{
		{Path: filepath.Join(dir, "nvidia0"), Major: 195, Minor: 0},
		{Path: filepath.Join(dir, "nvidia1"), Major: 195, Minor: 7},
	}
	for i, g := range p.GPUs() {
		if g.Node != want[i] {
			t.Errorf("GPU %d node = %+v, want %+v", i, g.Node, want[i])
		}
	}
	if ControlNodes(p) != nil {
		t.Errorf("sim has control nodes %v", ControlNodes(p))
	}
	_, err = NewSimOn("sim:3", "", WithSimDevDir(dir))
	if err == nil || !strings.Contains(err.Error(), "sim GPU 2's device node") || !strings.Contains(err.Error(), "mknod "+filepath.Join(dir, "nvidia2")+" c 195 2") {
		t.Errorf("sim:3 with two nodes: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nvidia2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSimOn("sim:3", "", WithSimDevDir(dir)); err == nil || !strings.Contains(err.Error(), "is not a character device") {
		t.Errorf("sim:3 with a plain file as node 2: %v", err)
	}
	if p, _ := NewSim("sim:1"); p.GPUs()[0].Node.Known() {
		t.Errorf("sim without a device directory has node %+v", p.GPUs()[0].Node)
	}
}

// fakeMeter is a job's cgroup as the sim reads it.
type fakeMeter struct {
	mem, usec     uint64
	memOK, usecOK bool
}

func (m *fakeMeter) MemoryBytes() (uint64, bool) { return m.mem, m.memOK }
func (m *fakeMeter) CPUUsec() (uint64, bool)     { return m.usec, m.usecOK }

// TestSimJobFigures: a job whose meter keeps memory shows it on its GPUs,
// split evenly, instead of its processes' sum; one whose meter does not
// (no memory controller) shows its processes' resident memory as before.
func TestSimJobFigures(t *testing.T) {
	p, err := NewSim("sim:4")
	if err != nil {
		t.Fatal(err)
	}
	sim := p.(*simProbe)
	self := os.Getpid()
	sim.Assign(map[int][]int{self: {0, 1}})
	whole := &fakeMeter{mem: 3000 << 20, memOK: true, usecOK: true}
	sim.AssignJobs([]JobFigures{{ID: 1, GPUs: []int{0, 1}, Meter: whole}}, nil)
	rs, _ := p.Sample(context.Background())
	if rs[0].MemoryUsedMiB != 1500 || rs[1].MemoryUsedMiB != 1500 {
		t.Errorf("metered job: GPU memory %d, %d MiB; want 1500 each", rs[0].MemoryUsedMiB, rs[1].MemoryUsedMiB)
	}
	whole.memOK = false // no memory controller: the processes' figures
	rs, _ = p.Sample(context.Background())
	info, _ := sim.proc.Read(self)
	want := info.RSSPages * uint64(os.Getpagesize()) / (1 << 20) / 2
	if got := rs[0].MemoryUsedMiB; got+8 < want || got > want+8 {
		t.Errorf("unmetered job: GPU memory %d MiB, want about %d (its resident memory, halved)", got, want)
	}
	procs, _ := p.Processes(context.Background())
	if len(procs) != 2 || procs[0].PID != self {
		t.Errorf("Processes = %+v, want this process on GPUs 0 and 1", procs)
	}
}

// countingMeter counts the reads of a job's cgroup.
type countingMeter struct {
	fakeMeter
	reads int
}

func (m *countingMeter) CPUUsec() (uint64, bool) { m.reads++; return m.fakeMeter.CPUUsec() }

// TestSimJobsClock: while the jobs' clock stands still a sample reads
// nothing per job or process and keeps the last figures with no
// utilisation; once it moves, each job is read again.
func TestSimJobsClock(t *testing.T) {
	p, err := NewSim("sim:2")
	if err != nil {
		t.Fatal(err)
	}
	sim := p.(*simProbe)
	var usec uint64 = 500
	clockOK := true
	clockReads := 0
	clock := func() (uint64, bool) { clockReads++; return usec, clockOK }
	job := &countingMeter{fakeMeter: fakeMeter{mem: 2000 << 20, memOK: true, usec: 100, usecOK: true}}
	sim.Assign(map[int][]int{os.Getpid(): {0}})
	sim.AssignJobs([]JobFigures{{ID: 1, GPUs: []int{0}, Meter: job}}, clock)
	ctx := context.Background()
	sample := func() Reading {
		t.Helper()
		rs, _ := p.Sample(ctx)
		return rs[0]
	}
	if r := sample(); r.MemoryUsedMiB != 2000 || job.reads != 1 {
		t.Fatalf("first sample: %+v after %d reads of the job; want 2000 MiB, 1 read", r, job.reads)
	}
	job.mem, job.usec = 3000<<20, 200 // changed, but the clock did not move: the job did not run
	if r := sample(); r.MemoryUsedMiB != 2000 || r.Utilization != 0 || job.reads != 1 {
		t.Errorf("clock still: %+v after %d reads of the job; want the last 2000 MiB, 0%%, no read", r, job.reads)
	}
	if procs, _ := p.Processes(ctx); len(procs) != 1 || procs[0].PID != os.Getpid() {
		t.Errorf("clock still: Processes = %+v, want the last read's", procs)
	}
	usec = 600
	if r := sample(); r.MemoryUsedMiB != 3000 || job.reads != 2 {
		t.Errorf("clock moved: %+v after %d reads of the job; want 3000 MiB, read again", r, job.reads)
	}
	clockOK = false // an unreadable clock: every job is read
	sample()
	sample()
	if job.reads != 4 {
		t.Errorf("unreadable clock: %d reads of the job, want 4", job.reads)
	}
	clockOK = true
	sample()
	sim.AssignJobs([]JobFigures{{ID: 1, GPUs: []int{0}, Meter: job}}, clock) // a new assignment is read afresh
	before := job.reads
	sample()
	if job.reads != before+1 {
		t.Errorf("after AssignJobs with the clock still: %d reads of the job, want %d", job.reads, before+1)
	}
	if clockReads == 0 {
		t.Error("the clock was never read")
	}
}
