package cgroup

import "fmt"

// Supported says, in one sentence when not, why jobs cannot be cgroups here:
// no cgroup v2 hierarchy, not writable, or no BPF device programs.
func Supported() error {
	root, err := FindRoot()
	if err != nil {
		return err
	}
	if err := checkCgroup2(root); err != nil {
		return err
	}
	prog, err := denyProgram(nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoDevicePrograms, err)
	}
	return prog.Close()
}
