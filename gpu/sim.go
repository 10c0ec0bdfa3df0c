package gpu

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultSimSpec is a pool big enough for the largest model (192 units).
const DefaultSimSpec = "sim:192x64GB"

// simProbe is a simulated pool for machines without GPUs. A process that
// runs on simulated GPUs shows its resident memory as GPU memory and its CPU
// use as utilisation, so a real program's load shows without a GPU.
type simProbe struct {
	gpus []GPU
	proc ProcFS

	mu        sync.Mutex
	assigned  map[int][]int // pid → GPU indices, from the jobs
	ticks     map[int]uint64
	jobs      []JobFigures      // jobs measured as a whole (their cgroups)
	jobUsec   map[uint64]uint64 // job → CPU µs at the last sample
	lastAt    time.Time
	lastProcs []Process // what the last read found

	clock       JobsClock      // every job's CPU time in one read; nil: read each job every sample
	clockUsec   uint64         // the clock when the last read measured
	lastJobMiB  map[int]uint64 // the metered jobs' memory the last read found, by GPU
	lastMeasure bool           // the last read measured the current assignment: it may stand
}

var (
	_ Probe       = (*simProbe)(nil)
	_ Assigner    = (*simProbe)(nil)
	_ JobAssigner = (*simProbe)(nil)
)

// Assigner is a probe that must be told which processes run on which GPUs,
// as real GPUs know by themselves.
type Assigner interface {
	Assign(pidGPUs map[int][]int)
}

// JobMeter reads one job's figures as a whole, as its cgroup keeps them.
type JobMeter interface {
	// MemoryBytes is the job's memory; ok is false where it is not kept
	// (no memory controller).
	MemoryBytes() (bytes uint64, ok bool)
	// CPUUsec is the CPU time of all the job's processes, ever; ok is false
	// where it is not kept.
	CPUUsec() (usec uint64, ok bool)
}

// JobFigures is a job whose figures a probe that simulates them may read
// as a whole: the GPUs it runs on and its meter.
type JobFigures struct {
	ID    uint64
	GPUs  []int
	Meter JobMeter
}

// JobAssigner is a probe that simulates GPU figures from what jobs use, and
// can take them per job (from the job's cgroup) rather than per process.
type JobAssigner interface {
	// AssignJobs records the jobs; clock, where not nil, is the CPU time
	// of every assigned process together (the jobs' parent cgroup).
	AssignJobs(jobs []JobFigures, clock JobsClock)
}

// JobsClock is the CPU time, ever, of every job's processes together, in
// one read: a reader that finds it unchanged knows that no process of them
// ran, forked, exec'd or exited since, so what it read of them stands.
type JobsClock func() (usec uint64, ok bool)

// AssignJobs records the jobs measured as a whole: where a meter keeps
// memory (or CPU time), that job's GPUs show it instead of the sum of its
// processes. While clock stands still, a sample reads nothing per job.
func (p *simProbe) AssignJobs(jobs []JobFigures, clock JobsClock) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jobs, p.clock, p.lastMeasure = jobs, clock, false
}

// NewSim parses "sim", "sim:N" or "sim:NxSIZE" (SIZE in GB or MiB, e.g. 80GB,
// 81920MiB) and returns a pool of N identical simulated GPUs.
func NewSim(spec string) (Probe, error) { return NewSimOn(spec, "") }

// SimOption configures the simulated pool.
type SimOption func(*simConfig)

type simConfig struct{ devDir string }

// WithSimDevDir gives simulated GPU i the device node dir/nvidia<i> (the
// daemon's --sim-dev-dir), whose numbers are read from the file: a test makes
// them with mknod, so a job's device isolation can be shown without GPUs.
func WithSimDevDir(dir string) SimOption { return func(c *simConfig) { c.devDir = dir } }

