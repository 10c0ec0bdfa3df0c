package fs

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// queryPool is a pool of three GPUs: one of this node's bound to a device
// and busy, one free, and one of another node (no readings here).
func queryPool() []node.GPUStatus {
	gpuOf := func(n string, i int, name, uuid string, mib uint64) store.PoolGPU {
		return store.PoolGPU{UUID: uuid, Node: n, Index: i, Name: name, Units: 2, MemoryMiB: mib}
	}
	return []node.GPUStatus{
		{PoolEntry: store.PoolEntry{PoolGPU: gpuOf("node-a", 0, "NVIDIA H200", "GPU-5f3e2a1c-0000-4000-8000-000000000001", 143771), Job: 7, Token: "default", Device: 2026},
			Reading: gpu.Reading{Index: 0, MemoryUsedMiB: 22240, Utilization: 45}, Sampled: true},
		{PoolEntry: store.PoolEntry{PoolGPU: gpuOf("node-a", 1, "NVIDIA H200", "GPU-5f3e2a1c-0000-4000-8000-000000000002", 143771)},
			Reading: gpu.Reading{Index: 1}, Sampled: true},
		{PoolEntry: store.PoolEntry{PoolGPU: gpuOf("node-b", 0, "AMD Instinct MI300X", "GPU-0c1d", 196592), Job: 9, Device: 2031}},
	}
}

// TestQueryGPU renders --query-gpu files against goldens: nvidia-smi's
// header with units in brackets, values joined by ", ", [N/A] for what
// this node cannot tell, units dropped by nounits but kept in the header.
func TestQueryGPU(t *testing.T) {
	all := strings.Join(GPUFieldNames(), ",")
	for _, c := range []struct{ golden, name string }{
		{"query_gpu_all.golden", all},
		{"query_gpu_nounits.golden", all + ":csv,nounits"},
		{"query_gpu_noheader.golden", "index, memory.used ,utilization.gpu:noheader"},
		{"query_gpu_aliases.golden", "gpu_name,gpu_uuid,index,index:nounits,csv,noheader"},
	} {
		t.Run(c.golden, func(t *testing.T) {
			q, ok := parseGPUQuery(c.name)
			if !ok {
				t.Fatalf("parseGPUQuery(%q) refused it", c.name)
			}
			checkGolden(t, c.golden, string(appendGPUQuery(nil, q, queryPool())))
		})
	}
	q, _ := parseGPUQuery("index")
	if got := appendGPUQuery(nil, q, nil); len(got) != 0 {
		t.Errorf("an empty pool gives %q, want nothing (no header either)", got)
	}
	for _, name := range []string{"", ":csv", "index,foo", "index:xml", "index:csv,foo", "Index", "memory"} {
		if _, ok := parseGPUQuery(name); ok {
			t.Errorf("parseGPUQuery(%q) accepted it", name)
		}
	}
}

// TestQueryGPUMounted: query-gpu/<FIELDS[:FORMAT]> over the mounted pool,
// an unknown field a name that does not exist.
func TestQueryGPUMounted(t *testing.T) {
	tt := mountTree(t, store.Options{}) // 4 simulated 64 GB GPUs
	got := readFile(t, tt.path("query-gpu", "index,memory.total,device:csv,nounits"))
	want := "index, memory.total [MiB], device\n0, 65536, [N/A]\n1, 65536, [N/A]\n2, 65536, [N/A]\n3, 65536, [N/A]\n"
	if got != want {
		t.Errorf("query-gpu = %q, want %q", got, want)
	}
	for _, name := range []string{"index,foo", "index:xml"} {
		if _, err := os.Stat(tt.path("query-gpu", name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat query-gpu/%s: %v, want ENOENT", name, err)
		}
	}
	if entries, err := os.ReadDir(tt.path("query-gpu")); err != nil || len(entries) != 0 {
		t.Errorf("query-gpu lists %v (%v), want nothing", entries, err)
	}
}

// TestDevicesTable: tokens/<name>/devices.table, the short table the shims
// print after --add, --rm and --switch.
func TestDevicesTable(t *testing.T) {
	three := []DeviceRow{
		{ID: 2026, Name: deviceName, Model: "Small.64GB"},
		{ID: 2027, Current: true, Name: deviceName, Model: "24xLarge.12288GB"},
		{ID: 2028, Name: deviceName, Model: "Medium.128GB"},
	}
	checkGolden(t, "devices_table_seed.golden", string(appendDevicesTable(nil, []DeviceRow{seedDevice})))
	checkGolden(t, "devices_table_three.golden", string(appendDevicesTable(nil, three)))
	checkGolden(t, "devices_table_empty.golden", string(appendDevicesTable(nil, nil)))

	tt := mountTree(t, store.Options{})
	mkdevice(t, tt, "Medium.128GB")
	if got, want := readFile(t, tt.path("tokens", "default", "devices.table")), readGolden(t, "devices_table_seed.golden"); got != want {
		t.Errorf("devices.table =\n%s\nwant\n%s", got, want)
	}
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
