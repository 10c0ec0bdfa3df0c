package fs

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/store"
)

// The floor of device creation through FUSE: the least any FUSE server can
// do for the same requests (mkdir of a model name, read current, rmdir of the
// id) while committing each mkdir and rmdir to a bbolt file, with the same
// shared commits as the tree's store (store.OpenBolt) but no registry rule.
// Its ratio of 16 creators to one is what FUSE and the disk allow on this
// machine, measured in the same run as the tree's.

// benchFloorToken is tokens/<name>: current and devices/.
type benchFloorToken struct {
	fusefs.Inode
	mu      sync.Mutex
	current uint64
}

// benchFloorDevices is tokens/<name>/devices: mkdir commits a key and names
// the directory by a new id; rmdir of an id deletes the key.
type benchFloorDevices struct {
	fusefs.Inode
	eng   store.Engine
	token *benchFloorToken
	next  *benchFloorIDs
}

// benchFloorIDs hands out ids to every token's devices.
type benchFloorIDs struct {
	mu sync.Mutex
	id uint64
}

func (n *benchFloorIDs) take() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.id++
	return n.id
}

var (
	_ = (fusefs.NodeMkdirer)((*benchFloorDevices)(nil))
	_ = (fusefs.NodeRmdirer)((*benchFloorDevices)(nil))
	_ = (fusefs.NodeLookuper)((*benchFloorDevices)(nil))
	_ = (fusefs.NodeGetattrer)((*benchFloorDevices)(nil))
)

func (d *benchFloorDevices) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o755
	return 0
}

func (d *benchFloorDevices) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if _, err := strconv.ParseUint(name, 10, 64); err != nil {
		return nil, syscall.ENOENT
	}
	out.Mode = fuse.S_IFDIR | 0o755
	return d.NewInode(ctx, &fusefs.Inode{}, fusefs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

func (d *benchFloorDevices) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	id := d.next.take()
	if err := d.eng.Update(ctx, func(tx store.Tx) error { return tx.Put([]byte("devices"), benchFloorKey(id), []byte(name)) }); err != nil {
		return nil, syscall.EIO
	}
	d.token.mu.Lock()
	d.token.current = id
	d.token.mu.Unlock()
	out.Mode = fuse.S_IFDIR | 0o755
	out.SetEntryTimeout(0) // the model name is not an entry afterwards
	return d.NewInode(ctx, &fusefs.Inode{}, fusefs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

func (d *benchFloorDevices) Rmdir(ctx context.Context, name string) syscall.Errno {
	id, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return syscall.ENOENT
	}
	if err := d.eng.Update(ctx, func(tx store.Tx) error { return tx.Delete([]byte("devices"), benchFloorKey(id)) }); err != nil {
		return syscall.EIO
	}
	return 0
}

func benchFloorKey(id uint64) []byte { return strconv.AppendUint(nil, id, 16) }

// benchFloorCurrent is tokens/<name>/current: the last id made, from memory.
type benchFloorCurrent struct {
	fusefs.Inode
	token *benchFloorToken
}

var (
	_ = (fusefs.NodeOpener)((*benchFloorCurrent)(nil))
	_ = (fusefs.NodeGetattrer)((*benchFloorCurrent)(nil))
)

func (f *benchFloorCurrent) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o644
	return 0
}

func (f *benchFloorCurrent) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	f.token.mu.Lock()
	data := strconv.AppendUint(nil, f.token.current, 10)
	f.token.mu.Unlock()
	return &snapshot{data: append(data, '\n')}, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
}

// benchFloorTokens is the root: tokens/<name>/{current,devices/} per name.
type benchFloorTokens struct {
	fusefs.Inode
	eng   store.Engine
	names []string
}

func (r *benchFloorTokens) OnAdd(ctx context.Context) {
	tokens := r.NewPersistentInode(ctx, &fusefs.Inode{}, fusefs.StableAttr{Mode: fuse.S_IFDIR})
	r.AddChild("tokens", tokens, false)
	ids := &benchFloorIDs{id: 1 << 32}
	for _, name := range r.names {
		tok := &benchFloorToken{}
		dir := tokens.NewPersistentInode(ctx, tok, fusefs.StableAttr{Mode: fuse.S_IFDIR})
		tokens.AddChild(name, dir, false)
		cur := dir.NewPersistentInode(ctx, &benchFloorCurrent{token: tok}, fusefs.StableAttr{Mode: fuse.S_IFREG})
		dir.AddChild("current", cur, false)
		devs := dir.NewPersistentInode(ctx, &benchFloorDevices{eng: r.eng, token: tok, next: ids}, fusefs.StableAttr{Mode: fuse.S_IFDIR})
		dir.AddChild("devices", devs, false)
	}
}

// benchCreateFloor mounts the floor for the named tokens over a bbolt file
// in dir (on the disk of the tree's store), with the tree's mount options
// and go-fuse's one-second timeouts; it returns the token directories. With
// debug, go-fuse logs every request to the standard logger.
func benchCreateFloor(b *testing.B, dir string, names []string, debug ...bool) []string {
	b.Helper()
	eng, err := store.OpenBolt(filepath.Join(dir, "floor.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	mnt := filepath.Join(dir, "create-floor")
	if err := syscall.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() }) // cleanups run last first: after the unmount
	benchMountFloor(b, mnt, &benchFloorTokens{eng: eng, names: names}, len(debug) > 0 && debug[0])
	dirs := make([]string, len(names))
	for i, name := range names {
		dirs[i] = filepath.Join(mnt, "tokens", name)
	}
	return dirs
}
