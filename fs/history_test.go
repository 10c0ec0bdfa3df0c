package fs

import (
	"fmt"
	"strconv"
	"strings"

	"encoding/json"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"

	"github.com/moreh-io/moreh/store"
)

// TestHistoryGolden: the history file's fixed columns, for a job that ran
// and one never sampled, against testdata/history.golden.
func TestHistoryGolden(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	entries := []store.HistoryEntry{
		{Job: 7, Device: 2026, Model: "Large.256GB", Units: 4, Nodes: []string{"node-a"}, Started: start,
			Ended: start.Add(95 * time.Second), Reason: store.EndExit, PeakMiB: 312, MeanUtilization: 41, Fits: "Small.64GB"},
		{Job: 12, Device: 2031, Model: "24xLarge.12288GB", Units: 192, Nodes: []string{"node-a", "node-b"}, Started: start,
			Ended: start.Add(2 * time.Hour), Reason: store.EndReset, MeanUtilization: store.NoFigure, Fits: "Small.64GB"},
	}
	checkGolden(t, "history.golden", string(appendHistory(nil, entries)))
	checkGolden(t, "history-empty.golden", string(appendHistory(nil, nil)))
	checkGolden(t, "history.csv.golden", string(appendHistoryCSV(nil, entries)))
}

// historyOf reads tokens/default/history.json.
func historyOf(t *testing.T, tt *testTree) []store.HistoryEntry {
	t.Helper()
	var entries []store.HistoryEntry
	if err := json.Unmarshal([]byte(readFile(t, tt.path("tokens", "default", "history.json"))), &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

// TestHistoryRecordsJobs: a job holding 300 MiB on a Large device ends by
// itself: its entry says exit, a peak of at least 300 MiB, and that a
// Small.64GB would have held it; a reset job says reset; the token's usage
// counts units × seconds.
func TestHistoryRecordsJobs(t *testing.T) {
	tt := mountTree(t, store.Options{})
	large := mkdevice(t, tt, "Large.256GB")
	pid, stop := startProc(t, 300)
	if err := writeFile(tt.path("devices", large, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	attached := time.Now() // the job began before the write returned
	morehdtest.Eventually(t, 10*time.Second, "the sampler reads the job's 300 MiB", func() bool {
		return strings.Contains(readFile(t, tt.path("devices", large, "usage")), "memory_used_mib 3")
	})
	ran := time.Since(attached) // and ends after stop is called
	stop()
	morehdtest.Eventually(t, 5*time.Second, "the ended job is in the history", func() bool { return len(historyOf(t, tt)) == 1 })
	h := historyOf(t, tt)[0]
	if h.Reason != store.EndExit || h.PeakMiB < 300 || h.Fits != "Small.64GB" || h.Model != "Large.256GB" || h.Units != 4 || h.MeanUtilization == store.NoFigure {
		t.Errorf("the entry of a 300 MiB job that exited: %+v", h)
	}

	medium := mkdevice(t, tt, "Medium.128GB")
	pid2, _ := startProc(t, 1)
	if err := writeFile(tt.path("devices", medium, "procs"), strconv.Itoa(pid2)); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(tt.path("devices", medium, "reset"), "1"); err != nil {
		t.Fatal(err)
	}
	entries := historyOf(t, tt)
	if len(entries) != 2 || entries[1].Reason != store.EndReset || entries[1].Model != "Medium.128GB" {
		t.Fatalf("history after a reset: %+v", entries)
	}
	if lines := strings.Split(strings.TrimSuffix(readFile(t, tt.path("tokens", "default", "history")), "\n"), "\n"); len(lines) != 3 || !strings.Contains(lines[1], " exit ") || !strings.Contains(lines[2], " reset ") {
		t.Errorf("history file:\n%s", strings.Join(lines, "\n"))
	}
	want := h.UnitMillis() + entries[1].UnitMillis()
	if got := readFile(t, tt.path("tokens", "default", "usage")); got != fmt.Sprintf("unit_seconds %d.%03d\n", want/1000, want%1000) || want < 4*uint64(ran.Milliseconds()) {
		t.Errorf("usage = %q, want %d unit-milliseconds (at least %d: 4 units for the %v the first job surely ran)", got, want, 4*ran.Milliseconds(), ran)
	}
}