// NewSimOn is NewSim for a named node: its GPUs' UUIDs carry the name.
func NewSimOn(spec, node string, opts ...SimOption) (Probe, error) {
	count, size, err := ParseSimSpec(spec)
	if err != nil {
		return nil, err
	}
	var cfg simConfig
	for _, o := range opts {
		o(&cfg)
	}
	p := &simProbe{proc: ProcFS{Root: "/proc"}}
	for i := 0; i < count; i++ {
		g := GPU{
			Index:          i,
			UUID:           simUUID(node, i),
			Name:           "Simulated GPU",
			MemoryTotalMiB: size,
		}
		if cfg.devDir != "" {
			path := filepath.Join(cfg.devDir, "nvidia"+strconv.Itoa(i))
			if g.Node, err = statNode(path); err != nil {
				return nil, fmt.Errorf("sim GPU %d's device node: %w (make it with: mknod %s c %d %d)", i, err, path, nvidiaMajor, i)
			}
		}
		p.gpus = append(p.gpus, g)
	}
	return p, nil
}

// ParseSimSpec returns the GPU count and per-GPU MiB of a sim spec.
func ParseSimSpec(spec string) (count int, sizeMiB uint64, err error) {
	if spec == "sim" {
		spec = DefaultSimSpec
	}
	rest, ok := strings.CutPrefix(spec, "sim:")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a sim spec: use sim, sim:N or sim:NxSIZE (e.g. sim:8x80GB)", spec)
	}
	n, sz, hasSize := strings.Cut(rest, "x")
	count, err = strconv.Atoi(n)
	if err != nil || count < 1 || count > 4096 {
		return 0, 0, fmt.Errorf("sim GPU count %q must be a number from 1 to 4096", n)
	}
	sizeMiB = 65536 // a 64 GB GPU: one unit
	if hasSize {
		if sizeMiB, err = parseSize(sz); err != nil {
			return 0, 0, err
		}
	}
	return count, sizeMiB, nil
}

