package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/store"
)

// devicesDir is tokens/<name>/devices: mkdir <model> creates a device,
// rmdir <id> removes one, and each device lists under its id.
type devicesDir struct {
	fixedDir // owned: the token's
}

var _ = (fusefs.NodeLookuper)((*devicesDir)(nil))

func (d *devicesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return nil, errno
	}
	id, err := store.ParseDeviceID(name)
	if err != nil {
		return nil, syscall.ENOENT
	}
	if _, err := d.t.Registry.Device(ctx, d.token, id); err != nil {
		if store.KindOf(err) == store.KindNotFound {
			return nil, syscall.ENOENT
		}
		return nil, d.t.fail(ctx, d.token, "lookup", d.Path(nil)+"/"+name, err)
	}
	return d.deviceInode(ctx, id, out), 0
}

// deviceInode is a device's directory; the kernel keeps its name and
// attributes (tree.changed drops the name when the device is removed).
func (d *devicesDir) deviceInode(ctx context.Context, id uint64, out *fuse.EntryOut) *fusefs.Inode {
	out.SetAttrTimeout(d.t.setAttr(ctx, d.token, fuse.S_IFDIR|0o700, &out.Attr))
	out.SetEntryTimeout(staticTimeout)
	dev := &deviceDir{fixedDir: fixedDir{t: d.t, owned: d.owned}, id: id}
	return d.NewInode(ctx, dev, fusefs.StableAttr{Mode: fuse.S_IFDIR, Ino: deviceIno(id, 0)})
}

var _ = (fusefs.NodeReaddirer)((*devicesDir)(nil))

func (d *devicesDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return nil, errno
	}
	v, err := d.t.Registry.View(ctx, d.token)
	if err != nil {
		return nil, d.t.fail(ctx, d.token, "readdir", d.Path(nil), err)
	}
	list := make([]fuse.DirEntry, len(v.Devices))
	for i, dev := range v.Devices {
		list[i] = fuse.DirEntry{Name: formatUint(dev.ID), Mode: fuse.S_IFDIR, Ino: deviceIno(dev.ID, 0)}
	}
	return fusefs.NewListDirStream(list), 0
}

var _ = (fusefs.NodeMkdirer)((*devicesDir)(nil))

// Mkdir creates a device of the named model. The kernel would keep the model
// name as an entry; a zero entry timeout makes it look the name up again
// and find nothing, so only the id lists.
func (d *devicesDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return nil, errno
	}
	dev, err := d.t.Registry.CreateDevice(ctx, d.token, name)
	if err != nil {
		return nil, d.t.fail(ctx, d.token, "mkdir", d.Path(nil)+"/"+name, err)
	}
	d.t.Log.Info("device created", "token", d.token, "id", dev.ID, "model", dev.Model)
	child := d.deviceInode(ctx, dev.ID, out)
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	return child, 0
}

var _ = (fusefs.NodeRmdirer)((*devicesDir)(nil))

func (d *devicesDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return errno
	}
	id, err := store.ParseDeviceID(name)
	if err == nil {
		err = d.t.Registry.RemoveDevice(ctx, d.token, id)
	}
	if err != nil {
		return d.t.fail(ctx, d.token, "rmdir", d.Path(nil)+"/"+name, err)
	}
	d.t.Log.Info("device removed", "token", d.token, "id", id)
	return 0
}

var _ = (fusefs.NodeGetattrer)((*devicesDir)(nil))

func (d *devicesDir) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return errno
	}
	out.SetTimeout(d.t.setAttr(ctx, d.token, fuse.S_IFDIR|0o700, &out.Attr))
	return 0
}

// deviceDir is devices/<id>: the device's files.
type deviceDir struct {
	fixedDir // owned: the token's
	id       uint64
}

// deviceEntries are the names in a device's directory, in listing order;
// the index+1 is the entry's inode offset.
var deviceEntries = []string{"model", "status", "status.json", "usage", "procs", "gpus", "env", "reset", "fits", "job", "waiting"}

var _ = (fusefs.NodeLookuper)((*deviceDir)(nil))

func (d *deviceDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return nil, errno
	}
	for i, entry := range deviceEntries {
		if entry == name {
			node, mode := d.child(name)
			out.SetAttrTimeout(d.t.setAttr(ctx, d.token, mode, &out.Attr))
			if errno := keptSize(ctx, node, &out.Attr); errno != 0 {
				return nil, errno
			}
			out.SetEntryTimeout(staticTimeout)
			return d.NewInode(ctx, node, fusefs.StableAttr{Mode: fuse.S_IFREG, Ino: deviceIno(d.id, uint64(i+1))}), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *deviceDir) child(name string) (fusefs.InodeEmbedder, uint32) {
	t, token, id := d.t, d.token, d.id
	ro := func(render renderFunc) (fusefs.InodeEmbedder, uint32) { return t.readOnlyFile(d.owned, render) }
	switch name {
	case "model":
		return t.keptCommandFile(d.owned, 0o600, d.renderModel, d.setModel)
	case "status":
		return ro(t.sampled(func(ctx context.Context) ([]byte, error) { return t.renderStatus(ctx, token, id) }))
	case "status.json":
		return ro(t.sampled(func(ctx context.Context) ([]byte, error) { return t.renderStatusJSON(ctx, token, id) }))
	case "procs":
		return t.commandFile(d.owned, 0o600, d.renderProcs, d.attach)
	case "gpus":
		return t.keptFile(d.owned, d.renderGPUs)
	case "env":
		return t.keptFile(d.owned, d.renderEnv)
	case "reset":
		return t.commandFile(d.owned, 0o200, nil, d.reset)
	case "fits":
		return ro(d.renderFits)
	case "job", "waiting":
		return &waitFile{t: t, token: token, id: id, messages: name == "waiting"}, fuse.S_IFREG | 0o400
	}
	return ro(d.renderUsage)
}

var _ = (fusefs.NodeReaddirer)((*deviceDir)(nil))

func (d *deviceDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return nil, errno
	}
	return fusefs.NewListDirStream(entries(fuse.S_IFREG, deviceEntries...)), 0
}

var _ = (fusefs.NodeGetattrer)((*deviceDir)(nil))

func (d *deviceDir) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := d.t.admit(ctx, d.owned); errno != 0 {
		return errno
	}
	out.SetTimeout(d.t.setAttr(ctx, d.token, fuse.S_IFDIR|0o700, &out.Attr))
	return 0
}

func (d *deviceDir) renderModel(ctx context.Context) ([]byte, error) {
	dev, err := d.t.Registry.Device(ctx, d.token, d.id)
	if err != nil {
		return nil, err
	}
	return []byte(dev.Model + "\n"), nil
}

func (d *deviceDir) setModel(ctx context.Context, command string) error {
	dev, err := d.t.Registry.SetModel(ctx, d.token, d.id, command)
	if err == nil {
		d.t.Log.Info("model changed", "token", d.token, "id", d.id, "model", dev.Model)
	}
	return err
}

func (d *deviceDir) renderUsage(ctx context.Context) ([]byte, error) {
	u, err := d.t.Node.DeviceUsage(ctx, d.token, d.id)
	if err != nil {
		return nil, err
	}
	return []byte("memory_used_mib " + formatUint(u.UsedMiB) + "\nmemory_total_mib " + formatUint(u.TotalMiB) +
		"\nutilization " + formatUtilization(u.Utilization) + "\n"), nil
}
