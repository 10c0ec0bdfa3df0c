package store

import (
	"bytes"
	"context"
	"sync"
)

// changeBroadcast wakes whoever waits for the next change: a channel that is
// closed, and replaced, at each change.
type changeBroadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// next is closed at the next change after the call.
func (b *changeBroadcast) next() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *changeBroadcast) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// JobsChanged is closed at the next committed change of jobs, the queue or
// devices, by this node or (seen by the watch) another: a waiter reads the
// store again then, rather than poll it.
func (r *Registry) JobsChanged() <-chan struct{} { return r.jobsChanged.next() }

// notifyingEngine fires changed after each commit that wrote jobs, the
// queue or devices.
type notifyingEngine struct {
	Engine
	changed *changeBroadcast
}

func (e *notifyingEngine) Update(ctx context.Context, fn func(Tx) error) error {
	var touched bool
	err := e.Engine.Update(ctx, func(tx Tx) error {
		w := &watchedTx{Tx: tx}
		err := fn(w)
		touched = w.touched
		return err
	})
	if err == nil && touched {
		e.changed.fire()
	}
	return err
}

// watchedTx is a Tx that notes writes to the buckets the queue depends on.
type watchedTx struct {
	Tx
	touched bool
}

func (t *watchedTx) note(bucket []byte) {
	if bytes.Equal(bucket, bucketJobs) || bytes.Equal(bucket, bucketQueue) || bytes.Equal(bucket, bucketDevices) || bytes.Equal(bucket, bucketTokens) || bytes.Equal(bucket, bucketGPUs) {
		t.touched = true
	}
}

func (t *watchedTx) Put(bucket, key, value []byte) error {
	t.note(bucket)
	return t.Tx.Put(bucket, key, value)
}

func (t *watchedTx) PutEphemeral(bucket, key, value []byte) error {
	t.note(bucket)
	return t.Tx.PutEphemeral(bucket, key, value)
}

func (t *watchedTx) Delete(bucket, key []byte) error {
	t.note(bucket)
	return t.Tx.Delete(bucket, key)
}

// borrow passes the engine's lending on, when it lends.
func (t *watchedTx) borrow(bucket, key []byte) []byte {
	if b, ok := t.Tx.(borrower); ok {
		return b.borrow(bucket, key)
	}
	return t.Tx.Get(bucket, key)
}
