package cgroup

import (
	"errors"
	"io"
	"os"
	"sync"
)

// keptFiles are cgroup files read every sample, each opened once and read
// again with pread: a tenth of the cost of opening it each time (kernfs
// renders the file afresh at offset 0).
type keptFiles struct {
	mu    sync.Mutex
	files map[string]*os.File // by path; closed by close
}

// read returns the whole content of path.
func (k *keptFiles) read(path string) ([]byte, error) {
	k.mu.Lock()
	f := k.files[path]
	if f == nil {
		var err error
		if f, err = os.Open(path); err != nil {
			k.mu.Unlock()
			return nil, err
		}
		if k.files == nil {
			k.files = map[string]*os.File{}
		}
		k.files[path] = f
	}
	k.mu.Unlock()
	for size := 1024; ; size *= 2 {
		buf := make([]byte, size)
		n, err := f.ReadAt(buf, 0) // one read: the file is rendered once per read at 0
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if n < size {
			return buf[:n], nil
		}
	}
}

// close closes every kept file; a later read opens them again.
func (k *keptFiles) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for p, f := range k.files {
		f.Close()
		delete(k.files, p)
	}
}
