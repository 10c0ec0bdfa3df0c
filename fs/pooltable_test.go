package fs

import "testing"

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
