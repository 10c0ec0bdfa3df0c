package fs

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// seedTop is the start of the moreh-smi sample in the product's seed
// document (lines 106-113), copied byte for byte; line 1 ends in a space.
const seedTop = "13:40:41 October 17, 2022 \n" +
	`+---------------------------------------------------------------------------------------------------+
|  Moreh-SMI 22.10.1                              Client Version: 22.10.1  Server Version: 22.10.2  |
+---------------------------------------------------------------------------------------------------+
|  Device  |        Name         |      Model     |  Memory Usage  |  Total Memory  |  Utilization  |
+===================================================================================================+
|  * 2026  |  KT AI Accelerator  |  Medium.128GB  |    22240 MiB   |   131040 MiB   |  -            |
+---------------------------------------------------------------------------------------------------+
`

var seedTime = time.Date(2022, time.October, 17, 13, 40, 41, 0, time.UTC)

var seedDevice = DeviceRow{
	ID: 2026, Current: true, Name: "KT AI Accelerator", Model: "Medium.128GB",
	MemoryUsedMiB: 22240, MemoryTotalMiB: 131040, Utilization: NoUtilization,
}

func seedView() TableView {
	return TableView{
		Time:          seedTime,
		SMIVersion:    "22.10.1",
		ClientVersion: "22.10.1",
		ServerVersion: "22.10.2",
		Devices:       []DeviceRow{seedDevice},
		Processes:     []ProcessRow{{Device: 2026, JobID: 37054, PID: 26515, Name: "python", MemoryMiB: 22240}},
	}
}

// tableCases are the golden cases, by golden file name.
func tableCases() []struct {
	name string
	view TableView
} {
	noProcs := seedView()
	noProcs.Processes = nil

	noDevs := seedView()
	noDevs.Devices, noDevs.Processes = nil, nil

	three := seedView()
	three.Devices = []DeviceRow{
		{ID: 1, Name: "KT AI Accelerator", Model: "Small.64GB", MemoryUsedMiB: 0, MemoryTotalMiB: 65520, Utilization: 0},
		{ID: 2, Current: true, Name: "KT AI Accelerator", Model: "Medium.128GB", MemoryUsedMiB: 48000, MemoryTotalMiB: 131040, Utilization: 37},
		{ID: 3, Name: "KT AI Accelerator", Model: "Large.256GB", MemoryUsedMiB: 262080, MemoryTotalMiB: 262080, Utilization: 100},
	}
	three.Processes = []ProcessRow{
		{Device: 2, JobID: 101, PID: 4242, Name: "python", MemoryMiB: 48000},
		{Device: 3, JobID: 102, PID: 4343, Name: "torchrun", MemoryMiB: 262080},
	}

	huge := seedView()
	huge.Devices = []DeviceRow{{
		ID: 2026, Current: true, Name: "KT AI Accelerator", Model: "24xLarge.12288GB",
		MemoryUsedMiB: 12579840, MemoryTotalMiB: 12579840, Utilization: 99,
	}}
	huge.Processes = []ProcessRow{{
		Device: 2026, JobID: 1234567890, PID: 4194304,
		Name: "python3 train_gpt_with_a_very_long_name.py", MemoryMiB: 12579840,
	}}

	// Versions too long for the seed's title line widen the last column.
	longVersions := seedView()
	longVersions.SMIVersion = "22.10.1-rc3+build.20221017.abcdef0"
	longVersions.ClientVersion = "22.10.1-rc3+build.20221017.abcdef0"
	longVersions.ServerVersion = "22.10.2-dev+build.20221017.0fedcba"

	return []struct {
		name string
		view TableView
	}{
		{"table_seed", seedView()},
		{"table_no_processes", noProcs},
		{"table_no_devices", noDevs},
		{"table_three_devices", three},
		{"table_huge", huge},
		{"table_long_versions", longVersions},
	}
}

