package gpu

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DeviceNode is the character device through which a process uses one GPU;
// a job's cgroup is allowed or denied it by its numbers.
type DeviceNode struct {
	Path         string // "/dev/nvidia3", "/dev/dri/renderD128"
	Major, Minor uint32
}

// Known says whether the backend found the node.
func (n DeviceNode) Known() bool { return n.Path != "" }

// The kernel's fixed majors of the GPU nodes.
const (
	nvidiaMajor = 195 // /dev/nvidia<N> and /dev/nvidiactl
	drmMajor    = 226 // /dev/dri/card<N> and renderD<N>
)

// Shared control nodes every job of a backend needs, whichever GPUs it holds:
// they are never denied. Information for the caller that builds device lists.
var (
	NVIDIAControlNodes = []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"}
	AMDControlNodes    = []string{"/dev/kfd"}
)

// ControlNodes is the shared control nodes of p's backend (nil for sim and none).
func ControlNodes(p Probe) []string {
	switch p.Name() {
	case "nvml":
		return append([]string(nil), NVIDIAControlNodes...)
	case "amdgpu":
		return append([]string(nil), AMDControlNodes...)
	}
	return nil
}

// statNode reads a character device's numbers from the file system.
func statNode(path string) (DeviceNode, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return DeviceNode{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return DeviceNode{}, fmt.Errorf("%s is not a character device", path)
	}
	return DeviceNode{Path: path, Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev)}, nil
}
