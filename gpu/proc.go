package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcInfo is what /proc tells of one process.
type ProcInfo struct {
	PID      int
	PPID     int
	State    byte   // R, S, Z, …
	Flags    uint64 // the kernel's PF_* flags (PF_KTHREAD 0x00200000: a kernel thread)
	Start    uint64 // clock ticks after boot: with the pid, the process's identity
	Comm     string
	RSSPages uint64
	CPUTicks uint64 // user + system time
}

// ProcID names one process for as long as it lives: a later process that
// reuses the pid has another start time.
type ProcID struct {
	PID   int
	Start uint64 // clock ticks after boot, as /proc/<pid>/stat says
}

// ErrNoProcess is returned for a pid that does not exist.
var ErrNoProcess = errors.New("no such process")

// ProcFS reads processes from a procfs mount, normally /proc.
type ProcFS struct {
	Root string
}

// Read returns the process pid.
func (p ProcFS) Read(pid int) (ProcInfo, error) {
	stat, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "stat"))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return ProcInfo{}, ErrNoProcess
	}
	if err != nil {
		return ProcInfo{}, err
	}
	info, err := parseStat(stat)
	if err != nil {
		return ProcInfo{}, fmt.Errorf("%s/%d/stat: %w", p.Root, pid, err)
	}
	return info, nil
}

// parseStat reads /proc/<pid>/stat. The command name sits in parentheses
// and may itself hold spaces and parentheses, so fields count from the last ')'.
func parseStat(b []byte) (ProcInfo, error) {
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return ProcInfo{}, errors.New("malformed stat")
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 22 {
		return ProcInfo{}, errors.New("short stat")
	}
	var info ProcInfo
	var err error
	num := func(i int) uint64 {
		v, e := strconv.ParseUint(f[i], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("field %d: %w", i+3, e)
		}
		return v
	}
	pid, e := strconv.Atoi(strings.TrimSpace(s[:open]))
	if e != nil {
		return ProcInfo{}, e
	}
	info = ProcInfo{
		PID: pid, Comm: s[open+1 : close], State: f[0][0], PPID: int(num(1)), Flags: num(6),
		CPUTicks: num(11) + num(12), Start: num(19), RSSPages: num(21),
	}
	return info, err
}

// Alive reports whether p runs: same pid and start, and not a zombie.
func (p ProcFS) Alive(proc ProcID) bool {
	info, err := p.Read(proc.PID)
	return err == nil && info.Start == proc.Start && info.State != 'Z' && info.State != 'X'
}

// Descendants lists the live processes that procs started, at any depth.
func (p ProcFS) Descendants(procs []ProcID) []ProcID {
	if len(procs) == 0 {
		return nil
	}
	all, err := p.All()
	if err != nil {
		return nil
	}
	children := map[int][]ProcInfo{}
	for _, info := range all {
		children[info.PPID] = append(children[info.PPID], info)
	}
	var out []ProcID
	queue := make([]int, 0, len(procs))
	for _, proc := range procs {
		queue = append(queue, proc.PID)
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if c.State == 'Z' || c.State == 'X' {
				continue
			}
			child := ProcID{PID: c.PID, Start: c.Start}
			if !slices.Contains(out, child) {
				out = append(out, child)
				queue = append(queue, c.PID)
			}
		}
	}
	return out
}

// All reads every process.
func (p ProcFS) All() ([]ProcInfo, error) {
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return nil, err
	}
	var out []ProcInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if info, err := p.Read(pid); err == nil {
			out = append(out, info)
		}
	}
	return out, nil
}

// Owner is the uid a process runs as, or -1 once it is gone.
func (p ProcFS) Owner(pid int) int {
	fi, err := os.Stat(filepath.Join(p.Root, strconv.Itoa(pid)))
	if err != nil {
		return -1
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// Comm is a process's name, or "?" once it is gone.
func (p ProcFS) Comm(pid int) string {
	if info, err := p.Read(pid); err == nil {
		return info.Comm
	}
	return "?"
}

// Terminate stops procs: SIGTERM, then SIGKILL to those alive after grace.
// It returns once none runs, or ctx ends.
func (p ProcFS) Terminate(ctx context.Context, procs []ProcID, grace time.Duration) {
	signal := func(sig syscall.Signal) (left int) {
		for _, proc := range procs {
			if p.Alive(proc) {
				syscall.Kill(proc.PID, sig)
				left++
			}
		}
		return left
	}
	if signal(syscall.SIGTERM) == 0 {
		return
	}
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	killed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !killed && time.Now().After(deadline) {
			signal(syscall.SIGKILL)
			killed = true
		}
		left := 0
		for _, proc := range procs {
			if p.Alive(proc) {
				left++
			}
		}
		if left == 0 {
			return
		}
	}
}
