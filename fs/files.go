package fs

import (
	"context"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moreh-io/moreh/store"
)

// renderFunc produces a file's whole content for one open.
type renderFunc func(ctx context.Context) ([]byte, error)

// snapshot is an open file: its content, fixed at open so a reader never
// sees half an update.
type snapshot struct {
	data []byte
	t    *tree
	from owned   // the token of the file it was opened on
	kept *roFile // the file, when its content is kept in the page cache
	gen  uint64  // kept's generation that data was rendered in
}

var _ = (fusefs.FileReader)((*snapshot)(nil))

func (s *snapshot) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if errno := s.t.live(ctx, s.from); errno != 0 {
		return nil, errno
	}
	if s.kept != nil {
		// What a read returns may stay in the page cache for later opens:
		// never content from before the last commit that changed it.
		if gen := s.kept.gen.Load(); gen != s.gen {
			data, err := s.kept.renderKept(ctx, gen)
			if err != nil {
				return nil, s.t.fail(ctx, s.from.token, "read", s.kept.Path(nil), err)
			}
			s.data, s.gen = data, gen
			s.kept.kept.hold(data) // what this read puts in the page cache
		}
	}
	if off >= int64(len(s.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(s.data[off:min(int64(len(s.data)), off+int64(len(dest)))]), 0
}

var _ = (fusefs.FileFsyncer)((*snapshot)(nil))

// Fsync (and fdatasync) succeed on every open file: a command is committed
// before its write returns, and a snapshot has nothing to flush, so
// `dd conv=fsync` reports the command that took effect as a success.
func (s *snapshot) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

// roFile is a read-only file rendered at open, like a /proc file.
type roFile struct {
	fusefs.Inode
	t      *tree
	mode   uint32 // permission bits, as DESIGN.md gives them
	owned         // the token it belongs to; none for the files at the root
	render renderFunc
	mtime  func() time.Time // when what it shows was read; nil: no time
	// keep: its content changes only on a commit, so the kernel keeps it
	// (attributes with the size, and the content: FOPEN_KEEP_CACHE) until
	// tree.changed invalidates it, which bumps gen first.
	keep bool
	gen  atomic.Uint64
	kept keptContent
}

var _ = (fusefs.NodeGetattrer)((*roFile)(nil))

// Getattr reports size 0 as /proc does: the content exists only once opened.
func (f *roFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := f.t.admit(ctx, f.owned); errno != 0 {
		return errno
	}
	out.SetTimeout(f.t.setAttr(ctx, f.token, fuse.S_IFREG|f.mode, &out.Attr))
	if errno := keptSize(ctx, f, &out.Attr); errno != 0 {
		return errno
	}
	if f.mtime != nil {
		out.SetTimes(nil, ptr(f.mtime()), nil)
	}
	return 0
}

// keptSize fills in the size of a kept file: the page cache reads up to it
// (other files show 0, as /proc's do). A failed render fails the request
// (an interrupted one too): a size the kernel would keep must be true.
func keptSize(ctx context.Context, node fusefs.InodeEmbedder, out *fuse.Attr) syscall.Errno {
	var f *roFile
	switch n := node.(type) {
	case *roFile:
		f = n
	case *cmdFile:
		f = &n.roFile
	}
	if f == nil || !f.keep {
		return 0
	}
	data, err := f.renderKept(ctx, f.gen.Load())
	if err != nil {
		return f.t.refusal(f.owned, err)
	}
	out.Size = uint64(len(data))
	return 0
}

func ptr[T any](v T) *T { return &v }

var _ = (fusefs.NodeOpener)((*roFile)(nil))

func (f *roFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if errno := f.t.admit(ctx, f.owned); errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, f.t.fail(ctx, f.token, "open", f.Path(nil), store.ErrWrongMode)
	}
	return f.open(ctx, flags)
}

// open renders the content for a reader; a kept file is read through the
// page cache only when opened read-only (a writer's pages would be locked
// while its command commits and invalidates them).
func (f *roFile) open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	gen := f.gen.Load() // before rendering: a commit after it makes Read render again
	var data []byte
	var err error
	if f.keep {
		data, err = f.renderKept(ctx, gen)
	} else {
		data, err = f.render(ctx)
	}
	if err != nil {
		return nil, 0, f.t.fail(ctx, f.token, "read", f.Path(nil), err)
	}
	s := &snapshot{data: data, t: f.t, from: f.owned}
	if f.keep {
		f.noteKept(data)
	}
	if f.keep && flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		s.kept, s.gen = f, gen
		return s, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	return s, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
}

var _ = (fusefs.NodeSetxattrer)((*roFile)(nil))

func (f *roFile) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if errno := f.t.admit(ctx, f.owned); errno != 0 {
		return errno
	}
	return f.t.fail(ctx, f.token, "setxattr", f.Path(nil), store.ErrNeverAllowed)
}

var _ = (fusefs.NodeRemovexattrer)((*roFile)(nil))

func (f *roFile) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if errno := f.t.admit(ctx, f.owned); errno != 0 {
		return errno
	}
	return f.t.fail(ctx, f.token, "removexattr", f.Path(nil), store.ErrNeverAllowed)
}

var _ = (fusefs.NodeSetattrer)((*roFile)(nil))

func (f *roFile) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := f.t.admit(ctx, f.owned); errno != 0 {
		return errno
	}
	return f.t.fail(ctx, f.token, "setattr", f.Path(nil), store.ErrNeverAllowed)
}

// commandFunc carries out one command written to a file.
type commandFunc func(ctx context.Context, command string) error

// cmdFile is a file whose writes are commands: one write(2) is one command,
// at most store.MaxCommand bytes, one trailing newline ignored.
type cmdFile struct {
	roFile
	command commandFunc
}

var _ = (fusefs.NodeOpener)((*cmdFile)(nil))

// Open accepts writers too; O_TRUNC is a no-op since content is rendered.
func (f *cmdFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if errno := f.t.admit(ctx, f.owned); errno != 0 {
		return nil, 0, errno
	}
	switch {
	case flags&syscall.O_ACCMODE == syscall.O_WRONLY:
		return &snapshot{t: f.t, from: f.owned}, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
	case f.render == nil: // write-only, like reset
		return nil, 0, f.t.fail(ctx, f.token, "open", f.Path(nil), store.ErrWrongMode)
	}
	return f.open(ctx, flags)
}

var _ = (fusefs.NodeSetattrer)((*cmdFile)(nil))

// Setattr allows the truncate of `echo ID > file` and refuses the rest.
func (f *cmdFile) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := f.t.admit(ctx, f.owned); errno != 0 {
		return errno
	}
	if sz, ok := in.GetSize(); ok && sz == 0 && in.Valid&^(fuse.FATTR_SIZE|fuse.FATTR_FH|fuse.FATTR_LOCKOWNER|fuse.FATTR_MTIME|fuse.FATTR_CTIME|fuse.FATTR_MTIME_NOW) == 0 {
		out.SetTimeout(f.t.setAttr(ctx, f.token, fuse.S_IFREG|f.mode, &out.Attr))
		return 0
	}
	return f.roFile.Setattr(ctx, fh, in, out)
}

var _ = (fusefs.NodeWriter)((*cmdFile)(nil))

func (f *cmdFile) Write(ctx context.Context, fh fusefs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := f.t.live(ctx, f.owned); errno != 0 {
		return 0, errno
	}
	command, err := store.ParseCommand(data)
	if err == nil {
		err = f.command(ctx, command)
	}
	if err != nil {
		return 0, f.t.fail(ctx, f.token, "write", f.Path(nil), err)
	}
	return uint32(len(data)), 0
}
