package fs

import (
	"context"
	"sync"

	"github.com/moreh-io/moreh/fs/node"
)

// sampledFile keeps the last rendering of a file that joins store records
// with the latest sample (status, status.json, devices.table): the same
// bytes until a commit, a new sample, or the clock's next second, which its
// header shows. Where other nodes write the store too (etcd), it renders at
// each open, which sees their commits before the watch brings them.
type sampledFile struct {
	t      *tree
	render renderFunc
	mu     sync.Mutex
	stamp  node.Stamp
	second int64
	data   []byte // nil: none kept
}

// sampled wraps render in a sampledFile of its own.
func (t *tree) sampled(render renderFunc) renderFunc {
	return (&sampledFile{t: t, render: render}).read
}

// read is the kept rendering when nothing it shows can have changed, or a
// new one. The stamp is taken before rendering: a change meanwhile makes the
// next reader render again.
func (f *sampledFile) read(ctx context.Context) ([]byte, error) {
	if !f.t.Registry.SoleWriter() {
		return f.render(ctx)
	}
	stamp, second := f.t.Node.Stamp(), f.t.Now().Unix()
	f.mu.Lock()
	if f.data != nil && f.stamp == stamp && f.second == second {
		data := f.data
		f.mu.Unlock()
		return data, nil // never written to: handles share it
	}
	f.mu.Unlock()
	data, err := f.render(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.stamp, f.second, f.data = stamp, second, data
	f.mu.Unlock()
	return data, nil
}
