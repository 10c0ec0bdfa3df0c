package fs

import (
	"context"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/store"
)

// rootDir is /moreh: fixed files, the per-caller links and tokens/.
type rootDir struct {
	fixedDir
}

var _ = (fusefs.NodeOnAdder)((*rootDir)(nil))

func (r *rootDir) OnAdd(ctx context.Context) {
	t := r.t
	static := func(name string, render renderFunc, keep bool) {
		f := &roFile{t: t, mode: 0o444, render: render, keep: keep}
		r.AddChild(name, r.NewPersistentInode(ctx, f, fusefs.StableAttr{Mode: fuse.S_IFREG}), false)
	}
	// README, version and models never change while the daemon runs: kept.
	static("README", func(context.Context) ([]byte, error) { return []byte(readmeText), nil }, true)
	static("version", t.renderVersion, true)
	static("models", func(context.Context) ([]byte, error) { return renderModels(), nil }, true)
	static("pool", t.renderPool, false)
	static("pool.table", t.renderPoolTable, false)
	static("queue", t.renderQueue, false)
	static("queue.table", t.renderQueueTable, false)
	// node_exporter's textfile collector judges staleness by the mtime.
	metrics := &metricsFile{roFile{t: t, mode: 0o444, mtime: t.Node.SampledAt}}
	r.AddChild("metrics", r.NewPersistentInode(ctx, metrics, fusefs.StableAttr{Mode: fuse.S_IFREG}), false)
	r.AddChild("query-gpu", r.NewPersistentInode(ctx, &queryGPUDir{fixedDir{t: t}}, fusefs.StableAttr{Mode: fuse.S_IFDIR}), false)
	bind := &cmdFile{roFile: roFile{t: t, mode: 0o222}, command: t.bindCaller}
	r.AddChild("token", r.NewPersistentInode(ctx, bind, fusefs.StableAttr{Mode: fuse.S_IFREG}), false)
	admin := &adminDir{rootOnlyDir{fixedDir{t: t}}}
	r.AddChild("admin", r.NewPersistentInode(ctx, admin, fusefs.StableAttr{Mode: fuse.S_IFDIR}), false)
	tokens := &tokensDir{fixedDir: fixedDir{t: t}, known: map[string]uint64{}}
	tokens.recent = newRecentEntries(maxKernelTokens, func(name string) {
		tokens.NotifyEntry(name) // ENOENT when the kernel had let it go already
	})
	if known, err := t.Registry.TokenNumbers(ctx); err == nil {
		tokens.known = known
	}
	t.tokens = r.NewPersistentInode(ctx, tokens, fusefs.StableAttr{Mode: fuse.S_IFDIR})
	r.AddChild("tokens", t.tokens, false)
	for _, name := range []string{"devices", "current", "status"} {
		link := &callerLink{t: t, name: name}
		r.AddChild(name, r.NewPersistentInode(ctx, link, fusefs.StableAttr{Mode: fuse.S_IFLNK}), false)
	}
}

var _ = (fusefs.NodeGetattrer)((*rootDir)(nil))

func (r *rootDir) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o755
	out.SetTimeout(staticTimeout)
	return 0
}

var _ = (fusefs.NodeLookuper)((*rootDir)(nil))

// Lookup finds the root's fixed entries, whose names and attributes never
// change: the kernel may keep them for staticTimeout.
func (r *rootDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	child := r.GetChild(name)
	if child == nil {
		return nil, syscall.ENOENT
	}
	if ga, ok := child.Operations().(fusefs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
		out.Attr = a.Attr
	}
	out.SetEntryTimeout(staticTimeout)
	out.SetAttrTimeout(staticTimeout)
	return child, 0
}

// callerLink is a per-caller link such as /moreh/devices → tokens/<name>/devices,
// resolved for whoever follows it, as /proc/self is.
type callerLink struct {
	fusefs.Inode
	t    *tree
	name string
}

var _ = (fusefs.NodeReadlinker)((*callerLink)(nil))

