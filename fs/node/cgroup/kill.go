package cgroup

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Signal sends sig to every process of the job. A process that exits meanwhile
// is no error; the first other failure is returned after trying them all.
func (g *Group) Signal(sig syscall.Signal) error {
	pids, err := g.Procs()
	if err != nil {
		return err
	}
	var first error
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) && first == nil {
			first = fmt.Errorf("signal %v to pid %d of job %d: %w", sig, pid, g.id, err)
		}
	}
	return first
}

// Kill sends SIGKILL to every process of the job, including those forked while
// it runs. The processes exit asynchronously: the Watcher says when the job is empty.
// A killed job's cgroup is for removing, not reusing: on some kernels (6.18
// here) a process later cloned into it (CLONE_INTO_CGROUP) is killed at birth.
func (g *Group) Kill() error {
	err := os.WriteFile(g.file("cgroup.kill"), []byte("1"), 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill job %d: %w", g.id, err)
	}
	return g.killEach() // before 5.14: no cgroup.kill
}

// killEach is Kill without cgroup.kill: freeze the job where the freezer is
// there, so nothing forks between the listing and the signals, and SIGKILL
// each process until a listing shows no process not yet signalled.
func (g *Group) killEach() error {
	frozen := os.WriteFile(g.file("cgroup.freeze"), []byte("1"), 0) == nil
	if frozen {
		defer os.WriteFile(g.file("cgroup.freeze"), []byte("0"), 0)
	}
	signalled := map[int]bool{}
	for {
		pids, err := g.Procs()
		if err != nil {
			return fmt.Errorf("kill job %d: %w", g.id, err)
		}
		fresh := 0
		for _, pid := range pids {
			if signalled[pid] {
				continue // dying: SIGKILL is pending or it is exiting
			}
			fresh++
			signalled[pid] = true
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill pid %d of job %d: %w", pid, g.id, err)
			}
		}
		if fresh == 0 {
			return nil
		}
	}
}
