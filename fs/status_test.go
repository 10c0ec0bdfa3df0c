package fs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/moreh-io/moreh/store"
)

// checkGolden compares got with testdata/name, rewriting it under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestMountedStatus reads the tables through the mount, against goldens.
func TestMountedStatus(t *testing.T) {
	tt := mountTree(t, store.Options{})
	checkGolden(t, "mounted_status_empty.golden", readFile(t, tt.path("status")))
	for _, m := range []string{"Medium.128GB", "24xLarge.12288GB", "Small.64GB"} {
		if err := os.Mkdir(tt.path("devices", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFile(tt.path("current"), "2027"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "mounted_status.golden", readFile(t, tt.path("status")))
	checkGolden(t, "mounted_status_2026.golden", readFile(t, tt.path("devices", "2026", "status")))
}

func TestStatusJSON(t *testing.T) {
	tt := mountTree(t, store.Options{MaxDevices: 3})
	for _, m := range []string{"Medium.128GB", "Large.256GB"} {
		if err := os.Mkdir(tt.path("devices", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var s statusJSON
	if err := json.Unmarshal([]byte(readFile(t, tt.path("tokens", "default", "status.json"))), &s); err != nil {
		t.Fatal(err)
	}
	if s.Token != "default" || s.Current == nil || *s.Current != 2027 || s.Limit != (limitJSON{Max: 3, Used: 2}) ||
		s.Time != "2022-10-17T13:40:41Z" || s.ServerVersion != "22.10.1" || len(s.Processes) != 0 {
		t.Errorf("status.json header = %+v", s)
	}
	want := []deviceJSON{
		{ID: 2026, Name: "KT AI Accelerator", Model: "Medium.128GB", Units: 2, MemoryTotalMiB: 131040, State: "idle"},
		{ID: 2027, Current: true, Name: "KT AI Accelerator", Model: "Large.256GB", Units: 4, MemoryTotalMiB: 262080, State: "idle"},
	}
	if len(s.Devices) != 2 || s.Devices[0] != want[0] || s.Devices[1] != want[1] {
		t.Errorf("devices = %+v, want %+v", s.Devices, want)
	}
	var one statusJSON
	if err := json.Unmarshal([]byte(readFile(t, tt.path("devices", "2026", "status.json"))), &one); err != nil {
		t.Fatal(err)
	}
	if len(one.Devices) != 1 || one.Devices[0] != want[0] {
		t.Errorf("devices/2026/status.json devices = %+v", one.Devices)
	}
}