// parseSize reads "80GB" (GiB, as GPU vendors mean it) or "81920MiB" into MiB.
func parseSize(s string) (uint64, error) {
	num, mult := s, uint64(0)
	switch {
	case strings.HasSuffix(strings.ToUpper(s), "MIB"):
		num, mult = s[:len(s)-3], 1
	case strings.HasSuffix(strings.ToUpper(s), "GB"):
		num, mult = s[:len(s)-2], 1024
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if mult == 0 || err != nil || v == 0 {
		return 0, fmt.Errorf("sim GPU size %q must look like 80GB or 81920MiB", s)
	}
	return v * mult, nil
}

func (p *simProbe) Name() string { return "sim" }

func (p *simProbe) GPUs() []GPU { return append([]GPU(nil), p.gpus...) }

// Assign records which GPUs each job process runs on.
func (p *simProbe) Assign(pidGPUs map[int][]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.assigned = pidGPUs
	p.lastProcs, p.lastMeasure = nil, false // a new assignment is read afresh
}

// Processes reports each assigned process's resident memory, shared evenly
// among its GPUs.
// The sampler asks for them right after Sample: that sample's are reused.
func (p *simProbe) Processes(ctx context.Context) ([]Process, error) {
	p.mu.Lock()
	if time.Since(p.lastAt) < reuseWithin && p.lastProcs != nil {
		procs := append([]Process(nil), p.lastProcs...)
		p.mu.Unlock()
		return procs, nil
	}
	p.mu.Unlock()
	procs, _, _ := p.read()
	return procs, nil
}

// reuseWithin is how recent a sample's processes are reused by Processes.
const reuseWithin = 50 * time.Millisecond

// Sample reports per GPU the memory of its processes and their CPU use
// since the last sample, as a percentage capped at 100.
func (p *simProbe) Sample(ctx context.Context) ([]Reading, error) {
	procs, busy, jobMiB := p.read()
	out := make([]Reading, len(p.gpus))
	for i, g := range p.gpus {
		out[i] = Reading{Index: g.Index, Utilization: min(100, busy[g.Index])}
	}
	for _, pr := range procs {
		if _, whole := jobMiB[pr.GPU]; !whole && pr.GPU >= 0 && pr.GPU < len(out) {
			out[pr.GPU].MemoryUsedMiB += pr.MemoryMiB
		}
	}
	for g, mib := range jobMiB {
		if g >= 0 && g < len(out) {
			out[g].MemoryUsedMiB = mib
		}
	}
	return out, nil
}

// read gathers the assigned processes' memory per GPU and CPU percentages,
// the latter from a job's meter where it keeps CPU time, and the memory of
// GPUs whose job's meter keeps it (jobMiB).
func (p *simProbe) read() (procs []Process, busy map[int]int, jobMiB map[int]uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	elapsed := now.Sub(p.lastAt).Seconds()
	var clockUsec uint64
	clockOK := false
	if p.clock != nil {
		clockUsec, clockOK = p.clock() // before the reads: what runs meanwhile shows next time
	}
	if clockOK && p.lastMeasure && clockUsec == p.clockUsec {
		// Nothing of the jobs ran: no CPU used, memory and processes as last read.
		p.lastAt = now
		return append([]Process(nil), p.lastProcs...), map[int]int{}, maps.Clone(p.lastJobMiB)
	}
	ticks := map[int]uint64{}
	busy = map[int]int{}
	jobMiB = map[int]uint64{}
	metered := map[int]bool{} // GPUs whose utilisation a job's meter gives
	jobUsec := map[uint64]uint64{}
	for _, j := range p.jobs {
		if j.Meter == nil || len(j.GPUs) == 0 {
			continue
		}
		if b, ok := j.Meter.MemoryBytes(); ok {
			for _, g := range j.GPUs {
				jobMiB[g] += b / (1 << 20) / uint64(len(j.GPUs))
			}
		}
		usec, ok := j.Meter.CPUUsec()
		if !ok {
			continue
		}
		jobUsec[j.ID] = usec
		for _, g := range j.GPUs {
			metered[g] = true
		}
		if last, ok := p.jobUsec[j.ID]; ok && elapsed > 0 && usec >= last {
			pct := int(float64(usec-last) / 1e6 / elapsed * 100)
			for _, g := range j.GPUs {
				busy[g] += pct
			}
		}
	}
	p.jobUsec = jobUsec
	for pid, gpus := range p.assigned {
		info, err := p.proc.Read(pid)
		if err != nil || len(gpus) == 0 {
			continue
		}
		ticks[pid] = info.CPUTicks
		mib := info.RSSPages * uint64(os.Getpagesize()) / (1 << 20) / uint64(len(gpus))
		for _, g := range gpus {
			procs = append(procs, Process{PID: pid, GPU: g, MemoryMiB: mib})
		}
		if last, ok := p.ticks[pid]; ok && elapsed > 0 && info.CPUTicks >= last {
			pct := int(float64(info.CPUTicks-last) / clockTicks / elapsed * 100)
			for _, g := range gpus {
				if !metered[g] {
					busy[g] += pct
				}
			}
		}
	}
	p.ticks, p.lastAt = ticks, now
	sort.Slice(procs, func(i, j int) bool {
		if procs[i].PID != procs[j].PID {
			return procs[i].PID < procs[j].PID
		}
		return procs[i].GPU < procs[j].GPU
	})
	p.lastProcs = procs
	if p.lastProcs == nil {
		p.lastProcs = []Process{}
	}
	p.clockUsec, p.lastJobMiB, p.lastMeasure = clockUsec, maps.Clone(jobMiB), clockOK
	return procs, busy, jobMiB
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

func (p *simProbe) Close() error { return nil }

// simUUID names simulated GPU i of node, as unique as a real GPU's UUID.
func simUUID(node string, i int) string {
	if node == "" {
		return fmt.Sprintf("SIM-%08d", i)
	}
	return fmt.Sprintf("SIM-%s-%08d", node, i)
}
