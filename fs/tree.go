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

// readOnlyFile is a 0400 file of token rendered at open, with its mode.
func (t *tree) readOnlyFile(token string, render renderFunc) (fusefs.InodeEmbedder, uint32) {
	return &roFile{t: t, mode: 0o400, token: token, render: render}, fuse.S_IFREG | 0o400
}

// commandFile is a file of token whose writes are commands, with its mode;
// render is nil for a write-only file.
func (t *tree) commandFile(token string, mode uint32, render renderFunc, command commandFunc) (fusefs.InodeEmbedder, uint32) {
	return &cmdFile{roFile: roFile{t: t, mode: mode, token: token, render: render}, command: command}, fuse.S_IFREG | mode
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
// may keep it. A token's nodes belong to its one bound user for every
// caller, so they are cached and default_permissions lets only that user
// (and root) in; while several users share a token, each caller sees itself
// as the owner (as /proc/self does), others root, and nothing is cached.
// With tokens off, root owns them and their modes are open to everyone.
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
	c, ok := fuse.FromContext(ctx)
	if owner, err := t.Registry.TokenOwner(ctx, token); err == nil && owner.Uniform {
		if owner.Everyone {
			out.Mode |= (mode & 0o700 >> 3) | (mode & 0o700 >> 6)
		}
		out.Uid = uint32(owner.UID)
		if ok && c.Uid == out.Uid {
			out.Gid = c.Gid // the group shows no permission bits, so any caller's answer may be cached
		}
		return staticTimeout
	}
	if ok {
		if own, err := t.Registry.CallerToken(ctx, int(c.Uid)); err == nil && own == token {
			out.Uid, out.Gid = c.Uid, c.Gid
		}
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
			notifyAttrs(dir)
		}
	}
}

// notifyAttrs invalidates the attributes of n and of every node below it
// that the kernel knows (offset -1: attributes only, no content).
func notifyAttrs(n *fusefs.Inode) {
	n.NotifyContent(-1, 0)
	for _, child := range n.Children() {
		notifyAttrs(child)
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
}

// errnoOf maps a failure to its errno; anything unknown is a store failure.
func errnoOf(err error) syscall.Errno {
	if e, ok := kindErrno[store.KindOf(err)]; ok {
		return e
	}
	return syscall.EIO
}
