package gpu

import (
	"fmt"
	"strings"
)

// Open returns the backend named by spec: "auto", "none" or a sim spec.
// The hardware backends (nvml, amdgpu) arrive with the jobs issue; until then
// auto always answers with the simulated pool.
func Open(spec string) (p Probe, note string, err error) {
	switch {
	case spec == "auto" || spec == "":
		p, err = NewSim(DefaultSimSpec)
		return p, "no GPU backend answered; using the simulated pool " + DefaultSimSpec, err
	case spec == "none":
		return &simProbe{}, "GPU probe disabled: the pool is empty", nil
	case spec == "sim" || strings.HasPrefix(spec, "sim:"):
		p, err = NewSim(spec)
		return p, "using the simulated pool " + spec, err
	}
	return nil, "", fmt.Errorf("unknown --gpus %q: use auto, sim[:N[xSIZE]] or none", spec)
}
