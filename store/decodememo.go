package store

import (
	"slices"
	"sync"
)

// decodeMemo keeps the decoding of records by their bytes: decoding JSON is
// most of the cost of a read, and a record is read far more often than it
// changes. A decoding depends on nothing but the bytes, so an entry can never
// be stale, whichever engine or registry the bytes came from.
type decodeMemo[T any] struct {
	mu      sync.Mutex
	decoded map[string]T // by the record's bytes
	// private copies what a caller gets, so that it may change it freely.
	private func(T) T
}

// decodeMemoMax bounds each memo; past it, it starts over (re-decoding is
// all that costs). It holds the records of a store of 10,000 devices.
const decodeMemoMax = 1 << 14

var (
	deviceMemo = decodeMemo[Device]{private: func(d Device) Device { return d }}
	tokenMemo  = decodeMemo[Token]{private: func(t Token) Token {
		t.SecretHash, t.Nonce, t.UIDs = slices.Clone(t.SecretHash), slices.Clone(t.Nonce), slices.Clone(t.UIDs)
		return t
	}}
	jobMemo = decodeMemo[Job]{private: func(j Job) Job {
		j.Procs, j.GPUs = slices.Clone(j.Procs), slices.Clone(j.GPUs)
		return j
	}}
	poolGPUMemo = decodeMemo[PoolGPU]{private: func(g PoolGPU) PoolGPU { return g }}
)

// decode sets *v to the decoding of raw, as unmarshalJSON into a zero T would.
func (m *decodeMemo[T]) decode(bucket, key, raw []byte, v *T) error {
	m.mu.Lock()
	known, ok := m.decoded[string(raw)] // no allocation: the conversion is only a lookup key
	m.mu.Unlock()
	if ok {
		*v = m.private(known)
		return nil
	}
	var fresh T
	if err := unmarshalJSON(bucket, key, raw, &fresh); err != nil {
		return err
	}
	m.mu.Lock()
	if len(m.decoded) >= decodeMemoMax {
		clear(m.decoded)
	}
	if m.decoded == nil {
		m.decoded = map[string]T{}
	}
	m.decoded[string(raw)] = fresh
	m.mu.Unlock()
	*v = m.private(fresh)
	return nil
}
