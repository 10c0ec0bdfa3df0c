// Package fs serves the moreh tree over FUSE: one small node type per kind
// of file, each turning a file operation into one call of the registry or
// of the node's runtime (fs/node), rendering what reads return, and mapping
// failures to errnos through one table (kindErrno).
//
// No rule lives here: no limit, no permission decision beyond the modes the
// kernel checks, no store.Error built; and no bbolt or etcd import.
package fs

import (
	"context"
	"log/slog"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/store"
)

// Config is what the daemon hands the tree.
type Config struct {
	Node       *node.Runtime // this machine: jobs, processes, the pool's readings
	Version    string        // of this build: the client, the server and Moreh-SMI
	Server     string        // the server's version when another one serves the state (etcd); else Version
	AllowOther bool          // let every local user reach the mount
	Log        *slog.Logger
	Debug      bool // log every FUSE request
	Now        func() time.Time
	// RejectLogEvery is how often rejected secrets are summed up in the
	// log, per uid (default a minute).
	RejectLogEvery time.Duration
}

// tree is the state every node shares.
type tree struct {
	Config
	Registry *store.Registry // the node's, for the records the tree shows as they are
	tokens   *fusefs.Inode   // /moreh/tokens, set when the root is added
	rejects  *rejectLog      // rejected secrets, coalesced for the log
}

// staticTimeout is how long the kernel may cache names that never change.
const staticTimeout = time.Second

// Mount serves the tree on dir and returns once the kernel answers on it.
func Mount(dir string, cfg Config) (*fuse.Server, error) {
	server, _, err := mount(dir, cfg)
	return server, err
}

// mount is Mount, also returning the tree (for tests).
func mount(dir string, cfg Config) (*fuse.Server, *tree, error) {
	cfg = cfg.withDefaults()
	t := newTree(cfg)
	opts := &fusefs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      "moreh",
			Name:        "moreh",
			DirectMount: true, // root mounts with mount(2); others fall back to fusermount
			AllowOther:  cfg.AllowOther,
			Debug:       cfg.Debug,
			MaxWrite:    64 * 1024, // oversized commands must arrive whole to be refused whole
			// Replies come from memory: go-fuse's splice path would first
			// write each one into a pipe, then fall back to writev anyway.
			DisableSplice: true,
			// The kernel checks modes and owners: tokens/<name>/ is 0700 and
			// owned by whoever is bound to the token.
			Options: []string{"default_permissions"},
		},
		// Timeouts are set per entry: the defaults (0) keep dynamic names fresh.
		NullPermissions: true,
	}
	server, err := fusefs.Mount(dir, &rootDir{fixedDir: fixedDir{t: t}}, opts)
	if err != nil {
		return nil, nil, err
	}
	t.Registry.OnOwnerChange(t.ownersChanged)
	t.Registry.OnChange(t.changed)
	go func() { server.Wait(); t.rejects.close() }()
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return nil, nil, err
	}
	return server, t, nil
}

func newTree(cfg Config) *tree {
	cfg = cfg.withDefaults()
	return &tree{Config: cfg, Registry: cfg.Node.Registry(), rejects: newRejectLog(cfg.Log, cfg.RejectLogEvery)}
}

// withDefaults fills in what the caller left out.
func (cfg Config) withDefaults() Config {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Server == "" {
		cfg.Server = cfg.Version
	}
	return cfg
}

// readOnlyFile is a 0400 file of a token rendered at open, with its mode.
func (t *tree) readOnlyFile(o owned, render renderFunc) (fusefs.InodeEmbedder, uint32) {
	return &roFile{t: t, mode: 0o400, owned: o, render: render}, fuse.S_IFREG | 0o400
}

// keptFile is readOnlyFile for content that changes only on a commit: the
// kernel keeps it (see roFile.keep).
func (t *tree) keptFile(o owned, render renderFunc) (fusefs.InodeEmbedder, uint32) {
	return &roFile{t: t, mode: 0o400, owned: o, render: render, keep: true}, fuse.S_IFREG | 0o400
}

// commandFile is a file of a token whose writes are commands, with its
// mode; render is nil for a write-only file.
func (t *tree) commandFile(o owned, mode uint32, render renderFunc, command commandFunc) (fusefs.InodeEmbedder, uint32) {
	return &cmdFile{roFile: roFile{t: t, mode: mode, owned: o, render: render}, command: command}, fuse.S_IFREG | mode
}

