package fs

import (
	"bytes"
	"context"
	"strconv"
	"strings"
)

// attach is a write to procs: the runtime checks the pid against the caller
// and joins it to the device's job.
func (d *deviceDir) attach(ctx context.Context, command string) error {
	_, err := d.t.Node.Attach(ctx, caller(ctx), d.token, d.id, command)
	return err
}

// reset is a write to reset: "1" stops the job and releases its GPUs.
func (d *deviceDir) reset(ctx context.Context, command string) error {
	return d.t.Node.Reset(ctx, caller(ctx), d.token, d.id, command)
}

func (d *deviceDir) renderProcs(ctx context.Context) ([]byte, error) {
	pids, err := d.t.Node.Procs(ctx, d.token, d.id)
	var b bytes.Buffer
	for _, pid := range pids {
		b.WriteString(strconv.Itoa(pid) + "\n")
	}
	return b.Bytes(), err
}

func (d *deviceDir) renderGPUs(ctx context.Context) ([]byte, error) {
	bound, err := d.t.Node.DeviceGPUs(ctx, d.token, d.id)
	var b bytes.Buffer
	for _, g := range bound {
		b.WriteString(strconv.Itoa(g.Index) + "\t" + g.UUID + "\t" + g.Name + "\n")
	}
	return b.Bytes(), err
}

func (d *deviceDir) renderEnv(ctx context.Context) ([]byte, error) {
	env, err := d.t.Node.DeviceEnv(ctx, d.token, d.id)
	if err != nil {
		return nil, err
	}
	return []byte(strings.Join(env, "\n") + "\n"), nil
}

// renderPool is /moreh/pool: one line per GPU, "<index> <units> <device|*|->
// <memory_used_mib> <memory_total_mib> <utilization|-> <node> <name>"; the
// figures of another node's GPUs are that node's to show ("-").
func (t *tree) renderPool(ctx context.Context) ([]byte, error) {
	pool, err := t.Node.PoolFor(ctx, callerUID(ctx))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, g := range pool {
		device, used, util := "-", "-", "-"
		switch {
		case g.Hidden:
			device = "*" // bound, to a device of a token the caller may not see
		case g.Job != 0:
			device = formatUint(g.Device)
		}
		if g.Sampled {
			used, util = formatUint(g.Reading.MemoryUsedMiB), strconv.Itoa(g.Reading.Utilization)
		}
		b.WriteString(strings.Join([]string{strconv.Itoa(g.Index), strconv.Itoa(g.Units), device,
			used, formatUint(g.MemoryMiB), util, g.Node, g.Name}, " ") + "\n")
	}
	return b.Bytes(), nil
}
