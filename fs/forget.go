package fs

import (
	"container/list"
	"sync"
)

// recentEntries bounds what the kernel keeps of a large directory
// (tokens/): the maxEntries names looked up most recently. Past them, the
// oldest is dropped from the kernel's cache, with everything cached below
// it, so that the kernel forgets its inodes and the daemon frees them: a
// walk of every token costs the daemon memory for the last few hundred,
// not for all. A name dropped is only looked up again when next used.
type recentEntries struct {
	max    int
	forget func(name string) // drops name from the kernel's cache; may wait for the kernel

	mu       sync.Mutex
	order    *list.List               // of names, the most recent first
	at       map[string]*list.Element // each name's place in order
	dropping []string                 // names to drop from the kernel's cache
	dropper  bool                     // a goroutine drops them
}

// maxKernelTokens is how many token directories the kernel may keep: many
// times the tokens that use a node at once.
const maxKernelTokens = 256

func newRecentEntries(max int, forget func(name string)) *recentEntries {
	return &recentEntries{max: max, forget: forget, order: list.New(), at: map[string]*list.Element{}}
}

// touch notes a lookup of name, and drops the oldest name past the bound.
// It never waits for the kernel: a lookup in the directory may be what the
// kernel's invalidation waits for.
func (r *recentEntries) touch(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.at[name]; ok {
		r.order.MoveToFront(e)
		return
	}
	r.at[name] = r.order.PushFront(name)
	if r.order.Len() <= r.max {
		return
	}
	oldest := r.order.Back()
	r.order.Remove(oldest)
	delete(r.at, oldest.Value.(string))
	r.dropping = append(r.dropping, oldest.Value.(string))
	if !r.dropper {
		r.dropper = true
		go r.drop()
	}
}

// drop tells the kernel to forget the names in dropping, outside the lock
// (go-fuse's Notify* wait for the kernel), until none is left.
func (r *recentEntries) drop() {
	for {
		r.mu.Lock()
		names := r.dropping
		r.dropping = nil
		if len(names) == 0 {
			r.dropper = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		for _, name := range names {
			r.forget(name)
		}
	}
}

// held counts the names kept, for tests.
func (r *recentEntries) held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}
