package store

import (
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
