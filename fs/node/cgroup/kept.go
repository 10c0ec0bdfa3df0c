package cgroup

import (
	"errors"
	"io"
	"os"
	"sync"
)

// keptFiles are cgroup files read every sample, each opened once and read
// again with pread into a buffer of its own: a tenth of the cost of opening
// it each time (kernfs renders the file afresh at offset 0), and nothing
// allocated per read.
type keptFiles struct {
	mu    sync.Mutex
	files map[string]*keptFile // by path; closed by close
}

type keptFile struct {
	mu  sync.Mutex // one read at a time into buf
	f   *os.File
	buf []byte
}

// parse reads the whole content of path and gives it to fn, which must
// not keep it.
func (k *keptFiles) parse(path string, fn func([]byte) error) error {
	k.mu.Lock()
	kf := k.files[path]
	if kf == nil {
		f, err := os.Open(path)
		if err != nil {
			k.mu.Unlock()
			return err
		}
		if k.files == nil {
			k.files = map[string]*keptFile{}
		}
		kf = &keptFile{f: f, buf: make([]byte, 1024)}
		k.files[path] = kf
	}
	k.mu.Unlock()
	kf.mu.Lock()
	defer kf.mu.Unlock()
	for {
		n, err := kf.f.ReadAt(kf.buf, 0) // one read: the file is rendered once per read at 0
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if n < len(kf.buf) {
			return fn(kf.buf[:n])
		}
		kf.buf = make([]byte, 2*len(kf.buf))
	}
}

// close closes every kept file; a later read opens them again.
func (k *keptFiles) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for p, kf := range k.files {
		kf.mu.Lock()
		kf.f.Close()
		kf.mu.Unlock()
		delete(k.files, p)
	}
}
