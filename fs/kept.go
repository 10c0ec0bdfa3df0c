package fs

import (
	"bytes"
	"context"
	"sync"
)

// keptContent is what a kept file knows of its content: what the kernel may
// hold of it, and its last rendering with the generation it was made in.
type keptContent struct {
	mu      sync.Mutex
	held    []byte // what reads gave the page cache since the last drop; nil: nothing
	last    []byte // the last rendering, valid while the file's generation is lastGen
	lastGen uint64
}

// hold notes data as what the page cache may hold from now on.
func (k *keptContent) hold(data []byte) {
	k.mu.Lock()
	k.held = data
	k.mu.Unlock()
}

// renderKept renders a kept file's content in generation gen, taken before
// it. Where this node is the store's only writer, every commit that changes
// the content bumps the generation first (tree.changed), so the rendering
// made in gen is the content while gen stands; with other writers (etcd)
// it renders at each open, which sees their commits before the watch does.
func (f *roFile) renderKept(ctx context.Context, gen uint64) ([]byte, error) {
	sole := f.t.Registry.SoleWriter()
	if sole {
		f.kept.mu.Lock()
		data, ok := f.kept.last, f.kept.last != nil && f.kept.lastGen == gen
		f.kept.mu.Unlock()
		if ok {
			return data, nil
		}
	}
	data, err := f.render(ctx)
	if err == nil && sole {
		f.kept.mu.Lock()
		f.kept.last, f.kept.lastGen = data, gen
		f.kept.mu.Unlock()
	}
	return data, err
}

// noteKept records data as the kept file's content; when it differs from
// what the kernel may hold (a commit this node was not told of yet: another
// node's, before the watch brings it), it drops the kernel's copy. Only
// from Open: a read holds the page that the drop would wait for.
func (f *roFile) noteKept(data []byte) {
	f.kept.mu.Lock()
	stale := f.kept.held != nil && !bytes.Equal(f.kept.held, data)
	f.kept.held = data
	if stale {
		f.gen.Add(1)
	}
	f.kept.mu.Unlock()
	if stale {
		f.NotifyContent(0, 0)
	}
}

// drop invalidates what the kernel keeps of the file after a commit that
// changed it: the generation first (a read under way renders again), then
// the kernel's attributes and pages; until a read fills them again, the
// kernel holds nothing an open would have to drop.
func (f *roFile) drop() {
	f.kept.mu.Lock()
	f.kept.held = nil
	f.gen.Add(1)
	f.kept.mu.Unlock()
	f.NotifyContent(0, 0)
}
