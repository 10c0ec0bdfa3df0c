//go:build !cgo

package gpu

import "errors"

// OpenNVML needs cgo: go-nvml loads libnvidia-ml.so.1 through dlopen.
func OpenNVML() (Probe, error) {
	return nil, errors.New("nvml: this morehd was built without cgo")
}
