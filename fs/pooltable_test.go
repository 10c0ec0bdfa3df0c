package fs

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// TestPoolTable renders the pool table (moreh-smi -p) against goldens: the
// columns widen for long values, a GPU of another node shows no figures,
// and an empty pool says so.
func TestPoolTable(t *testing.T) {
	for _, c := range []struct {
		name string
		rows []PoolRow
	}{
		{"pool_wide.golden", []PoolRow{
			{Node: "node-a", Index: 0, Name: "NVIDIA H200  NVL", Units: 3, Device: 2031, MemoryUsedMiB: 1234567890, MemoryMiB: 196608, Utilization: 100, Sampled: true},
			{Node: "node-a", Index: 11, Name: "AMD Instinct MI300X", Units: 1, MemoryMiB: 65536, Utilization: NoUtilization, Sampled: true},
			{Node: "a-much-longer-node", Index: 0, Name: "NVIDIA H200", Units: 2, Device: 2026, MemoryMiB: 143771, Utilization: NoUtilization},
		}},
		{"pool_empty.golden", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkGolden(t, c.name, string(appendPoolTable(nil, c.rows)))
		})
	}
}

// TestFitsAndPoolTableMounted: devices/<id>/fits says whether an attach
// would bind the device's GPUs now, by the registry's rule, and pool.table
// shows the binding.
func TestFitsAndPoolTableMounted(t *testing.T) {
	tt := mountTree(t, store.Options{}) // the pool: 4 simulated 64 GB GPUs, 4 units
	large := mkdevice(t, tt, "Large.256GB")
	medium := mkdevice(t, tt, "Medium.128GB")
	huge := mkdevice(t, tt, "24xLarge.12288GB")
	fits := func(id string) string { return readFile(t, tt.path("devices", id, "fits")) }
	for id, want := range map[string]string{large: "yes\n", medium: "yes\n", huge: "no\n"} {
		if got := fits(id); got != want {
			t.Errorf("fits of %s = %q before any job, want %q", id, got, want)
		}
	}
	pid, stop := startProc(t, 1)
	if err := writeFile(tt.path("devices", medium, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatalf("attach: %v", err)
	}
	for id, want := range map[string]string{large: "no\n", medium: "yes\n", huge: "no\n"} {
		if got := fits(id); got != want {
			t.Errorf("fits of %s = %q while %s runs, want %q", id, got, medium, want)
		}
	}
	table := readFile(t, tt.path("pool.table"))
	if n := strings.Count(table, "|    "+medium+"  |"); n != 2 || strings.Count(table, "\n") != 8 {
		t.Errorf("pool.table binds %d GPUs to %s, want 2:\n%s", n, medium, table)
	}
	stop()
	morehdtest.Eventually(t, 5*time.Second, "the large device fits once the job ended", func() bool {
		return fits(large) == "yes\n"
	})
}
