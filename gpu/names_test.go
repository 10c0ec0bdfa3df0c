package gpu

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeStat gives a fake procfs at root a process pid named comm that
// started at start (clock ticks after boot).
func writeStat(t *testing.T, root string, pid int, comm string, start uint64) {
	t.Helper()
	fields := make([]string, 22) // state, ppid, … (after the name), start at 19
	for i := range fields {
		fields[i] = "0"
	}
	fields[0], fields[19] = "S", strconv.FormatUint(start, 10)
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (" + comm + ") " + strings.Join(fields, " ") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSamplerNamesJobProcesses: each sample reads the names of the jobs'
// processes, by pid and start, so that a table shows them without reading
// /proc; a later process on the same pid is not named after the job's.
func TestSamplerNamesJobProcesses(t *testing.T) {
	root := t.TempDir()
	s := NewSampler(noneProbe{}, time.Second, slog.New(slog.DiscardHandler))
	s.procs = ProcFS{Root: root}
	ctx := context.Background()
	job := ProcID{PID: 42, Start: 100}
	name := func() string {
		t.Helper()
		n, ok := s.Latest().ProcessName(job)
		if !ok {
			return "(not named)"
		}
		return n
	}
	writeStat(t, root, 42, "bash", 100)
	writeStat(t, root, 43, "other", 7)

	s.SampleNow(ctx)
	if got := name(); got != "(not named)" {
		t.Errorf("before NameProcesses: %q", got)
	}
	s.NameProcesses([]ProcID{job}, nil)
	if got := name(); got != "(not named)" {
		t.Errorf("before the next sample: %q", got)
	}
	s.SampleNow(ctx)
	if got := name(); got != "bash" {
		t.Errorf("after a sample: %q, want bash", got)
	}
	if _, ok := s.Latest().ProcessName(ProcID{PID: 43, Start: 7}); ok {
		t.Error("a process of no job is named")
	}

	writeStat(t, root, 42, "python3", 100) // it execs
	if got := name(); got != "bash" {
		t.Errorf("a snapshot changed after its sample: %q", got)
	}
	s.SampleNow(ctx)
	if got := name(); got != "python3" {
		t.Errorf("after exec and a sample: %q, want python3", got)
	}

	writeStat(t, root, 42, "impostor", 200) // the pid is reused
	s.SampleNow(ctx)
	if got := name(); got != "(not named)" {
		t.Errorf("a later process on the pid: %q", got)
	}

	if err := os.RemoveAll(filepath.Join(root, "42")); err != nil {
		t.Fatal(err)
	}
	s.SampleNow(ctx)
	if got := name(); got != "(not named)" {
		t.Errorf("a process that is gone: %q", got)
	}
}

// TestSamplerNamesStandWithTheClock: while the jobs' clock stands still no
// process of them exec'd, so a sample keeps the names it read; once the
// clock moves, or the list changes, they are read again.
func TestSamplerNamesStandWithTheClock(t *testing.T) {
	root := t.TempDir()
	s := NewSampler(noneProbe{}, time.Second, slog.New(slog.DiscardHandler))
	s.procs = ProcFS{Root: root}
	ctx := context.Background()
	job := ProcID{PID: 42, Start: 100}
	var usec uint64 = 1
	s.NameProcesses([]ProcID{job}, func() (uint64, bool) { return usec, true })
	name := func() string {
		n, _ := s.Latest().ProcessName(job)
		return n
	}
	writeStat(t, root, 42, "bash", 100)
	s.SampleNow(ctx)
	if got := name(); got != "bash" {
		t.Fatalf("first sample: %q, want bash", got)
	}
	writeStat(t, root, 42, "python3", 100)
	s.SampleNow(ctx)
	if got := name(); got != "bash" {
		t.Errorf("clock still: %q, want the name read before (no /proc read)", got)
	}
	usec = 2
	s.SampleNow(ctx)
	if got := name(); got != "python3" {
		t.Errorf("clock moved: %q, want python3", got)
	}
	writeStat(t, root, 42, "perl", 100)
	s.NameProcesses([]ProcID{job}, func() (uint64, bool) { return usec, true })
	s.SampleNow(ctx)
	if got := name(); got != "perl" {
		t.Errorf("a new list with the clock still: %q, want perl", got)
	}
}

// TestSamplerOnSample: the hook sees every snapshot, each once it is the latest.
func TestSamplerOnSample(t *testing.T) {
	s := NewSampler(noneProbe{}, time.Second, slog.New(slog.DiscardHandler))
	var seen []*Snapshot
	s.OnSample(func(snap *Snapshot) {
		if s.Latest() != snap {
			t.Error("the hook saw a snapshot that is not the latest")
		}
		seen = append(seen, snap)
	})
	for range 3 {
		s.SampleNow(context.Background())
	}
	if len(seen) != 3 || seen[0] == seen[1] || seen[1] == seen[2] {
		t.Errorf("the hook saw %d snapshots, want 3 distinct", len(seen))
	}
}