// keptCommandFile is commandFile for content that changes only on a
// commit (every command commits): the kernel keeps it (see roFile.keep).
func (t *tree) keptCommandFile(o owned, mode uint32, render renderFunc, command commandFunc) (fusefs.InodeEmbedder, uint32) {
	return &cmdFile{roFile: roFile{t: t, mode: mode, owned: o, render: render, keep: true}, command: command}, fuse.S_IFREG | mode
}

// owned names the token a node belongs to by name and number: the name
// finds its records, the number tells it from a token created again under
// that name after a revoke. The zero owned is a node outside tokens/.
type owned struct {
	token  string
	number uint64 // 0: not checked
}

// admit answers whether the caller may make a request on a node of o
// (store.Admit): 0, EACCES or ESTALE. No errors line: shells ask all the
// time, and a stale node's failures must never reach a new token's errors.
func (t *tree) admit(ctx context.Context, o owned) syscall.Errno {
	if o.token == "" {
		return 0
	}
	return t.refusal(o, t.Registry.Admit(ctx, callerUID(ctx), o.token, o.number))
}

// live answers a read or write on an open file of o: 0, or ESTALE once its
// token is revoked. Whoever holds the file was admitted at its open.
func (t *tree) live(ctx context.Context, o owned) syscall.Errno {
	if o.token == "" {
		return 0
	}
	return t.refusal(o, t.Registry.Live(ctx, o.token, o.number))
}

func (t *tree) refusal(o owned, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	errno := errnoOf(err)
	if errno == syscall.EIO {
		t.Log.Error("request failed", "token", o.token, "err", err)
	}
	return errno
}

// callerToken returns the token the calling process is bound to.
func (t *tree) callerToken(ctx context.Context) (string, error) {
	return t.Registry.CallerToken(ctx, callerUID(ctx))
}

// caller is the process behind a request.
func caller(ctx context.Context) node.Caller {
	if c, ok := fuse.FromContext(ctx); ok {
		return node.Caller{UID: int(c.Uid), PID: int(c.Pid)}
	}
	return node.Caller{}
}

// callerUID is the uid of the process behind a request.
func callerUID(ctx context.Context) int {
	if c, ok := fuse.FromContext(ctx); ok {
		return int(c.Uid)
	}
	return 0
}

// fail records a failed operation in the errors file of token (the
// caller's when empty) and, for store failures, in the log; it returns the
// errno.
func (t *tree) fail(ctx context.Context, token, op, path string, err error) syscall.Errno {
	if store.KindOf(err) == store.KindInterrupted {
		return syscall.EINTR // the caller is gone: nobody reads the sentence
	}
	if token == "" {
		token, _ = t.callerToken(ctx)
	}
	if token != "" {
		var caller store.Caller
		if c, ok := fuse.FromContext(ctx); ok {
			caller = store.Caller{PID: c.Pid, UID: c.Uid}
		}
		t.Registry.Errors.Add(token, caller, op, path, err)
	}
	errno := errnoOf(err)
	if errno == syscall.EIO {
		t.Log.Error("operation failed", "op", op, "path", path, "token", token, "err", err)
	}
	return errno
}

// setAttr fills what stat shows of a node and returns how long the kernel
// may keep it: the same answer for every caller, so always cacheable.
// Every request on a token's node is admitted by the daemon (tree.admit);
// the modes only add the kernel's own check where one owner can carry it.
// A token's nodes belong to its one bound user, 0700/0600 as DESIGN.md
// gives them. While several users share a token (and with tokens off) root
// owns them and their modes are open to all: the kernel lets every caller
// through to the daemon, which refuses all but the token's users.
func (t *tree) setAttr(ctx context.Context, token string, mode uint32, out *fuse.Attr) time.Duration {
	out.Mode = mode
	out.Nlink = 1
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		out.Nlink = 2
	}
	out.Uid, out.Gid = 0, 0
	if token == "" {
		return staticTimeout
	}
	owner, err := t.Registry.TokenOwner(ctx, token)
	if err == nil && owner.Uniform && !owner.Everyone {
		out.Uid = uint32(owner.UID)
		return staticTimeout
	}
	out.Mode |= (mode & 0o700 >> 3) | (mode & 0o700 >> 6)
	if err != nil {
		return 0
	}
	return staticTimeout
}

