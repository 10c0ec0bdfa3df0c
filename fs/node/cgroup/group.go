package cgroup

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Group is the cgroup of one job.
type Group struct {
	id   uint64
	path string

	mu   sync.Mutex // one SetDevices at a time from this handle
	kept keptFiles  // the files read every sample
}

// ID is the job's id.
func (g *Group) ID() uint64 { return g.id }

// Path is the job's cgroup directory.
func (g *Group) Path() string { return g.path }

// AddProc moves pid, and every process it forks from now on, into the job.
// A pid in another job's cgroup leaves that one: a process is in one cgroup.
func (g *Group) AddProc(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("add pid %d to job %d: not a process id", pid, g.id)
	}
	if err := os.WriteFile(g.file("cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("add pid %d to job %d: %w", pid, g.id, err)
	}
	return nil
}

// Procs lists the job's processes (thread-group leaders), in the kernel's order.
func (g *Group) Procs() ([]int, error) {
	b, err := os.ReadFile(g.file("cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("list the processes of job %d: %w", g.id, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("list the processes of job %d: %q in cgroup.procs", g.id, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Populated says whether any process of the job lives (cgroup.events "populated").
func (g *Group) Populated() (bool, error) {
	v, ok, err := readKeyed(g.file("cgroup.events"), "populated")
	if err != nil {
		return false, fmt.Errorf("read whether job %d has processes: %w", g.id, err)
	}
	if !ok {
		return false, fmt.Errorf("read whether job %d has processes: no populated line in cgroup.events", g.id)
	}
	return v != 0, nil
}

// MemoryCurrent is the job's memory use in bytes; ok is false without the memory controller.
func (g *Group) MemoryCurrent() (bytes uint64, ok bool, err error) {
	return g.readSingle("memory.current")
}

// MemoryPeak is the job's highest memory use in bytes (kernel 5.19+); ok is false without it.
func (g *Group) MemoryPeak() (bytes uint64, ok bool, err error) {
	return g.readSingle("memory.peak")
}

// CPUUsec is the CPU time the job's processes used, in microseconds
// (cpu.stat's usage_usec, there with or without the cpu controller).
func (g *Group) CPUUsec() (uint64, error) {
	v, ok, err := g.kept.readKeyed(g.file("cpu.stat"), "usage_usec")
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of job %d: %w", g.id, err)
	}
	if !ok {
		return 0, fmt.Errorf("read the CPU time of job %d: no usage_usec in cpu.stat", g.id)
	}
	return v, nil
}

// Remove deletes the job's cgroup, and its device program with it; it fails
// with EBUSY while a process lives in it.
func (g *Group) Remove() error {
	g.kept.close()
	if err := os.Remove(g.path); err != nil {
		return fmt.Errorf("remove the cgroup of job %d: %w", g.id, err)
	}
	return nil
}

func (g *Group) file(name string) string { return filepath.Join(g.path, name) }

func (g *Group) readSingle(name string) (uint64, bool, error) {
	var v uint64
	err := g.kept.parse(g.file(name), func(b []byte) (err error) {
		v, err = strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
		return err
	})
	if isNotExist(err) {
		if _, serr := os.Stat(g.path); serr != nil {
			return 0, false, fmt.Errorf("read %s of job %d: %w", name, g.id, serr)
		}
		return 0, false, nil // the controller is off for this job
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s of job %d: %w", name, g.id, err)
	}
	return v, true, nil
}

// readKeyed reads one "key value" line of a flat-keyed cgroup file.
func readKeyed(path, key string) (v uint64, ok bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	v, ok, err = parseKeyed(b, key)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", path, err)
	}
	return v, ok, nil
}

// parseKeyed finds one "key value" line of a flat-keyed cgroup file's content.
func parseKeyed(b []byte, key string) (v uint64, ok bool, err error) {
	for line := range bytes.Lines(b) {
		k, val, found := bytes.Cut(line, []byte{' '})
		if !found || string(k) != key {
			continue
		}
		val = bytes.TrimSpace(val)
		v, err := strconv.ParseUint(string(val), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s %q: %w", key, val, err)
		}
		return v, true, nil
	}
	return 0, false, nil
}

// readKeyed is parseKeyed of the kept file at path.
func (k *keptFiles) readKeyed(path, key string) (v uint64, ok bool, err error) {
	err = k.parse(path, func(b []byte) error {
		v, ok, err = parseKeyed(b, key)
		return err
	})
	return v, ok, err
}