// Readlink fails with ENOKEY ("Required key not available") for a caller
// bound to no token.
func (l *callerLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	token, err := l.t.callerToken(ctx)
	if err != nil {
		return nil, errnoOf(err)
	}
	return []byte("tokens/" + token + "/" + l.name), 0
}

var _ = (fusefs.NodeGetattrer)((*callerLink)(nil))

func (l *callerLink) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFLNK | 0o777 // the same for every caller; only the target differs
	out.SetTimeout(staticTimeout)
	return 0
}

// tokensDir is /moreh/tokens: one directory per token.
type tokensDir struct {
	fixedDir
	mu     sync.Mutex
	known  map[string]uint64 // token name → number, so errors stay readable while the store fails
	recent *recentEntries    // the token directories the kernel may keep
}

var _ = (fusefs.NodeLookuper)((*tokensDir)(nil))

func (d *tokensDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	switch err := d.t.Registry.LookupToken(ctx, callerUID(ctx), name); {
	case store.KindOf(err) == store.KindDenied:
		return nil, errnoOf(err) // asked by ls and shells all the time: no errors line
	case err != nil:
		return nil, d.t.fail(ctx, "", "lookup", "tokens/"+name, err)
	}
	number, errno := d.tokenNumber(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	d.recent.touch(name)
	tok := &tokenDir{fixedDir: fixedDir{t: d.t, owned: owned{token: name, number: number}}}
	out.SetAttrTimeout(d.t.setAttr(ctx, name, fuse.S_IFDIR|0o700, &out.Attr))
	out.SetEntryTimeout(d.t.tokenEntryTimeout(ctx, name)) // a revoke or a change of users drops it at once (ownersChanged)
	return d.NewInode(ctx, tok, fusefs.StableAttr{Mode: fuse.S_IFDIR, Ino: tokenIno(number, 0)}), 0
}

// tokenNumber finds a token in the store, or in memory when the store fails.
func (d *tokensDir) tokenNumber(ctx context.Context, name string) (uint64, syscall.Errno) {
	tok, err := d.t.Registry.Token(ctx, name)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err == nil:
		d.known[name] = tok.Number
		return tok.Number, 0
	case store.KindOf(err) == store.KindNotFound:
		delete(d.known, name)
		return 0, syscall.ENOENT
	}
	if n, ok := d.known[name]; ok {
		return n, 0
	}
	return 0, d.t.fail(ctx, "", "lookup", "tokens/"+name, err)
}

var _ = (fusefs.NodeReaddirer)((*tokensDir)(nil))

func (d *tokensDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	names, err := d.t.Registry.ListedTokens(ctx, callerUID(ctx))
	if err != nil {
		return nil, d.t.fail(ctx, "", "readdir", "tokens", err)
	}
	return fusefs.NewListDirStream(entries(fuse.S_IFDIR, names...)), 0
}

var _ = (fusefs.NodeGetattrer)((*tokensDir)(nil))

func (d *tokensDir) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o755
	out.SetTimeout(staticTimeout)
	return 0
}

// Inode numbers of dynamic nodes: stable, so the kernel and go-fuse agree on
// identity across lookups. Automatic numbers start at 2^63 and never collide.
const (
	tokenInoBase  = 1 << 56
	deviceInoBase = 2 << 56
)

// tokenIno numbers a token's directory (k=0), its entries (k=1…127) and
// its admin/tokens/ nodes (k=128…255). Two nodes must never share a number:
// go-fuse hands out the node it already has for a number it knows.
func tokenIno(number uint64, k uint64) uint64 { return tokenInoBase | number<<8 | k }

// deviceIno numbers a device's directory (k=0) and its files (k=1…255);
// device ids stay below 2^48 (store.MaxDeviceID), inside their base.
func deviceIno(id uint64, k uint64) uint64 { return deviceInoBase | id<<8 | k }

// adminTokenIno is the first of a token's admin/tokens/ inode offsets.
const adminTokenIno = 128
