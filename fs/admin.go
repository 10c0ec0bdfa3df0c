package fs

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/store"
)

// bindCaller is a write to /moreh/token: the caller's uid is bound to the
// token whose secret it is. The secret is never logged.
func (t *tree) bindCaller(ctx context.Context, secret string) error {
	uid := callerUID(ctx)
	name, err := t.Registry.Bind(ctx, uid, secret)
	if store.KindOf(err) == store.KindKeyRejected {
		t.rejects.add(uid, err) // coalesced: guessing cannot flood the log
	}
	if err != nil {
		return err
	}
	t.Log.Info("uid bound to token", "uid", uid, "token", name)
	return nil
}

// rootOnlyDir is a directory only root may enter: 0700 and root's.
type rootOnlyDir struct {
	fixedDir
}

var _ = (fusefs.NodeGetattrer)((*rootOnlyDir)(nil))

func (d *rootOnlyDir) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(d.t.setAttr(ctx, "", fuse.S_IFDIR|0o700, &out.Attr))
	return 0
}

// adminDir is /moreh/admin: it holds tokens/.
type adminDir struct {
	rootOnlyDir
}

var _ = (fusefs.NodeOnAdder)((*adminDir)(nil))

func (d *adminDir) OnAdd(ctx context.Context) {
	tokens := &adminTokensDir{rootOnlyDir: rootOnlyDir{fixedDir{t: d.t}}}
	d.AddChild("tokens", d.NewPersistentInode(ctx, tokens, fusefs.StableAttr{Mode: fuse.S_IFDIR}), false)
}

// adminTokensDir is /moreh/admin/tokens: mkdir NAME creates a token, rmdir
// NAME revokes it.
type adminTokensDir struct {
	rootOnlyDir
}

var _ = (fusefs.NodeLookuper)((*adminTokensDir)(nil))

func (d *adminTokensDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	v, err := d.t.Registry.View(ctx, name)
	if err != nil {
		if store.KindOf(err) == store.KindNotFound {
			return nil, syscall.ENOENT
		}
		return nil, d.t.fail(ctx, "", "lookup", "admin/tokens/"+name, err)
	}
	return d.tokenInode(ctx, v.Token, out), 0
}

func (d *adminTokensDir) tokenInode(ctx context.Context, tok store.Token, out *fuse.EntryOut) *fusefs.Inode {
	out.SetAttrTimeout(d.t.setAttr(ctx, "", fuse.S_IFDIR|0o700, &out.Attr))
	node := &adminTokenDir{rootOnlyDir: rootOnlyDir{fixedDir{t: d.t}}, token: tok.Name, number: tok.Number}
	return d.NewInode(ctx, node, fusefs.StableAttr{Mode: fuse.S_IFDIR, Ino: tokenIno(tok.Number, adminTokenIno)})
}

var _ = (fusefs.NodeReaddirer)((*adminTokensDir)(nil))

func (d *adminTokensDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	tokens, err := d.t.Registry.Tokens(ctx)
	if err != nil {
		return nil, d.t.fail(ctx, "", "readdir", "admin/tokens", err)
	}
	names := make([]string, len(tokens))
	for i, tok := range tokens {
		names[i] = tok.Name
	}
	return fusefs.NewListDirStream(entries(fuse.S_IFDIR, names...)), 0
}

var _ = (fusefs.NodeMkdirer)((*adminTokensDir)(nil))

// Mkdir creates a token with the daemon's default device limit.
func (d *adminTokensDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	tok, _, err := d.t.Registry.CreateToken(ctx, name, d.t.Registry.DefaultMaxDevices())
	if err != nil {
		return nil, d.t.fail(ctx, "", "mkdir", "admin/tokens/"+name, err)
	}
	d.t.Log.Info("token created", "token", name, "max_devices", tok.MaxDevices)
	return d.tokenInode(ctx, tok, out), 0
}

var _ = (fusefs.NodeRmdirer)((*adminTokensDir)(nil))

func (d *adminTokensDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if err := d.t.Registry.RevokeToken(ctx, name); err != nil {
		return d.t.fail(ctx, "", "rmdir", "admin/tokens/"+name, err)
	}
	d.t.Log.Info("token revoked", "token", name)
	if tokens := d.Root().GetChild("tokens"); tokens != nil {
		tokens.NotifyEntry(name) // the kernel keeps tokens/<name> for staticTimeout otherwise
	}
	return 0
}

// adminTokenDir is admin/tokens/<name>: the token's secret, limit and users.
type adminTokenDir struct {
	rootOnlyDir
	token  string
	number uint64
}