// tokenEntryTimeout is how long the kernel may keep the name tokens/<token>:
// while the modes carry the check (one user), staticTimeout; while they are
// open to all (a shared token), 0, so that every walk from /moreh asks the
// daemon's Lookup, which admits only the token's users.
func (t *tree) tokenEntryTimeout(ctx context.Context, token string) time.Duration {
	if owner, err := t.Registry.TokenOwner(ctx, token); err == nil && owner.Uniform {
		return staticTimeout
	}
	return 0
}

// ownersChanged drops the kernel's cached attributes of the named tokens'
// nodes (OnOwnerChange): called after the change, never under a lock.
func (t *tree) ownersChanged(tokens []string) {
	if t.tokens == nil {
		return
	}
	for _, name := range tokens {
		if dir := t.tokens.GetChild(name); dir != nil {
			notifyTree(dir)
		}
		t.tokens.NotifyEntry(name) // a shared token's name is never kept: see tokenEntryTimeout
	}
}

// changed drops what the kernel keeps of what a commit changed (OnChange):
// called after the commit and before the call that made it returns, never
// under a lock of ours, so that no reader sees content older than a commit
// that returned. Entries of removed devices are dropped in the background:
// the kernel holds devices/ while its own rmdir runs (and drops that name
// itself).
func (t *tree) changed(c store.Changes) {
	if t.tokens == nil {
		return
	}
	if c.All {
		for _, dir := range t.tokens.Children() {
			notifyKept(dir, "current", "limit")
			if devs := dir.GetChild("devices"); devs != nil {
				for _, dev := range devs.Children() {
					notifyKept(dev, "model", "gpus", "env")
				}
			}
		}
		return
	}
	for _, name := range c.Tokens {
		if dir := t.tokens.GetChild(name); dir != nil {
			notifyKept(dir, "current", "limit")
		}
	}
	for _, d := range c.Devices {
		dir := t.tokens.GetChild(d.Token)
		if dir == nil {
			continue
		}
		devs := dir.GetChild("devices")
		if devs == nil {
			continue
		}
		id := formatUint(d.ID)
		if dev := devs.GetChild(id); dev != nil {
			notifyKept(dev, "model", "gpus", "env")
			if d.Removed {
				go devs.NotifyEntry(id)
			}
		}
	}
}

// notifyKept invalidates the named kept files of dir that the kernel knows:
// their generation first (a read under way renders again), then the
// kernel's attributes and pages.
func notifyKept(dir *fusefs.Inode, names ...string) {
	for _, name := range names {
		child := dir.GetChild(name)
		if child == nil {
			continue
		}
		switch f := child.Operations().(type) {
		case *roFile:
			f.drop()
		case *cmdFile:
			f.drop()
		default:
			child.NotifyContent(0, 0)
		}
	}
}

// notifyTree invalidates the attributes and cached content of n and of
// every node below it that the kernel knows.
func notifyTree(n *fusefs.Inode) {
	n.NotifyContent(0, 0)
	for _, child := range n.Children() {
		notifyTree(child)
	}
}

// kindErrno is DESIGN.md's errno table for the registry's failures.
var kindErrno = map[store.Kind]syscall.Errno{
	store.KindInvalid:      syscall.EINVAL,
	store.KindQuota:        syscall.EDQUOT,
	store.KindNoSpace:      syscall.ENOSPC,
	store.KindAgain:        syscall.EAGAIN,
	store.KindNotFound:     syscall.ENOENT,
	store.KindBusy:         syscall.EBUSY,
	store.KindExists:       syscall.EEXIST,
	store.KindNoProcess:    syscall.ESRCH,
	store.KindKeyRejected:  syscall.EKEYREJECTED,
	store.KindUnbound:      syscall.ENOKEY,
	store.KindNotPermitted: syscall.EPERM,
	store.KindDenied:       syscall.EACCES,
	store.KindInterrupted:  syscall.EINTR,
	store.KindExhausted:    syscall.EOVERFLOW,
	store.KindStale:        syscall.ESTALE,
}

// errnoOf maps a failure to its errno; anything unknown is a store failure.
func errnoOf(err error) syscall.Errno {
	if e, ok := kindErrno[store.KindOf(err)]; ok {
		return e
	}
	return syscall.EIO
}
