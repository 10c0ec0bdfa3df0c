package node

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moreh-io/moreh/store"
)

// countingEngine counts the transactions run on it.
type countingEngine struct {
	store.Engine
	txs atomic.Int64
}

func (e *countingEngine) View(ctx context.Context, fn func(store.Tx) error) error {
	e.txs.Add(1)
	return e.Engine.View(ctx, fn)
}

func (e *countingEngine) Update(ctx context.Context, fn func(store.Tx) error) error {
	e.txs.Add(1)
	return e.Engine.Update(ctx, fn)
}

// countedRegistry is a registry of tokens and devices over a counting engine.
func countedRegistry(t *testing.T, tokens, perToken int) (*store.Registry, *countingEngine) {
	t.Helper()
	ctx := t.Context()
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "moreh.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	eng := &countingEngine{Engine: bolt}
	reg, err := store.Open(ctx, eng, store.Options{Key: []byte("a test key of thirty-two bytes!!"), MaxDevices: perToken})
	if err != nil {
		t.Fatal(err)
	}
	for i := range tokens {
		name := "default"
		if i > 0 {
			name = fmt.Sprintf("t%03d", i)
			if _, _, err := reg.CreateToken(ctx, name, perToken); err != nil {
				t.Fatal(err)
			}
		}
		for range perToken {
			if _, err := reg.CreateDevice(ctx, name, "Small.64GB"); err != nil {
				t.Fatal(err)
			}
		}
	}
	return reg, eng
}

// TestIdleSupervisorReadsNothing: once it has read the store, a supervisor
// with nothing to do runs no transaction, round after round for over a
// second (the idle-device check included: no device is due for an hour),
// however many tokens and devices the store holds.
func TestIdleSupervisorReadsNothing(t *testing.T) {
	ctx := t.Context()
	reg, eng := countedRegistry(t, 20, 5)
	rt := testRuntime(t, reg, Config{IdleTimeout: time.Hour})
	rt.Round(ctx) // the first reads the jobs and checks for idle devices
	before := eng.txs.Load()
	rounds := 0
	for start := time.Now(); time.Since(start) < 1500*time.Millisecond; rounds++ {
		rt.Round(ctx) // as fast as it goes: the ticker's pace would only be slower
	}
	if n := eng.txs.Load() - before; n != 0 {
		t.Errorf("%d idle rounds ran %d transactions, want none", rounds, n)
	}
}

// TestIdleDevicesGoWhenDue: the idle-device check runs when the oldest
// idle device is due, not on a tick: the supervisor removes devices of an
// idle timeout on time, with one transaction for each time a device is
// due rather than one per tick.
func TestIdleDevicesGoWhenDue(t *testing.T) {
	ctx := t.Context()
	created := time.Now() // no device is older
	reg, eng := countedRegistry(t, 1, 2)
	const timeout = 400 * time.Millisecond
	rt := testRuntime(t, reg, Config{IdleTimeout: timeout})
	rt.Round(ctx)
	before := eng.txs.Load()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before++ // the test's own View
		v, err := reg.View(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Devices) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle devices not removed after %v", time.Since(created))
		}
		rt.Round(ctx)
	}
	if took := time.Since(created); took < timeout {
		t.Errorf("devices removed %v after creation, before their idle timeout %v", took, timeout)
	}
	// A check is 4 transactions (the reaper's two reads, the removal, the
	// jobs): one when each device is due, they being made a moment apart.
	// A check every quarter of the timeout made 16 and more.
	if n := eng.txs.Load() - before; n > 8 {
		t.Errorf("removing two idle devices took %d transactions of the supervisor, want at most 8 (two checks)", n)
	}
}
