package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// runJob attaches a made-up process to a fresh device of model and ends
// the job with reason; it returns the job's id.
func runJob(t *testing.T, reg *Registry, model string, reason EndReason) uint64 {
	t.Helper()
	ctx := t.Context()
	d, err := reg.CreateDevice(ctx, "default", model)
	if err != nil {
		t.Fatal(err)
	}
	job, err := reg.Attach(ctx, "default", d.ID, Proc{PID: 4242, Start: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.EndJob(ctx, job.ID, reason); err != nil {
		t.Fatal(err)
	}
	if err := reg.RemoveDevice(ctx, "default", d.ID); err != nil {
		t.Fatal(err)
	}
	return job.ID
}

func historyIDs(t *testing.T, reg *Registry) []uint64 {
	t.Helper()
	entries, err := reg.History(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, h := range entries {
		ids = append(ids, h.Job)
	}
	return ids
}

// TestHistoryKeepsTheNewest: with HistoryKeep 3, five ended jobs leave
// exactly the newest three, oldest first, across a reopen; each entry names
// its reason, model and the figures the runtime gave.
func TestHistoryKeepsTheNewest(t *testing.T) {
	opts := Options{HistoryKeep: 3}
	reg, path := openTestRegistry(t, opts)
	gpus := make([]PoolGPU, 8)
	for i := range gpus {
		gpus[i] = PoolGPU{UUID: fmt.Sprintf("GPU-%d", i), Index: i, Units: 1, MemoryMiB: UnitMiB}
	}
	if _, err := reg.SetPool(t.Context(), gpus); err != nil {
		t.Fatal(err)
	}
	reg.OnJobFigures(func(job uint64) JobFigures { return JobFigures{PeakMiB: 70000, MeanUtilization: 50} })
	var ids []uint64
	for i, reason := range []EndReason{EndExit, EndReset, EndFenced, EndIdle, EndExit} {
		ids = append(ids, runJob(t, reg, []string{"Small.64GB", "Large.256GB"}[i%2], reason))
	}
	if got := historyIDs(t, reg); !slices.Equal(got, ids[2:]) {
		t.Fatalf("history = %v, want the newest three %v", got, ids[2:])
	}
	entries, _ := reg.History(t.Context(), "default")
	if h := entries[0]; h.Reason != EndFenced || h.Model != "Small.64GB" || h.Units != 1 || h.PeakMiB != 70000 || h.Fits != "Medium.128GB" || h.MeanUtilization != 50 {
		t.Errorf("the oldest kept entry: %+v", h)
	}
	reg = reopen(t, reg, path, opts)
	if got := historyIDs(t, reg); !slices.Equal(got, ids[2:]) {
		t.Errorf("history after a reopen = %v, want %v", got, ids[2:])
	}
}

// TestSmallestFit: the smallest model (by units) whose memory holds a peak.
func TestSmallestFit(t *testing.T) {
	for _, c := range []struct {
		mib  uint64
		want string
	}{{0, "Small.64GB"}, {65520, "Small.64GB"}, {65521, "Medium.128GB"}, {600000, "1.5xLarge.768GB"}, {1 << 40, "24xLarge.12288GB"}} {
		if got := smallestFit(c.mib); got != c.want {
			t.Errorf("smallestFit(%d) = %s, want %s", c.mib, got, c.want)
		}
	}
}

// TestNewerSchemaRefused: a store stamped by a newer binary is refused at
// open with a sentence that says so; a fresh one is stamped with ours.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	reg, path := openTestRegistry(t, Options{})
	var stamped uint64
	if err := reg.eng.View(ctx, func(tx Tx) error { stamped = fromU64(tx.Get(bucketMeta, keySchema)); return nil }); err != nil || stamped != schemaVersion {
		t.Fatalf("a new store's schema version = %d, %v; want %d", stamped, err, schemaVersion)
	}
	if err := reg.eng.Update(ctx, func(tx Tx) error { return tx.Put(bucketMeta, keySchema, u64(schemaVersion+1)) }); err != nil {
		t.Fatal(err)
	}
	if err := reg.eng.Close(); err != nil {
		t.Fatal(err)
	}
	eng, err := openTestEngine(path)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	_, err = Open(ctx, eng, Options{})
	if err == nil || !strings.Contains(err.Error(), "written by a newer morehd") {
		t.Fatalf("Open of a newer store = %v, want a refusal naming the newer morehd", err)
	}
}
