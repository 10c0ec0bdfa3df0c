package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// decodeMemo keeps recent decodings of records by their bytes: decoding
// JSON is most of the cost of a read, and the records a request touches
// (a token, its devices) are read far more often than they change. A
// decoding depends on nothing but the bytes, so an entry can never be
// stale, whichever engine or registry the bytes came from.
//
// Its size is fixed, whatever the store holds: decodeMemoSlots slots, each
// record hashed to one, a newer record taking its slot. A walk of every
// record decodes each once and evicts slot by slot; what one token's
// requests touch stays.
type decodeMemo[T any] struct {
	seed  maphash.Seed
	slots [decodeMemoSlots]memoSlot[T]
	// private copies what a caller gets, so that it may change it freely.
	private func(T) T
}

type memoSlot[T any] struct {
	mu      sync.Mutex
	raw     []byte // the record's bytes; nil while empty
	decoded T
}

// decodeMemoSlots bounds each memo: a few hundred KiB of records, many
// times what one request reads.
const decodeMemoSlots = 1 << 11

func newDecodeMemo[T any](private func(T) T) *decodeMemo[T] {
	return &decodeMemo[T]{seed: maphash.MakeSeed(), private: private}
}

var (
	deviceMemo = newDecodeMemo(func(d Device) Device { return d })
	tokenMemo  = newDecodeMemo(func(t Token) Token {
		t.SecretHash, t.Nonce, t.UIDs = slices.Clone(t.SecretHash), slices.Clone(t.Nonce), slices.Clone(t.UIDs)
		return t
	})
	jobMemo = newDecodeMemo(func(j Job) Job {
		j.Procs, j.GPUs = slices.Clone(j.Procs), slices.Clone(j.GPUs)
		return j
	})
	poolGPUMemo = newDecodeMemo(func(g PoolGPU) PoolGPU { return g })
)

// decode sets *v to the decoding of raw, as unmarshalJSON into a zero T would.
func (m *decodeMemo[T]) decode(bucket, key, raw []byte, v *T) error {
	s := &m.slots[maphash.Bytes(m.seed, raw)%decodeMemoSlots]
	s.mu.Lock()
	if s.raw != nil && bytes.Equal(s.raw, raw) {
		*v = m.private(s.decoded)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	var fresh T
	if err := unmarshalJSON(bucket, key, raw, &fresh); err != nil {
		return err
	}
	s.mu.Lock()
	s.raw = append(s.raw[:0], raw...) // raw may be bbolt's page: keep a copy
	s.decoded = fresh
	s.mu.Unlock()
	*v = m.private(fresh)
	return nil
}

// primeCheck makes prime decode what it is given and panic when the
// decoding differs from the value (set by the store's tests).
var primeCheck = false

// prime notes v as the decoding of raw, its encoding, so that the next read
// of the record just written decodes nothing. The caller vouches that
// decoding raw gives v back exactly (primeWritten checks what it can).
func (m *decodeMemo[T]) prime(raw []byte, v T) {
	if primeCheck {
		var fresh T
		if err := json.Unmarshal(raw, &fresh); err != nil || !reflect.DeepEqual(fresh, v) {
			panic(fmt.Sprintf("store: a primed %T is not its decoding (%v):\n  primed  %#v\n  decoded %#v", v, err, v, fresh))
		}
	}
	s := &m.slots[maphash.Bytes(m.seed, raw)%decodeMemoSlots]
	s.mu.Lock()
	s.raw = append(s.raw[:0], raw...)
	s.decoded = m.private(v) // the writer may go on changing v
	s.mu.Unlock()
}

// primeWritten primes the memo of a record type with a value putJSON just
// encoded as raw, when decoding gives it back exactly.
func primeWritten(raw []byte, v any) {
	switch p := v.(type) { // records are written as values or through pointers
	case *Token:
		v = *p
	case *Device:
		v = *p
	}
	switch v := v.(type) {
	case Token:
		if utf8.ValidString(v.Name) {
			tokenMemo.prime(raw, v)
		}
	case Device:
		if utf8.ValidString(v.Token) && utf8.ValidString(v.Model) && plainUTC(v.Created) && plainUTC(v.Idle) {
			deviceMemo.prime(raw, v)
		}
	}
}

// plainUTC reports whether t decodes from its JSON as it is: in UTC, with
// no monotonic clock reading.
func plainUTC(t time.Time) bool { return t.Location() == time.UTC && t == t.Round(0) }

// held counts the memo's filled slots, for tests.
func (m *decodeMemo[T]) held() int {
	n := 0
	for i := range m.slots {
		s := &m.slots[i]
		s.mu.Lock()
		if s.raw != nil {
			n++
		}
		s.mu.Unlock()
	}
	return n
}
