package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/store"
)

// tokenDir is tokens/<name>: the token's files and its devices/.
type tokenDir struct {
	fixedDir // owned: the token's name and number (for inode numbers too)
}

// tokenEntries are the names in a token's directory, in listing order; the
// index+1 is the entry's inode offset.
var tokenEntries = []string{"current", "limit", "status", "status.json", "errors", "devices.table", "devices", "history", "history.json", "history.csv", "usage"}

var _ = (fusefs.NodeLookuper)((*tokenDir)(nil))

func (d *tokenDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return nil, errno
	}
	for i, entry := range tokenEntries {
		if entry != name {
			continue
		}
		node, mode := d.child(name)
		out.SetAttrTimeout(d.t.setAttr(ctx, d.token, mode, &out.Attr))
		if errno := keptSize(ctx, node, &out.Attr); errno != 0 {
			return nil, errno
		}
		out.SetEntryTimeout(staticTimeout)
		return d.NewInode(ctx, node, fusefs.StableAttr{Mode: mode &^ 0o7777, Ino: tokenIno(d.number, uint64(i+1))}), 0
	}
	return nil, syscall.ENOENT
}

// child builds the node of one entry and its mode.
func (d *tokenDir) child(name string) (fusefs.InodeEmbedder, uint32) {
	t, token := d.t, d.token
	ro := func(render renderFunc) (fusefs.InodeEmbedder, uint32) { return t.readOnlyFile(d.owned, render) }
	switch name {
	case "current":
		return t.keptCommandFile(d.owned, 0o600, d.renderCurrent, d.switchTo)
	case "limit":
		return t.keptFile(d.owned, d.renderLimit)
	case "status":
		return ro(t.sampled(func(ctx context.Context) ([]byte, error) { return t.renderStatus(ctx, token, 0) }))
	case "status.json":
		return ro(t.sampled(func(ctx context.Context) ([]byte, error) { return t.renderStatusJSON(ctx, token, 0) }))
	case "devices.table":
		return ro(t.sampled(func(ctx context.Context) ([]byte, error) { return t.renderDevicesTable(ctx, token) }))
	case "errors":
		return ro(func(ctx context.Context) ([]byte, error) { return t.Registry.Errors.Render(token), nil })
	case "history":
		return ro(d.renderHistory)
	case "history.json":
		return ro(d.renderHistoryJSON)
	case "history.csv":
		return ro(d.renderHistoryCSV)
	case "usage":
		return ro(d.renderUsage)
	}
	return &devicesDir{fixedDir: fixedDir{t: t, owned: d.owned}}, fuse.S_IFDIR | 0o700
}

var _ = (fusefs.NodeReaddirer)((*tokenDir)(nil))

func (d *tokenDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return nil, errno
	}
	list := entries(fuse.S_IFREG, tokenEntries...)
	for i := range list {
		if list[i].Name == "devices" {
			list[i].Mode = fuse.S_IFDIR
		}
	}
	return fusefs.NewListDirStream(list), 0
}

var _ = (fusefs.NodeGetattrer)((*tokenDir)(nil))

func (d *tokenDir) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return errno
	}
	out.SetTimeout(d.t.setAttr(ctx, d.token, fuse.S_IFDIR|0o700, &out.Attr))
	return 0
}

func (d *tokenDir) renderCurrent(ctx context.Context) ([]byte, error) {
	tok, err := d.t.Registry.Token(ctx, d.token)
	if err != nil || tok.Current == 0 {
		return nil, err
	}
	return []byte(formatUint(tok.Current) + "\n"), nil
}

func (d *tokenDir) switchTo(ctx context.Context, command string) error {
	id, err := store.ParseDeviceID(command)
	if err != nil {
		return err
	}
	return d.t.Registry.Switch(ctx, d.token, id)
}

func (d *tokenDir) renderLimit(ctx context.Context) ([]byte, error) {
	v, err := d.t.Registry.View(ctx, d.token)
	if err != nil {
		return nil, err
	}
	return []byte("max " + formatUint(uint64(v.Token.MaxDevices)) + "\nused " + formatUint(uint64(len(v.Devices))) + "\n"), nil
}
