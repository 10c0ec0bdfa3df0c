package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Internal helpers shared by the store tests: a registry over a real bbolt
// file in t.TempDir(), reopening it, and checks of the file and of the rules'
// invariants.

// openTestRegistry opens a registry on a fresh bbolt file. At the end of the
// test the engine is closed and the file is checked with bbolt's own Check.
func openTestRegistry(t *testing.T, opts Options) (*Registry, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	if etcdCluster != nil {
		path = "/test/" + t.Name() + "/" // a key prefix of its own
	}
	// Cleanups run last-in first-out: the check registered first runs after
	// every engine of this path is closed.
	t.Cleanup(func() { checkDB(t, path) })
	return openRegistryAt(t, path, opts), path
}

// openRegistryAt opens the bbolt file at path and a registry on it; the
// engine is closed when the test ends (closing twice is harmless).
func openRegistryAt(t *testing.T, path string, opts Options) *Registry {
	ctx := t.Context()
	t.Helper()
	eng, err := openTestEngine(path)
	if err != nil {
		t.Fatalf("open the engine at %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := eng.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	reg, err := Open(ctx, eng, opts)
	if err != nil {
		t.Fatalf("Open(%+v): %v", opts, err)
	}
	return reg
}

// reopen closes reg's engine and opens the same file again with opts, as a
// daemon restart does.
func reopen(t *testing.T, reg *Registry, path string, opts Options) *Registry {
	t.Helper()
	if err := reg.eng.Close(); err != nil {
		t.Fatalf("close engine: %v", err)
	}
	return openRegistryAt(t, path, opts)
}

// checkDB opens the file with bbolt directly and runs its consistency check,
// failing on every error it reports.
func checkDB(t *testing.T, path string) {
	t.Helper()
	if etcdCluster != nil {
		return // etcd checks its own store
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("checkDB: open %s: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Errorf("checkDB: bbolt Check of %s: %v", path, err)
	}
}

// checkInvariants asserts every invariant of the stored state: limits hold,
// ids are unique and below the next id, current names a device of its token
// (or is 0 exactly when the token has none), current is the most recently
// used device, and the token_devices index and the devices bucket agree.
func checkInvariants(t *testing.T, reg *Registry) {
	t.Helper()
	checkInvariantsOpt(t, reg, false)
}

// checkInvariantsOverLimit is checkInvariants for a state where a lowered
// MaxDevices may leave a token above its limit.
func checkInvariantsOverLimit(t *testing.T, reg *Registry) {
	t.Helper()
	checkInvariantsOpt(t, reg, true)
}

func checkInvariantsOpt(t *testing.T, reg *Registry, allowOverLimit bool) {
	ctx := t.Context()
	t.Helper()
	err := reg.eng.View(ctx, func(tx Tx) error {
		next := fromU64(tx.Get(bucketMeta, keyNextDeviceID))
		if next == 0 {
			t.Errorf("invariant: next_device_id is missing")
		}
		if next < reg.opts.FirstID {
			t.Errorf("invariant: next_device_id %d < FirstID %d", next, reg.opts.FirstID)
		}

		tokens := map[string]Token{}
		err := tx.ForEachPrefix(bucketTokens, nil, func(k, v []byte) error {
			var tok Token
			if err := json.Unmarshal(v, &tok); err != nil {
				return fmt.Errorf("token %q: %w", k, err)
			}
			if tok.Name != string(k) {
				t.Errorf("invariant: token key %q holds name %q", k, tok.Name)
			}
			tokens[string(k)] = tok
			return nil
		})
		if err != nil {
			return err
		}
		numbers := map[uint64]string{}
		for name, tok := range tokens {
			if other, dup := numbers[tok.Number]; dup || tok.Number == 0 {
				t.Errorf("invariant: token %q has number %d (also %q)", name, tok.Number, other)
			}
			numbers[tok.Number] = name
		}

		devices := map[uint64]Device{}
		err = tx.ForEachPrefix(bucketDevices, nil, func(k, v []byte) error {
			if len(k) != 8 {
				t.Errorf("invariant: device key %x is not 8 bytes", k)
			}
			var d Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("device %x: %w", k, err)
			}
			if d.ID != fromU64(k) {
				t.Errorf("invariant: device key %d holds id %d", fromU64(k), d.ID)
			}
			if _, dup := devices[d.ID]; dup {
				t.Errorf("invariant: device id %d twice", d.ID)
			}
			devices[d.ID] = d
			return nil
		})
		if err != nil {
			return err
		}

		byToken := map[string][]uint64{} // from the index
		indexed := map[uint64]bool{}
		err = tx.ForEachPrefix(bucketTokenDevices, nil, func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(k)-i-1 != 8 {
				t.Errorf("invariant: malformed index key %q", k)
				return nil
			}
			if len(v) != 0 {
				t.Errorf("invariant: index key %q holds a value %q", k, v)
			}
			name, id := string(k[:i]), fromU64(k[i+1:])
			if indexed[id] {
				t.Errorf("invariant: device %d indexed twice", id)
			}
			indexed[id] = true
			byToken[name] = append(byToken[name], id)
			d, ok := devices[id]
			switch {
			case !ok:
				t.Errorf("invariant: index %q/%d names a missing device", name, id)
			case d.Token != name:
				t.Errorf("invariant: index puts device %d under %q, the record says %q", id, name, d.Token)
			}
			if _, ok := tokens[name]; !ok {
				t.Errorf("invariant: index names unknown token %q", name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for id, d := range devices {
			if !indexed[id] {
				t.Errorf("invariant: device %d (token %q) is not in the index", id, d.Token)
			}
			if id >= next {
				t.Errorf("invariant: device id %d >= next_device_id %d", id, next)
			}
			if _, ok := LookupModel(d.Model); !ok {
				t.Errorf("invariant: device %d has unknown model %q", id, d.Model)
			} else if m, _ := LookupModel(d.Model); m.Name != d.Model {
				t.Errorf("invariant: device %d model %q is not canonical %q", id, d.Model, m.Name)
			}
		}

		for name, tok := range tokens {
			ids := byToken[name]
			if !allowOverLimit && len(ids) > tok.MaxDevices {
				t.Errorf("invariant: token %q holds %d devices, limit %d", name, len(ids), tok.MaxDevices)
			}
			if len(ids) == 0 {
				if tok.Current != 0 {
					t.Errorf("invariant: token %q has no device but current %d", name, tok.Current)
				}
				continue
			}
			cur, ok := devices[tok.Current]
			if !ok || cur.Token != name {
				t.Errorf("invariant: token %q current %d is not one of its devices %v", name, tok.Current, ids)
				continue
			}
			used := map[uint64]uint64{}
			for _, id := range ids {
				d := devices[id]
				if d.LastUsed == 0 || d.LastUsed > tok.UseCount {
					t.Errorf("invariant: device %d last_used %d outside 1..%d", id, d.LastUsed, tok.UseCount)
				}
				if other, dup := used[d.LastUsed]; dup {
					t.Errorf("invariant: devices %d and %d share last_used %d", other, id, d.LastUsed)
				}
				used[d.LastUsed] = id
				if d.LastUsed > cur.LastUsed {
					t.Errorf("invariant: token %q current %d (last_used %d) is not the most recently used; %d has %d",
						name, cur.ID, cur.LastUsed, id, d.LastUsed)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("invariant walk: %v", err)
	}
}

// mustView returns a snapshot of token, failing the test on error.
func mustView(t *testing.T, reg *Registry, token string) TokenView {
	ctx := t.Context()
	t.Helper()
	v, err := reg.View(ctx, token)
	if err != nil {
		t.Fatalf("View(%q): %v", token, err)
	}
	return v
}

// mustCreate creates a device and checks it got wantID.
func mustCreate(t *testing.T, reg *Registry, token, model string, wantID uint64) Device {
	ctx := t.Context()
	t.Helper()
	d, err := reg.CreateDevice(ctx, token, model)
	if err != nil {
		t.Fatalf("CreateDevice(%q, %q): %v", token, model, err)
	}
	if d.ID != wantID {
		t.Fatalf("CreateDevice(%q, %q) id = %d, want %d", token, model, d.ID, wantID)
	}
	return d
}

func mustSwitch(t *testing.T, reg *Registry, token string, id uint64) {
	ctx := t.Context()
	t.Helper()
	if err := reg.Switch(ctx, token, id); err != nil {
		t.Fatalf("Switch(%q, %d): %v", token, id, err)
	}
}

func mustRemove(t *testing.T, reg *Registry, token string, id uint64) {
	ctx := t.Context()
	t.Helper()
	if err := reg.RemoveDevice(ctx, token, id); err != nil {
		t.Fatalf("RemoveDevice(%q, %d): %v", token, id, err)
	}
}

// ids lists the device ids of a view.
func ids(v TokenView) []uint64 {
	out := []uint64{}
	for _, d := range v.Devices {
		out = append(out, d.ID)
	}
	return out
}

func wantIDs(t *testing.T, reg *Registry, token string, want ...uint64) {
	t.Helper()
	if want == nil {
		want = []uint64{}
	}
	if got := ids(mustView(t, reg, token)); !reflect.DeepEqual(got, want) {
		t.Fatalf("devices of %q = %v, want %v", token, got, want)
	}
}

func wantCurrent(t *testing.T, reg *Registry, token string, want uint64) {
	t.Helper()
	if got := mustView(t, reg, token).Token.Current; got != want {
		t.Fatalf("current of %q = %d, want %d", token, got, want)
	}
}

// wantErr checks err is a *Error of kind with exactly msg ("" skips the
// message check).
func wantErr(t *testing.T, err error, kind Kind, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want kind %d %q", kind, msg)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %T %v, want *store.Error", err, err)
	}
	if e.Kind != kind || KindOf(err) != kind {
		t.Fatalf("err kind = %d (%v), want %d", e.Kind, err, kind)
	}
	if msg != "" && e.Msg != msg {
		t.Fatalf("err msg = %q, want %q", e.Msg, msg)
	}
}

// fixedClock returns a clock that starts at start and advances by step on
// every call; it is safe for concurrent use.
func fixedClock(start time.Time, step time.Duration) func() time.Time {
	var mu sync.Mutex
	now := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := now
		now = now.Add(step)
		return t
	}
}
