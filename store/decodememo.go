package store

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sync"
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
