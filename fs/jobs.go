package fs

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// attach is a write to procs: the pid joins the device's job, starting one
// (and binding GPUs) when none runs.
func (d *deviceDir) attach(ctx context.Context, command string) error {
	pid, err := strconv.Atoi(command)
	if err != nil || pid <= 0 || command[0] == '0' || command[0] == '+' {
		return &store.Error{Kind: store.KindInvalid, Msg: strconv.Quote(command) + " is not a pid: write a process id such as $$."}
	}
	info, err := d.t.Procs.Read(pid)
	if errors.Is(err, gpu.ErrNoProcess) || err == nil && (info.State == 'Z' || info.State == 'X') {
		return &store.Error{Kind: store.KindNoProcess, Msg: "No process " + command + " is running."}
	}
	if err != nil {
		return err
	}
	if uid := callerUID(ctx); uid != 0 && d.t.Procs.Owner(pid) != uid {
		return &errnoError{syscall.EPERM, "Process " + command + " belongs to another user: attach your own processes."}
	}
	job, err := d.t.Registry.Attach(d.token, d.id, store.Proc{PID: pid, Start: info.Start})
	if err != nil {
		return err
	}
	d.t.Log.Info("process attached", "token", d.token, "device", d.id, "job", job.ID, "pid", pid, "gpus", len(job.GPUs))
	d.t.Sampler.Kick()
	return nil
}

// reset is a write to reset: "1" stops the job and releases its GPUs.
func (d *deviceDir) reset(ctx context.Context, command string) error {
	if command != "1" {
		return &store.Error{Kind: store.KindInvalid, Msg: "Write 1 to reset to stop the device's job."}
	}
	job, running, err := d.t.Registry.JobOf(d.token, d.id)
	if err != nil {
		return err
	}
	if !running {
		return &store.Error{Kind: store.KindNoProcess, Msg: "Device " + formatUint(d.id) + " is not running a job."}
	}
	d.t.Procs.Terminate(ctx, job.Procs, d.t.ResetGrace)
	err = d.t.Registry.EndJob(job.ID)
	if store.KindOf(err) == store.KindNoProcess {
		err = nil // the reaper saw it end first
	}
	if err == nil {
		d.t.Log.Info("job reset; GPUs released", "token", d.token, "device", d.id, "job", job.ID)
	}
	return err
}

func (d *deviceDir) renderProcs(ctx context.Context) ([]byte, error) {
	job, _, err := d.t.Registry.JobOf(d.token, d.id)
	var b bytes.Buffer
	for _, p := range job.Procs {
		b.WriteString(strconv.Itoa(p.PID) + "\n")
	}
	return b.Bytes(), err
}

// boundGPUs returns the pool entries bound to the device's job.
func (d *deviceDir) boundGPUs() ([]store.PoolEntry, error) {
	job, running, err := d.t.Registry.JobOf(d.token, d.id)
	if err != nil || !running {
		return nil, err
	}
	pool, err := d.t.Registry.Pool()
	var bound []store.PoolEntry
	for _, g := range pool {
		if g.Job == job.ID {
			bound = append(bound, g)
		}
	}
	return bound, err
}

func (d *deviceDir) renderGPUs(ctx context.Context) ([]byte, error) {
	bound, err := d.boundGPUs()
	var b bytes.Buffer
	for _, g := range bound {
		b.WriteString(strconv.Itoa(g.Index) + "\t" + g.UUID + "\t" + g.Name + "\n")
	}
	return b.Bytes(), err
}

// renderEnv gives the variables a program needs to see the bound GPUs:
// this node's by index, and, when the job spans nodes, the host list a
// multi-node launcher needs.
func (d *deviceDir) renderEnv(ctx context.Context) ([]byte, error) {
	bound, err := d.boundGPUs()
	var idx, hosts []string
	for _, g := range bound {
		if g.Node == d.t.Registry.Node() {
			idx = append(idx, strconv.Itoa(g.Index))
		}
		if !slices.Contains(hosts, g.Node) {
			hosts = append(hosts, g.Node)
		}
	}
	visible := strings.Join(idx, ",")
	env := "CUDA_VISIBLE_DEVICES=" + visible + "\nHIP_VISIBLE_DEVICES=" + visible + "\nMOREH_DEVICE=" + formatUint(d.id) + "\n"
	if len(hosts) > 1 {
		env += "MOREH_HOSTS=" + strings.Join(hosts, ",") + "\n"
	}
	return []byte(env), err
}

// renderPool is /moreh/pool: one line per GPU,
// "<index> <units> <device|-> <memory_used_mib> <memory_total_mib> <utilization|-> <name>".
func (t *tree) renderPool(ctx context.Context) ([]byte, error) {
	pool, err := t.Registry.Pool()
	if err != nil {
		return nil, err
	}
	snap := t.Sampler.Latest()
	var b bytes.Buffer
	for _, g := range pool {
		device, util := "-", "-"
		r, sampled := snap.Readings[g.Index]
		if g.Job != 0 {
			device = formatUint(g.Device)
		}
		if sampled && r.Err == nil {
			util = strconv.Itoa(r.Utilization)
		}
		b.WriteString(strings.Join([]string{strconv.Itoa(g.Index), strconv.Itoa(g.Units), device,
			formatUint(r.MemoryUsedMiB), formatUint(g.MemoryMiB), util, g.Name}, " ") + "\n")
	}
	return b.Bytes(), nil
}
