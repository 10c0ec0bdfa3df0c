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
	Sampler    *gpu.Sampler  // the probe's figures, refreshed in the background
	Procs      gpu.ProcFS    // the machine's processes, for jobs
	ResetGrace time.Duration // between SIGTERM and SIGKILL when a job is reset
	Version    string        // of this build: the client, the server and Moreh-SMI
	AllowOther bool          // let every local user reach the mount
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
	if cfg.Sampler == nil {
		cfg.Sampler = gpu.NewSampler(cfg.Probe, time.Second, cfg.Log)
	}
	if cfg.Procs.Root == "" {
		cfg.Procs.Root = "/proc"
	}
	if cfg.ResetGrace == 0 {
		cfg.ResetGrace = 5 * time.Second
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

// errnoError is a failure of the tree's own, with its errno and a sentence.
type errnoError struct {
	errno syscall.Errno
	msg   string
}

func (e *errnoError) Error() string { return e.msg }
func (e *errnoError) Unwrap() error { return e.errno }

var (
	// errPerm is the failure of an operation the tree never allows.
	errPerm = &errnoError{syscall.EPERM, "Operation not permitted: this tree only allows mkdir and rmdir in devices/ and writes to command files."}
	// errReadOnly is the failure of opening a read-only file for writing, or a write-only one for reading.
	errReadOnly = &errnoError{syscall.EACCES, "Permission denied: see the file's mode for what it allows."}
)

// errnoOf maps a failure to the errno DESIGN.md gives it.
func errnoOf(err error) syscall.Errno {
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
	case store.KindNoProcess:
		return syscall.ESRCH
	}
	return syscall.EIO
}

// perm is a DESIGN.md mode as this mount shows it: with one shared token
// every local user may use the tree, so owner bits are given to all.
func (t *tree) perm(mode uint32) uint32 {
	owner := mode & 0o700
	return owner | owner>>3 | owner>>6
}
