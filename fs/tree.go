// Package fs serves the moreh tree over FUSE: thin nodes that turn file
// operations into registry operations and render what reads return.
package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// Config is what the daemon hands the tree.
type Config struct {
	Registry   *store.Registry
	Probe      gpu.Probe
	Version    string // of this build: the client, the server and Moreh-SMI
	AllowOther bool   // let every local user reach the mount
	Log        *slog.Logger
	Debug      bool // log every FUSE request
	Now        func() time.Time
}

// tree is the state every node shares.
type tree struct {
	Config
}

// staticTimeout is how long the kernel may cache names that never change.
const staticTimeout = time.Second

// maxWrite is the largest command one write may carry.
const maxWrite = 4096

// Mount serves the tree on dir and returns once the kernel answers on it.
func Mount(dir string, cfg Config) (*fuse.Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &tree{Config: cfg}
	opts := &fusefs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      "moreh",
			Name:        "moreh",
			DirectMount: true, // root mounts with mount(2); others fall back to fusermount
			AllowOther:  cfg.AllowOther,
			Debug:       cfg.Debug,
			MaxWrite:    64 * 1024, // oversized commands must arrive whole to be refused whole
		},
		// Timeouts are set per entry: the defaults (0) keep dynamic names fresh.
		NullPermissions: true,
	}
	server, err := fusefs.Mount(dir, &rootDir{fixedDir: fixedDir{t: t}}, opts)
	if err != nil {
		return nil, err
	}
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return nil, err
	}
	return server, nil
}

// callerToken returns the token the calling process is bound to. Until
// tokens arrive every caller is bound to the default token.
func (t *tree) callerToken(ctx context.Context) string {
	return t.Registry.DefaultToken()
}

// fail records a failed operation in the token's errors file (and the log,
// for store failures) and returns its errno.
func (t *tree) fail(token, op, path string, err error) syscall.Errno {
	t.Registry.Errors.Add(token, op, path, err)
	errno := errnoOf(err)
	if errno == syscall.EIO {
		t.Log.Error("operation failed", "op", op, "path", path, "token", token, "err", err)
	}
	return errno
}

// errPerm is the failure of an operation the tree never allows.
var errPerm = &permError{}

type permError struct{}

func (*permError) Error() string {
	return "Operation not permitted: this tree only allows mkdir and rmdir in devices/ and writes to command files."
}

// errnoOf maps a registry failure to the errno DESIGN.md gives it.
func errnoOf(err error) syscall.Errno {
	if errors.Is(err, errPerm) {
		return syscall.EPERM
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch store.KindOf(err) {
	case store.KindInvalid:
		return syscall.EINVAL
	case store.KindQuota:
		return syscall.EDQUOT
	case store.KindNoSpace:
		return syscall.ENOSPC
	case store.KindAgain:
		return syscall.EAGAIN
	case store.KindNotFound:
		return syscall.ENOENT
	case store.KindBusy:
		return syscall.EBUSY
	case store.KindExists:
		return syscall.EEXIST
	}
	return syscall.EIO
}

// perm is a DESIGN.md mode as this mount shows it: with one shared token
// every local user may use the tree, so owner bits are given to all.
func (t *tree) perm(mode uint32) uint32 {
	owner := mode & 0o700
	return owner | owner>>3 | owner>>6
}
