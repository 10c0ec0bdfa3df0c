package cgroup

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Device is one device node by number, as mknod(2) and a BPF device program see it.
type Device struct {
	Type  byte // 'c' (character) or 'b' (block)
	Major uint32
	Minor uint32
}

func (d Device) String() string { return fmt.Sprintf("%c %d:%d", d.Type, d.Major, d.Minor) }

// The kernel's struct bpf_cgroup_dev_ctx and its constants (uapi/linux/bpf.h).
const (
	ctxAccessType = 0 // u32: device type in the low 16 bits, access (mknod|read|write) in the high 16
	ctxMajor      = 4
	ctxMinor      = 8

	devcgBlock = 1 // BPF_DEVCG_DEV_BLOCK
	devcgChar  = 2 // BPF_DEVCG_DEV_CHAR
)

// programName marks the device programs this package attaches, so that a
// restarted daemon finds and replaces its own and no one else's.
const programName = "moreh_devices"

// SetDevices makes the job's processes unable to open or mknod the listed
// nodes, for any access, and leaves every other device as it was. A second
// call, from this handle or from a restarted daemon's, replaces the program in
// one step: no moment allows both lists or neither.
//
// The program is attached to the cgroup itself (BPF_PROG_ATTACH, not a
// bpf_link held by a file descriptor), so it outlives the daemon: a job that
// runs on while the daemon is down or restarting stays confined. It goes
// with the cgroup when Remove deletes it.
func (g *Group) SetDevices(deny []Device) error {
	prog, err := denyProgram(deny)
	if err != nil {
		return fmt.Errorf("set the devices of job %d: %w", g.id, err)
	}
	defer prog.Close() // attached, the kernel holds its own reference

	g.mu.Lock()
	defer g.mu.Unlock()
	cg, err := os.Open(g.path)
	if err != nil {
		return fmt.Errorf("set the devices of job %d: %w", g.id, err)
	}
	defer cg.Close()
	old, err := ownProgram(int(cg.Fd()))
	if err != nil {
		return fmt.Errorf("set the devices of job %d: %w", g.id, err)
	}
	opts := link.RawAttachProgramOptions{
		Target:  int(cg.Fd()),
		Program: prog,
		Attach:  ebpf.AttachCGroupDevice,
		Flags:   unix.BPF_F_ALLOW_MULTI, // several programs per cgroup; a parent's still applies
	}
	if old != nil {
		defer old.Close()
		opts.Anchor = link.ReplaceProgram(old)
	}
	err = link.RawAttachProgram(opts)
	if err != nil && old != nil && errors.Is(err, unix.EINVAL) {
		err = addThenDetach(opts, old) // before 5.6: no BPF_F_REPLACE
	}
	if err != nil {
		return fmt.Errorf("attach the device program to job %d: %w", g.id, err)
	}
	return nil
}

// addThenDetach replaces old without BPF_F_REPLACE; in between both programs
// run and a node is allowed only if both allow it: stricter, never looser.
func addThenDetach(opts link.RawAttachProgramOptions, old *ebpf.Program) error {
	opts.Anchor = nil
	if err := link.RawAttachProgram(opts); err != nil {
		return err
	}
	return link.RawDetachProgram(link.RawDetachProgramOptions{
		Target: opts.Target, Program: old, Attach: opts.Attach,
	})
}

// HasDevices says whether the job's cgroup has this package's device program
// (a restarted daemon finds its jobs still confined).
func (g *Group) HasDevices() (bool, error) {
	cg, err := os.Open(g.path)
	if err != nil {
		return false, fmt.Errorf("read the device program of job %d: %w", g.id, err)
	}
	defer cg.Close()
	prog, err := ownProgram(int(cg.Fd()))
	if err != nil {
		return false, fmt.Errorf("read the device program of job %d: %w", g.id, err)
	}
	if prog == nil {
		return false, nil
	}
	return true, prog.Close()
}

// ownProgram is the device program of this package attached to the cgroup
// open at fd, or nil. Link-attached programs are someone else's.
func ownProgram(fd int) (*ebpf.Program, error) {
	res, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		return nil, fmt.Errorf("query the device programs: %w", err)
	}
	for _, ap := range res.Programs {
		if _, viaLink := ap.LinkID(); viaLink {
			continue
		}
		prog, err := ebpf.NewProgramFromID(ap.ID)
		if errors.Is(err, os.ErrNotExist) {
			continue // detached meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("open device program %d: %w", ap.ID, err)
		}
		if info, err := prog.Info(); err == nil && info.Name == programName {
			return prog, nil
		}
		prog.Close()
	}
	return nil, nil
}

// denyProgram loads a BPF_PROG_TYPE_CGROUP_DEVICE program that answers 0
// (EPERM) for the listed nodes and 1 for everything else.
func denyProgram(deny []Device) (*ebpf.Program, error) {
	insns, err := denyInstructions(deny)
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         programName,
		Type:         ebpf.CGroupDevice,
		Instructions: insns,
		License:      "Apache-2.0",
	})
	if err != nil {
		return nil, fmt.Errorf("load the BPF device program: %w", err)
	}
	return prog, nil
}

// denyInstructions compares the node's type, major and minor with each entry
// in turn; a match returns deny, falling off the list returns allow.
func denyInstructions(deny []Device) (asm.Instructions, error) {
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, ctxAccessType, asm.Word),
		asm.And.Imm(asm.R2, 0xffff), // the device type; any access to a denied node is denied
		asm.LoadMem(asm.R3, asm.R1, ctxMajor, asm.Word),
		asm.LoadMem(asm.R4, asm.R1, ctxMinor, asm.Word),
	}
	for i, d := range deny {
		var typ int32
		switch d.Type {
		case 'c':
			typ = devcgChar
		case 'b':
			typ = devcgBlock
		default:
			return nil, fmt.Errorf("device %d: type %q is neither 'c' nor 'b'", i, d.Type)
		}
		if d.Major >= 1<<12 || d.Minor >= 1<<20 {
			return nil, fmt.Errorf("device %v: the kernel's numbers are 12-bit major, 20-bit minor", d)
		}
		next := "next" + strconv.Itoa(i+1)
		if i == len(deny)-1 {
			next = "allow"
		}
		insns = append(insns,
			asm.JNE.Imm(asm.R2, typ, next).WithSymbol("next"+strconv.Itoa(i)),
			asm.JNE.Imm(asm.R3, int32(d.Major), next),
			asm.JNE.Imm(asm.R4, int32(d.Minor), next),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		)
	}
	return append(insns,
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
	), nil
}

// ErrNoDevicePrograms says this kernel will not load a BPF device program:
// jobs can still be cgroups, without device isolation.
var ErrNoDevicePrograms = errors.New("BPF device programs cannot be loaded")
