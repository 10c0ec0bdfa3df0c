package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moreh-io/moreh/store"
)

// fixedDir is embedded by every directory: it refuses, with EPERM and a line
// in errors, each change that the tree never allows (EACCES or ESTALE first
// to a caller the directory's token does not admit).
type fixedDir struct {
	fusefs.Inode
	t *tree
	owned
}

func (d *fixedDir) refuse(ctx context.Context, op, name string) syscall.Errno {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return errno
	}
	return d.t.fail(ctx, "", op, joinPath(d.Path(nil), name), store.ErrNeverAllowed)
}

var _ = (fusefs.NodeOpendirer)((*fixedDir)(nil))

// Opendir admits the caller to a token's directory (an fd passed or kept
// from before a revoke included); others open to all.
func (d *fixedDir) Opendir(ctx context.Context) syscall.Errno {
	return d.t.admit(ctx, d.owned)
}

var _ = (fusefs.NodeMkdirer)((*fixedDir)(nil))

func (d *fixedDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, d.refuse(ctx, "mkdir", name)
}

var _ = (fusefs.NodeRmdirer)((*fixedDir)(nil))

func (d *fixedDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	return d.refuse(ctx, "rmdir", name)
}

var _ = (fusefs.NodeCreater)((*fixedDir)(nil))

func (d *fixedDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, d.refuse(ctx, "create", name)
}

var _ = (fusefs.NodeMknoder)((*fixedDir)(nil))

func (d *fixedDir) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, d.refuse(ctx, "mknod", name)
}

var _ = (fusefs.NodeUnlinker)((*fixedDir)(nil))

func (d *fixedDir) Unlink(ctx context.Context, name string) syscall.Errno {
	return d.refuse(ctx, "unlink", name)
}

var _ = (fusefs.NodeRenamer)((*fixedDir)(nil))

func (d *fixedDir) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return d.refuse(ctx, "rename", name)
}

var _ = (fusefs.NodeSymlinker)((*fixedDir)(nil))

func (d *fixedDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, d.refuse(ctx, "symlink", name)
}

var _ = (fusefs.NodeLinker)((*fixedDir)(nil))

func (d *fixedDir) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, d.refuse(ctx, "link", name)
}

var _ = (fusefs.NodeSetattrer)((*fixedDir)(nil))

// Setattr refuses chmod, chown and utimes: modes say who may use the tree.
func (d *fixedDir) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return d.refuse(ctx, "setattr", "")
}

var _ = (fusefs.NodeFsyncer)((*fixedDir)(nil))

// Fsync of a directory succeeds: every change is committed when it returns.
func (d *fixedDir) Fsync(ctx context.Context, f fusefs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

// entries turns names into directory entries of one mode.
func entries(mode uint32, names ...string) []fuse.DirEntry {
	out := make([]fuse.DirEntry, len(names))
	for i, n := range names {
		out[i] = fuse.DirEntry{Name: n, Mode: mode}
	}
	return out
}

// joinPath joins names of the tree; the root's own path is "".
func joinPath(dir, name string) string {
	switch {
	case dir == "":
		return name
	case name == "":
		return dir
	}
	return dir + "/" + name
}

var _ = (fusefs.NodeSetxattrer)((*fixedDir)(nil))

func (d *fixedDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return d.refuse(ctx, "setxattr", "")
}

var _ = (fusefs.NodeRemovexattrer)((*fixedDir)(nil))

func (d *fixedDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return d.refuse(ctx, "removexattr", "")
}
