package gpu

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// DefaultSimSpec is a pool big enough for the largest model (192 units).
const DefaultSimSpec = "sim:192x64GB"

// simProbe is a simulated pool for machines without GPUs.
type simProbe struct {
	gpus []GPU
}

var _ Probe = (*simProbe)(nil)

// NewSim parses "sim", "sim:N" or "sim:NxSIZE" (SIZE in GB or MiB, e.g. 80GB,
// 81920MiB) and returns a pool of N identical simulated GPUs.
func NewSim(spec string) (Probe, error) {
	count, size, err := ParseSimSpec(spec)
	if err != nil {
		return nil, err
	}
	p := &simProbe{}
	for i := 0; i < count; i++ {
		p.gpus = append(p.gpus, GPU{
			Index:          i,
			UUID:           fmt.Sprintf("SIM-%08d", i),
			Name:           "Simulated GPU",
			MemoryTotalMiB: size,
		})
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

// Sample reports idle GPUs: nothing runs on a simulated pool yet.
func (p *simProbe) Sample(ctx context.Context) ([]Reading, error) {
	out := make([]Reading, len(p.gpus))
	for i, g := range p.gpus {
		out[i] = Reading{Index: g.Index}
	}
	return out, nil
}

func (p *simProbe) Processes(ctx context.Context) ([]Process, error) { return nil, nil }

func (p *simProbe) Close() error { return nil }
