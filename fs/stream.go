package fs

import (
	"context"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// chunker writes a file's content in order, a chunk per call of more,
// from what it was made of: the records of one snapshot.
type chunker interface {
	// more appends the next chunk to b; false once the content is whole.
	more(b []byte) ([]byte, bool)
}

// stream is an open file whose content is written as it is read: it
// keeps only the bytes around the reader's offset. A read before them
// writes the content again from the start, from the same records.
type stream struct {
	mu      sync.Mutex
	restart func() chunker
	c       chunker
	buf     []byte // the content from start on
	start   int64
	going   bool // c has more
}

func newStream(restart func() chunker) *stream {
	return &stream{restart: restart, c: restart(), going: true}
}

var _ = (fusefs.FileReader)((*stream)(nil))

func (s *stream) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < s.start {
		s.c, s.buf, s.start, s.going = s.restart(), s.buf[:0], 0, true
	}
	end := off + int64(len(dest))
	for s.going && s.start+int64(len(s.buf)) < end {
		if drop := min(off-s.start, int64(len(s.buf))); drop > 0 { // what was read is not read again
			s.buf = append(s.buf[:0], s.buf[drop:]...)
			s.start += drop
		}
		s.buf, s.going = s.c.more(s.buf)
	}
	lo := off - s.start
	if lo >= int64(len(s.buf)) {
		return fuse.ReadResultData(nil), 0
	}
	// A copy: the next read may move buf while the kernel is answered.
	n := copy(dest, s.buf[lo:min(int64(len(s.buf)), end-s.start)])
	return fuse.ReadResultData(dest[:n]), 0
}

var _ = (fusefs.FileFsyncer)((*stream)(nil))

// Fsync succeeds, as on every open file of the tree (snapshot.Fsync).
func (s *stream) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }
