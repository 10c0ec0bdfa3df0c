package fs

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/store"
)

// waitFile is devices/<id>/job or devices/<id>/waiting: opened by a process
// of one of the device's jobs, a read blocks while that job waits in the
// queue, like a pipe's (EAGAIN instead with O_NONBLOCK, EINTR on a signal).
// job gives "job N\nstate running\n" once the job holds its GPUs; waiting
// streams the messages moreh-run prints, one each time the reason of the
// wait changes, then "[info] Moreh Job ID: N" and the end of the file.
type waitFile struct {
	fusefs.Inode
	t        *tree
	token    string
	id       uint64
	messages bool // the waiting file
}

var _ = (fusefs.NodeGetattrer)((*waitFile)(nil))

func (f *waitFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(f.t.setAttr(ctx, f.token, fuse.S_IFREG|0o400, &out.Attr))
	return 0
}

var _ = (fusefs.NodeOpener)((*waitFile)(nil))

// Open finds the opener's job: a process in no job of the device is ESRCH.
func (f *waitFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, f.t.fail(ctx, f.token, "open", f.Path(nil), store.ErrWrongMode)
	}
	job, err := f.t.Node.CallerJob(ctx, caller(ctx), f.token, f.id)
	if err != nil {
		return nil, 0, f.t.fail(ctx, f.token, "open", f.Path(nil), err)
	}
	return &waitHandle{f: f, job: job, nonblock: flags&syscall.O_NONBLOCK != 0}, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
}

var _ = (fusefs.NodeSetattrer)((*waitFile)(nil))

func (f *waitFile) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.t.fail(ctx, f.token, "setattr", f.Path(nil), store.ErrNeverAllowed)
}

// waitHandle is one open of a waitFile: what it has said so far.
type waitHandle struct {
	f        *waitFile
	job      uint64
	nonblock bool

	mu   sync.Mutex
	data []byte
	last string // the last message streamed
	done bool   // the job runs: nothing more comes
}

var _ = (fusefs.FileReader)((*waitHandle)(nil))

func (h *waitHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for off >= int64(len(h.data)) && !h.done {
		if err := h.more(ctx); err != nil {
			if store.KindOf(err) == store.KindAgain {
				return nil, syscall.EAGAIN
			}
			return nil, h.f.t.fail(ctx, h.f.token, "read", h.f.Path(nil), err)
		}
	}
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))]), 0
}

// more appends what comes next: the job's state once it runs, or (the
// waiting file) the next message; it waits for it unless O_NONBLOCK.
func (h *waitHandle) more(ctx context.Context) error {
	changed := func(w node.JobWait) bool {
		return w.Started() || h.f.messages && !w.Starting && waitMessage(w) != h.last
	}
	if h.nonblock {
		changed = func(node.JobWait) bool { return true }
	}
	w, err := h.f.t.Node.WaitJob(ctx, h.job, changed)
	switch {
	case err != nil:
		return err
	case w.Started() && h.f.messages:
		h.data, h.done = fmt.Appendf(h.data, startMessage, w.Job.ID), true
	case w.Started():
		h.data, h.done = jobState(w), true
	case h.f.messages && !w.Starting && waitMessage(w) != h.last:
		h.last = waitMessage(w)
		h.data = append(h.data, h.last...)
	default:
		return store.Errorf(store.KindAgain, "Job %d waits in the queue.", h.job)
	}
	return nil
}

var _ = (fusefs.FileFsyncer)((*waitHandle)(nil))

func (h *waitHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }
