package fs

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/moreh-io/moreh/fs/node"
)

// /moreh/query-gpu/ answers `moreh-smi --query-gpu`: the file named
// "FIELDS" or "FIELDS:FORMAT" (FIELDS and FORMAT as nvidia-smi's
// --query-gpu= and --format= take them, e.g. "index,name,memory.used" or
// "index,memory.used:csv,noheader,nounits") holds those fields of every
// physical GPU of the pool, a line each, as nvidia-smi prints them:
//
//	index, name, memory.total [MiB], utilization.gpu [%]
//	0, NVIDIA H200, 143771 MiB, 45 %
//
// Values joined by ", "; units after the figures unless nounits (the header
// keeps them); "[N/A]" for what this node cannot tell (another node's
// readings, the device of a free GPU). A name with an unknown field or
// format option does not exist (ENOENT). An empty pool gives an empty file,
// header included: what nvidia-smi calls "No devices were found".

// gpuField is one field of --query-gpu.
type gpuField struct {
	name  string // as nvidia-smi spells it
	unit  string // "MiB", "%" or ""
	value func(g node.GPUStatus) (string, bool)
}

// notAvailable is what nvidia-smi prints for a value it cannot tell.
const notAvailable = "[N/A]"

// gpuFields are the fields of --query-gpu, in the order --help-query-gpu
// lists them; the aliases are nvidia-smi's.
var gpuFields = []gpuField{
	{name: "index", value: func(g node.GPUStatus) (string, bool) { return strconv.Itoa(g.Index), true }},
	{name: "name", value: func(g node.GPUStatus) (string, bool) { return g.Name, g.Name != "" }},
	{name: "uuid", value: func(g node.GPUStatus) (string, bool) { return g.UUID, g.UUID != "" }},
	{name: "memory.total", unit: "MiB", value: func(g node.GPUStatus) (string, bool) { return formatUint(g.MemoryMiB), true }},
	{name: "memory.used", unit: "MiB", value: func(g node.GPUStatus) (string, bool) {
		return formatUint(g.Reading.MemoryUsedMiB), g.Sampled
	}},
	{name: "memory.free", unit: "MiB", value: func(g node.GPUStatus) (string, bool) {
		return formatUint(g.MemoryMiB - min(g.MemoryMiB, g.Reading.MemoryUsedMiB)), g.Sampled
	}},
	{name: "utilization.gpu", unit: "%", value: func(g node.GPUStatus) (string, bool) {
		return strconv.Itoa(g.Reading.Utilization), g.Sampled
	}},
	{name: "device", value: func(g node.GPUStatus) (string, bool) { return formatUint(g.Device), g.Job != 0 && !g.Hidden }},
	{name: "node", value: func(g node.GPUStatus) (string, bool) { return g.Node, g.Node != "" }},
}

// gpuAliases are nvidia-smi's other names of the same fields.
var gpuAliases = map[string]string{"gpu_name": "name", "gpu_uuid": "uuid"}

// GPUFieldNames lists the fields of --query-gpu, aliases left out.
func GPUFieldNames() []string {
	names := make([]string, len(gpuFields))
	for i, f := range gpuFields {
		names[i] = f.name
	}
	return names
}

// gpuQuery is a parsed query-gpu file name.
type gpuQuery struct {
	fields   []gpuField
	headers  []string // each field as asked, with its unit
	noheader bool
	nounits  bool
}

// parseGPUQuery parses "FIELDS[:FORMAT]"; ok is false when a field or a
// format option is unknown or no field is given. Spaces around the names
// are dropped, as nvidia-smi does.
func parseGPUQuery(name string) (q gpuQuery, ok bool) {
	fields, format, _ := strings.Cut(name, ":")
	for _, opt := range strings.Split(format, ",") {
		switch strings.TrimSpace(opt) {
		case "", "csv":
		case "noheader":
			q.noheader = true
		case "nounits":
			q.nounits = true
		default:
			return q, false
		}
	}
	for _, asked := range strings.Split(fields, ",") {
		asked = strings.TrimSpace(asked)
		if asked == "" {
			continue
		}
		canonical := asked
		if a, isAlias := gpuAliases[asked]; isAlias {
			canonical = a
		}
		found := false
		for _, f := range gpuFields {
			if f.name == canonical {
				header := asked
				if f.unit != "" {
					header += " [" + f.unit + "]"
				}
				q.fields, q.headers, found = append(q.fields, f), append(q.headers, header), true
				break
			}
		}
		if !found {
			return q, false
		}
	}
	return q, len(q.fields) > 0
}

// appendGPUQuery appends the CSV of q over pool to b.
func appendGPUQuery(b []byte, q gpuQuery, pool []node.GPUStatus) []byte {
	if len(pool) == 0 {
		return b
	}
	if !q.noheader {
		b = append(b, strings.Join(q.headers, ", ")...)
		b = append(b, '\n')
	}
	for _, g := range pool {
		for i, f := range q.fields {
			if i > 0 {
				b = append(b, ", "...)
			}
			v, known := f.value(g)
			switch {
			case !known:
				b = append(b, notAvailable...)
			case f.unit == "" || q.nounits:
				b = append(b, v...)
			default:
				b = append(b, v+" "+f.unit...)
			}
		}
		b = append(b, '\n')
	}
	return b
}

// queryGPUDir is /moreh/query-gpu: its files exist for every valid name;
// it lists none.
type queryGPUDir struct {
	fixedDir
}

var _ = (fusefs.NodeLookuper)((*queryGPUDir)(nil))

func (d *queryGPUDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	q, ok := parseGPUQuery(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	t := d.t
	f := &roFile{t: t, mode: 0o444, render: func(ctx context.Context) ([]byte, error) {
		pool, err := t.Node.PoolFor(ctx, callerUID(ctx))
		if err != nil {
			return nil, err
		}
		return appendGPUQuery(make([]byte, 0, 64*(len(pool)+1)), q, pool), nil
	}}
	d.t.setAttr(ctx, "", fuse.S_IFREG|0o444, &out.Attr) // entry and attributes uncached: each name is a new query
	return d.NewInode(ctx, f, fusefs.StableAttr{Mode: fuse.S_IFREG}), 0
}

var _ = (fusefs.NodeReaddirer)((*queryGPUDir)(nil))

func (d *queryGPUDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	return fusefs.NewListDirStream(nil), 0
}

var _ = (fusefs.NodeGetattrer)((*queryGPUDir)(nil))

func (d *queryGPUDir) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o555
	out.SetTimeout(staticTimeout)
	return 0
}
