package store

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestDecodedRecordsArePrivate: what a read returns is the caller's to
// change; the memo of decodings keeps its own copy.
func TestDecodedRecordsArePrivate(t *testing.T) {
	job := []byte(`{"id":7,"token":"default","device":2026,"procs":[{"pid":42,"start":100}],"gpus":["GPU-0","GPU-1"]}`)
	token := []byte(`{"name":"team","secret_hash":"AQI=","nonce":"AwQ=","uids":[1000]}`)
	for range 2 { // the second round decodes from the memo
		var j Job
		if err := decodeJSON(bucketJobs, u64(7), job, &j); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(j.Procs, []Proc{{PID: 42, Start: 100}}) || !slices.Equal(j.GPUs, []string{"GPU-0", "GPU-1"}) {
			t.Fatalf("job = %+v", j)
		}
		j.Procs[0].PID, j.GPUs[0] = 1, "changed"
		j.Procs = append(j.Procs, Proc{PID: 2})

		var tok Token
		if err := decodeJSON(bucketTokens, []byte("team"), token, &tok); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tok.SecretHash, []byte{1, 2}) || !slices.Equal(tok.Nonce, []byte{3, 4}) || !slices.Equal(tok.UIDs, []int{1000}) {
			t.Fatalf("token = %+v", tok)
		}
		tok.SecretHash[0], tok.Nonce[0], tok.UIDs[0] = 9, 9, 9
	}
}

// TestDamagedRecordIsIOFromMemo: a damaged record fails every time it is
// read, not only the first.
func TestDamagedRecordIsIOFromMemo(t *testing.T) {
	for range 2 {
		var d Device
		if err := decodeJSON(bucketDevices, u64(1), []byte(`{"id":`), &d); KindOf(err) != KindIO {
			t.Fatalf("damaged device: %v, want KindIO", err)
		}
	}
}

// TestReadsSeeWritesAtOnce: each read after a write shows it, also when a
// record goes back to content it had before (which the memo has seen).
func TestReadsSeeWritesAtOnce(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	a, err := reg.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	view := func() TokenView {
		t.Helper()
		v, err := reg.View(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, model := range []string{"Large.256GB", "Small.64GB", "Large.256GB"} {
		if _, err := reg.SetModel(ctx, "default", a.ID, model); err != nil {
			t.Fatal(err)
		}
		if got := view().Devices[0].Model; got != model {
			t.Errorf("View after SetModel %s shows %s", model, got)
		}
		if d, err := reg.Device(ctx, "default", a.ID); err != nil || d.Model != model {
			t.Errorf("Device after SetModel %s = %+v, %v", model, d, err)
		}
	}
	for _, id := range []uint64{a.ID, b.ID, a.ID} {
		if err := reg.Switch(ctx, "default", id); err != nil {
			t.Fatal(err)
		}
		if got := view().Token.Current; got != id {
			t.Errorf("View after Switch %d shows current %d", id, got)
		}
	}
	if err := reg.RemoveDevice(ctx, "default", b.ID); err != nil {
		t.Fatal(err)
	}
	if v := view(); len(v.Devices) != 1 || v.Devices[0].ID != a.ID {
		t.Errorf("View after RemoveDevice %d: %+v", b.ID, v.Devices)
	}
}

// TestGetsWhileIterating: Gets of the bucket being walked, hits and misses,
// leave the walk alone (bbolt's Gets share a cursor in a read-only
// transaction; the walk has its own).
func TestGetsWhileIterating(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "walk.db")
	if etcdCluster != nil {
		path = "/test/" + t.Name() + "/"
	}
	eng, err := openTestEngine(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	keys := []uint64{3, 5, 8, 13}
	err = eng.Update(ctx, func(tx Tx) error {
		for _, k := range keys {
			if err := tx.Put(bucketJobs, u64(k), u64(k*10)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = eng.View(ctx, func(tx Tx) error {
		var walked []uint64
		err := tx.ForEachPrefix(bucketJobs, nil, func(k, v []byte) error {
			walked = append(walked, fromU64(k))
			for _, other := range keys {
				if got := fromU64(tx.Get(bucketJobs, u64(other))); got != other*10 {
					t.Errorf("Get %d while at %d = %d", other, fromU64(k), got)
				}
			}
			if tx.Get(bucketJobs, u64(4)) != nil || tx.Get(bucketJobs, u64(99)) != nil {
				t.Errorf("a missing key is found while at %d", fromU64(k))
			}
			return nil
		})
		if !slices.Equal(walked, keys) {
			t.Errorf("walked %v, want %v", walked, keys)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDecodeMemoIsBounded: decoding many more distinct records than the
// memo has slots leaves it at its fixed size, and every decoding right,
// also of a record whose slot was taken meanwhile.
func TestDecodeMemoIsBounded(t *testing.T) {
	m := newDecodeMemo(func(d Device) Device { return d })
	raw := func(id int) []byte { return []byte(`{"id":` + strconv.Itoa(id) + `,"token":"t","model":"Small.64GB"}`) }
	for round := range 2 {
		for id := 1; id <= 3*decodeMemoSlots; id++ {
			var d Device
			if err := m.decode(bucketDevices, u64(uint64(id)), raw(id), &d); err != nil {
				t.Fatal(err)
			}
			if d.ID != uint64(id) || d.Token != "t" || d.Model != "Small.64GB" {
				t.Fatalf("round %d: decoding of device %d = %+v", round, id, d)
			}
		}
	}
	if n := m.held(); n > decodeMemoSlots || n < decodeMemoSlots/2 {
		t.Errorf("memo holds %d records, want at most its %d slots (and most of them used)", n, decodeMemoSlots)
	}
}

// Every record the store's tests write is primed only when its decoding
// gives it back exactly: prime checks each and panics otherwise.
func init() { primeCheck = true }

// TestPrimeOnlyWhatDecodesBack: a device whose time carries the monotonic
// clock and the local zone does not decode back as it is, so a write of it
// primes nothing (a read decodes it); prime itself refuses it under
// primeCheck. A device in plain UTC is primed: its read is the value.
func TestPrimeOnlyWhatDecodesBack(t *testing.T) {
	local := Device{ID: 7, Token: "t", Model: "Small.64GB", Created: time.Now()}
	raw, err := json.Marshal(local)
	if err != nil {
		t.Fatal(err)
	}
	primeWritten(raw, local)
	var got Device
	if err := deviceMemo.decode(nil, nil, raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Created == local.Created || !got.Created.Equal(local.Created) {
		t.Errorf("read back %v from %v: want the same instant, decoded (no monotonic reading)", got.Created, local.Created)
	}
	plain := Device{ID: 8, Token: "t", Model: "Small.64GB", Created: time.Now().UTC(), Idle: time.Now().UTC()}
	if raw, err = json.Marshal(plain); err != nil {
		t.Fatal(err)
	}
	primeWritten(raw, plain)
	if err := deviceMemo.decode(nil, nil, raw, &got); err != nil || got != plain {
		t.Errorf("read back %+v, %v; want %+v", got, err, plain)
	}
	defer func() {
		if recover() == nil {
			t.Error("prime of a value that does not decode back did not panic under primeCheck")
		}
	}()
	deviceMemo.prime(raw, local)
}