// adminTokenEntries are admin/tokens/<name>'s files; the index is the inode
// offset after adminTokenIno.
var adminTokenEntries = []string{"max_devices", "secret", "uids", "priority", "shared", "max_units", "idle_job_timeout"}

var _ = (fusefs.NodeLookuper)((*adminTokenDir)(nil))

func (d *adminTokenDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	t, token := d.t, d.token
	var node fusefs.InodeEmbedder
	mode := uint32(0o400)
	switch name {
	case "max_devices":
		mode = 0o600
		node = &cmdFile{roFile: roFile{t: t, mode: mode, render: d.renderMax}, command: d.setMax}
	case "secret":
		node = &roFile{t: t, mode: mode, render: func(context.Context) ([]byte, error) {
			s, err := t.Registry.TokenSecret(ctx, token)
			return []byte(s + "\n"), err
		}}
	case "uids":
		node = &roFile{t: t, mode: mode, render: d.renderUIDs}
	case "priority", "shared", "max_units":
		mode = 0o600
		node = &cmdFile{roFile: roFile{t: t, mode: mode, render: d.renderSched(name)}, command: d.setSched(name)}
	case "idle_job_timeout":
		mode = 0o600
		node = &cmdFile{roFile: roFile{t: t, mode: mode, render: d.renderIdleJobTimeout}, command: d.setIdleJobTimeout}
	default:
		return nil, syscall.ENOENT
	}
	out.SetAttrTimeout(d.t.setAttr(ctx, "", fuse.S_IFREG|mode, &out.Attr))
	k := adminTokenIno + 1 + uint64(slices.Index(adminTokenEntries, name))
	return d.NewInode(ctx, node, fusefs.StableAttr{Mode: fuse.S_IFREG, Ino: tokenIno(d.number, k)}), 0
}

// renderSched shows a scheduling file: priority, shared (0/1), max_units (N or none).
func (d *adminTokenDir) renderSched(name string) renderFunc {
	return func(ctx context.Context) ([]byte, error) {
		tok, err := d.t.Registry.Token(ctx, d.token)
		if err != nil {
			return nil, err
		}
		switch name {
		case "priority":
			return []byte(strconv.Itoa(tok.Priority) + "\n"), nil
		case "shared":
			if tok.Shared {
				return []byte("1\n"), nil
			}
			return []byte("0\n"), nil
		}
		return []byte(store.FormatMaxUnits(tok.MaxUnits) + "\n"), nil
	}
}

// setSched is a write to a scheduling file, parsed with one spelling per value.
func (d *adminTokenDir) setSched(name string) commandFunc {
	return func(ctx context.Context, command string) error {
		switch name {
		case "priority":
			p, err := store.ParsePriority(command)
			if err != nil {
				return err
			}
			return d.t.Registry.SetPriority(ctx, d.token, p)
		case "shared":
			shared, err := store.ParseShared(command)
			if err != nil {
				return err
			}
			return d.t.Registry.SetShared(ctx, d.token, shared)
		}
		n, err := store.ParseMaxUnits(command)
		if err != nil {
			return err
		}
		return d.t.Registry.SetMaxUnits(ctx, d.token, n)
	}
}

var _ = (fusefs.NodeReaddirer)((*adminTokenDir)(nil))

func (d *adminTokenDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	return fusefs.NewListDirStream(entries(fuse.S_IFREG, adminTokenEntries...)), 0
}

func (d *adminTokenDir) renderMax(ctx context.Context) ([]byte, error) {
	v, err := d.t.Registry.View(ctx, d.token)
	return []byte(strconv.Itoa(v.Token.MaxDevices) + "\n"), err
}

func (d *adminTokenDir) setMax(ctx context.Context, command string) error {
	n, err := store.ParseMaxDevices(command)
	if err != nil {
		return err
	}
	return d.t.Registry.SetMaxDevices(ctx, d.token, n)
}

func (d *adminTokenDir) renderIdleJobTimeout(ctx context.Context) ([]byte, error) {
	v, err := d.t.Registry.View(ctx, d.token)
	return []byte(store.FormatIdleJobTimeout(v.Token.IdleJobTimeout) + "\n"), err
}

func (d *adminTokenDir) setIdleJobTimeout(ctx context.Context, command string) error {
	timeout, err := store.ParseIdleJobTimeout(command)
	if err != nil {
		return err
	}
	return d.t.Node.SetIdleJobTimeout(ctx, d.token, timeout)
}

func (d *adminTokenDir) renderUIDs(ctx context.Context) ([]byte, error) {
	v, err := d.t.Registry.View(ctx, d.token)
	var b strings.Builder
	for _, uid := range v.Token.UIDs {
		b.WriteString(strconv.Itoa(uid) + "\n")
	}
	return []byte(b.String()), err
}
