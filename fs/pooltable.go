package fs

import (
	"context"
	"strconv"

	"github.com/moreh-io/moreh/store"
)

// The pool table (/moreh/pool.table, `moreh-smi -p`): one row per physical
// GPU of the pool, in the device table's style (centred headers, columns as
// wide as their widest cell). /moreh/pool stays the machine-readable lines.

// PoolRow is one line of the pool table.
type PoolRow struct {
	Node          string
	Index         int
	Name          string
	Units         int
	Device        uint64 // 0 when the GPU is free
	MemoryUsedMiB uint64
	MemoryMiB     uint64
	Utilization   int  // percent, or NoUtilization when not sampled
	Sampled       bool // false for a GPU that this node cannot read (another node's)
	Hidden        bool // bound to a token the caller may not see: "*" for its device
}

const noGPUs = "No GPUs in the pool."

var poolColumns = []column{
	{header: "Node"},
	{header: "GPU", right: true},
	{header: "Name"},
	{header: "Units", right: true},
	{header: "Device", right: true},
	{header: "Memory Usage", right: true},
	{header: "Total Memory", right: true},
	{header: "Utilization"},
}

// appendPoolTable appends the pool table of rows to b.
func appendPoolTable(b []byte, rows []PoolRow) []byte {
	cells := make([][]string, len(rows))
	for i, r := range rows {
		device, used, util := "-", "-", "-"
		if r.Hidden {
			device = "*" // bound, to a token the caller may not see
		} else if r.Device != 0 {
			device = formatUint(r.Device)
		}
		if r.Sampled {
			used = formatUint(r.MemoryUsedMiB) + " MiB"
			util = utilization(r.Utilization)
		}
		cells[i] = []string{r.Node, strconv.Itoa(r.Index), r.Name, strconv.Itoa(r.Units), device,
			used, formatUint(r.MemoryMiB) + " MiB", util}
	}
	return appendListing(b, poolColumns, cells, noGPUs)
}

// poolRows are the runtime's pool view as rows: another node's GPUs show
// no figures of this one's.
func (t *tree) poolRows(ctx context.Context) ([]PoolRow, error) {
	pool, err := t.Node.PoolFor(ctx, callerUID(ctx))
	if err != nil {
		return nil, err
	}
	rows := make([]PoolRow, 0, len(pool))
	for _, g := range pool {
		r := PoolRow{Node: g.Node, Index: g.Index, Name: g.Name, Units: g.Units, MemoryMiB: g.MemoryMiB,
			Utilization: NoUtilization, Sampled: g.Sampled}
		r.Hidden = g.Hidden
		if g.Job != 0 {
			r.Device = g.Device
		}
		if g.Sampled {
			r.MemoryUsedMiB, r.Utilization = g.Reading.MemoryUsedMiB, g.Reading.Utilization
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func (t *tree) renderPoolTable(ctx context.Context) ([]byte, error) {
	rows, err := t.poolRows(ctx)
	if err != nil {
		return nil, err
	}
	return appendPoolTable(nil, rows), nil
}

// renderFits is devices/<id>/fits: "yes" when an attach would bind the
// device's GPUs now (or its job already runs), "no" while the pool has not
// enough free GPUs for its model; the registry decides, by Attach's rule.
func (d *deviceDir) renderFits(ctx context.Context) ([]byte, error) {
	err := d.t.Registry.Fits(ctx, d.token, d.id)
	switch store.KindOf(err) {
	case store.KindAgain, store.KindNoSpace:
		return []byte("no\n"), nil
	}
	if err != nil {
		return nil, err
	}
	return []byte("yes\n"), nil
}
