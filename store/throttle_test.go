package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// countingEngine counts the transactions that reach the engine.
type countingEngine struct {
	Engine
	updates, views atomic.Int64
}

func (e *countingEngine) Update(ctx context.Context, fn func(Tx) error) error {
	e.updates.Add(1)
	return e.Engine.Update(ctx, fn)
}

func (e *countingEngine) View(ctx context.Context, fn func(Tx) error) error {
	e.views.Add(1)
	return e.Engine.View(ctx, fn)
}

// TestBindThrottle: after a rejected secret, a uid's attempts are refused
// unchecked (KindKeyRejected, without a read) for a delay that doubles up to a minute; rejected
// secrets never write to the store; root is not throttled; a secret that
// binds once the delay has passed clears the throttle.
func TestBindThrottle(t *testing.T) {
	ctx := t.Context()
	eng, err := openTestEngine(t.TempDir() + "/state.db")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	counted := &countingEngine{Engine: eng}
	reg, err := Open(ctx, counted, Options{Key: []byte("a test key of thirty-two bytes!!")})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := reg.CreateToken(ctx, "alice", 3)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	reg.now = func() time.Time { return now }
	updates, views := counted.updates.Load(), counted.views.Load()
	const uid = 1003
	kinds := map[Kind]int{}
	for range 1000 { // one attempt every millisecond, for a second
		_, err := reg.Bind(ctx, uid, "mrh_guess")
		kinds[KindOf(err)]++
		now = now.Add(time.Millisecond)
	}
	checked := counted.views.Load() - views
	t.Logf("1000 guesses in 1 s: %d rejected, %d checked (store reads), %d store writes", kinds[KindKeyRejected], checked, counted.updates.Load()-updates)
	// Checked at 0, 0.1, 0.3, 0.7 s: the delay is 1.6 s after the fourth.
	if kinds[KindKeyRejected] != 1000 || checked != 4 {
		t.Errorf("kinds %v, %d reads; want 1000 rejected, 4 of them checked", kinds, checked)
	}
	if w := counted.updates.Load() - updates; w != 0 {
		t.Errorf("guessing wrote %d transactions, want 0", w)
	}
	// The right secret too is refused while the delay runs.
	if _, err := reg.Bind(ctx, uid, secret); KindOf(err) != KindKeyRejected || counted.views.Load()-views != 4 {
		t.Errorf("the right secret during the delay: %v, want KindKeyRejected unchecked", err)
	}
	// The delay doubles to a minute and no further.
	for range 20 {
		now = now.Add(time.Hour / 60) // a minute: past any delay
		reg.Bind(ctx, uid, "mrh_guess")
	}
	if ok, wait := reg.binds.admit(uid, now); ok || wait != time.Minute {
		t.Errorf("after many rejections: admitted %v, wait %v; want a minute", ok, wait)
	}
	// Root is never throttled.
	for range 3 {
		if _, err := reg.Bind(ctx, 0, "mrh_guess"); KindOf(err) != KindKeyRejected {
			t.Errorf("root's guess: %v, want KindKeyRejected", err)
		}
	}
	now = now.Add(time.Minute)
	if name, err := reg.Bind(ctx, uid, secret); err != nil || name != "alice" {
		t.Fatalf("the right secret after the delay: %q, %v", name, err)
	}
	if _, err := reg.Bind(ctx, uid, "mrh_guess"); KindOf(err) != KindKeyRejected {
		t.Errorf("a bound secret did not clear the throttle: %v", err)
	}
}