func render(t *testing.T, v TableView) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTable(&buf, v); err != nil {
		t.Fatalf("WriteTable: %v", err)
	}
	return buf.String()
}

func TestTableGolden(t *testing.T) {
	for _, c := range tableCases() {
		t.Run(c.name, func(t *testing.T) {
			got := render(t, c.view)
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestTableGolden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s\n--- got ---\n%s--- want ---\n%s", path, got, want)
			}
		})
	}
}

func TestTableMatchesSeed(t *testing.T) {
	got := render(t, seedView())
	lines := strings.SplitAfter(got, "\n")
	if len(lines) < 8 {
		t.Fatalf("only %d lines:\n%s", len(lines), got)
	}
	if top := strings.Join(lines[:8], ""); top != seedTop {
		t.Errorf("first 8 lines differ from the seed\n--- got ---\n%s--- want ---\n%s", top, seedTop)
	}
}

func TestTableEndsWithNewline(t *testing.T) {
	for _, c := range tableCases() {
		if got := render(t, c.view); !strings.HasSuffix(got, "+\n") {
			t.Errorf("%s: does not end with a rule and a newline: %q", c.name, got[max(len(got)-20, 0):])
		}
	}
}

// TestTableBordersAlign checks, for every case, that each table's lines are
// equally long and that every data row has its borders where the header has.
func TestTableBordersAlign(t *testing.T) {
	for _, c := range tableCases() {
		t.Run(c.name, func(t *testing.T) {
			tables := splitTables(render(t, c.view))
			if len(tables) != 2 {
				t.Fatalf("want 2 tables (devices, processes), got %d", len(tables))
			}
			for _, tbl := range tables {
				checkTable(t, tbl)
			}
		})
	}
}

// splitTables groups consecutive lines that start with "+" or "|".
func splitTables(out string) [][]string {
	var tables [][]string
	var cur []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "+") || strings.HasPrefix(l, "|") {
			cur = append(cur, l)
			continue
		}
		if cur != nil {
			tables = append(tables, cur)
			cur = nil
		}
	}
	if cur != nil {
		tables = append(tables, cur)
	}
	return tables
}

func checkTable(t *testing.T, tbl []string) {
	t.Helper()
	width := len(tbl[0])
	for _, l := range tbl {
		if len(l) != width {
			t.Errorf("line is %d wide, want %d: %q", len(l), width, l)
		}
		if !strings.HasSuffix(l, l[:1]) {
			t.Errorf("line does not close with %q: %q", l[:1], l)
		}
	}
	sep := -1
	for i, l := range tbl {
		if strings.HasPrefix(l, "+=") {
			sep = i
			break
		}
	}
	if sep < 1 {
		t.Fatalf("no header row above a \"=\" rule:\n%s", strings.Join(tbl, "\n"))
	}
	header := pipes(tbl[sep-1])
	if len(header) < 3 {
		t.Fatalf("header has no column borders: %q", tbl[sep-1])
	}
	rows := 0
	for _, l := range tbl[sep+1:] {
		if strings.HasPrefix(l, "+") {
			if strings.Trim(l[1:len(l)-1], "-") != "" {
				t.Errorf("malformed rule: %q", l)
			}
			continue
		}
		rows++
		got := pipes(l)
		if len(got) == 2 { // a banner such as "No devices." spans the table
			continue
		}
		if !slices.Equal(got, header) {
			t.Errorf("borders at %v, header's at %v:\n%s\n%s", got, header, tbl[sep-1], l)
		}
	}
	if rows == 0 {
		t.Errorf("no rows below the header:\n%s", strings.Join(tbl, "\n"))
	}
}

func pipes(l string) []int {
	var at []int
	for i, r := range l {
		if r == '|' {
			at = append(at, i)
		}
	}
	return at
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestTableWriteError(t *testing.T) {
	if err := WriteTable(failWriter{}, seedView()); err == nil {
		t.Error("WriteTable returned nil for a failing writer")
	}
}
