package gpu

import (
	"context"
	"fmt"
	"strings"
)

// The hardware backends Open tries; tests replace them to drive auto's order.
var (
	openNVML   = OpenNVML
	openAMDGPU = func() (Probe, error) { return NewAMDGPU("/sys") }
)

// Open returns the backend named by spec (the --gpus flag) and a one-line note
// for the log saying which backend answers and why the others did not. node
// names the simulated GPUs, which need UUIDs unique across a cluster as
// real GPUs have; opts configure the simulated pool if it answers.
func Open(spec, node string, opts ...SimOption) (p Probe, note string, err error) {
	switch {
	case spec == "auto" || spec == "":
		return openAuto(node, opts)
	case spec == "nvml":
		return openOne(openNVML)
	case spec == "amdgpu":
		return openOne(openAMDGPU)
	case spec == "none":
		return noneProbe{}, "GPU probe disabled: the pool is empty", nil
	case spec == "sim" || strings.HasPrefix(spec, "sim:"):
		p, err = NewSimOn(spec, node, opts...)
		return p, "using the simulated pool " + spec, err
	}
	return nil, "", fmt.Errorf("unknown --gpus %q: use auto, nvml, amdgpu, sim[:N[xSIZE]] or none", spec)
}

// openOne is an explicit choice: its error is the answer, with no fallback.
func openOne(open func() (Probe, error)) (Probe, string, error) {
	p, err := open()
	if err != nil {
		return nil, "", err
	}
	return p, answered(p), nil
}

// openAuto tries the hardware backends in order, then the simulated pool.
func openAuto(node string, opts []SimOption) (Probe, string, error) {
	var why []string
	for _, open := range []func() (Probe, error){openNVML, openAMDGPU} {
		p, err := open()
		if err == nil {
			return p, strings.Join(append(why, answered(p)), "; "), nil
		}
		why = append(why, oneLine(err.Error()))
	}
	p, err := NewSimOn(DefaultSimSpec, node, opts...)
	return p, strings.Join(append(why, "using the simulated pool "+DefaultSimSpec), "; "), err
}

func answered(p Probe) string {
	return fmt.Sprintf("using %s: %d GPUs", p.Name(), len(p.GPUs()))
}

// oneLine keeps the note a single log line whatever a backend's error holds.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// noneProbe is the empty pool of --gpus none.
type noneProbe struct{}

func (noneProbe) Name() string                                 { return "none" }
func (noneProbe) GPUs() []GPU                                  { return nil }
func (noneProbe) Sample(context.Context) ([]Reading, error)    { return nil, nil }
func (noneProbe) Processes(context.Context) ([]Process, error) { return nil, nil }
func (noneProbe) Close() error                                 { return nil }
