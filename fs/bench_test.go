package fs

// Benchmarks of the mounted tree, each against floors measured in the same
// run, so that ratios hold on any machine:
//
//   - tmpfs:  the same bytes in a tmpfs file (/dev/shm): the kernel's floor;
//   - gofuse: the same bytes served from memory by a minimal go-fuse tree of
//     the same shape (same names, links and depth, go-fuse's default
//     one-second timeouts): the floor of any FUSE server on this machine;
//   - commit: a bare bbolt commit of the size of a device creation, on the
//     disk that holds the tree's store.
//
// The tree runs as morehd runs it (sampler, job watcher, a running job on
// the device that is read), over a store of one token with 10 devices
// ("tree") and over 10,000 devices spread over 1,000 tokens ("tree10k"),
// and once more with a probe that takes 500 ms per call ("tree10k-slowprobe").
// Read benchmarks report the 99th percentile as p99-ns. scripts/bench.sh runs
// them all and prints medians, ratios and the targets.
//
// Every mount needs root (mount(2)); without it the benchmarks skip.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	bolt "go.etcd.io/bbolt"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

const (
	benchTokens    = 1000 // tokens of the big store, the default token included
	benchPerToken  = 10   // devices of every token: the limit of each
	benchCreatorN  = 16   // concurrent creators
	benchProbeWait = 500 * time.Millisecond
	benchFirstID   = 2026
	benchModel     = "Small.64GB"
)

// benchReadID is the device whose files are read: the default token's last,
// its current device, with a running job.
const benchReadID = benchFirstID + benchPerToken - 1

var benchKey = []byte("a bench key of thirty-two bytes!")

// benchOptions are the registry's settings in every benchmark: the default
// token's limit is reapplied at each open, so it is given here.
func benchOptions() store.Options {
	return store.Options{FirstID: benchFirstID, MaxDevices: benchPerToken, Key: benchKey}
}

// benchFiles are the files read, by the path a user opens below the mount.
var benchFiles = []struct{ name, path string }{
	{"current", "current"},
	{"usage", "devices/" + strconv.Itoa(benchReadID) + "/usage"},
	{"status", "status"},
	{"status.json", "tokens/default/status.json"},
}

// benchNeedRoot skips without root: the mounts use mount(2).
func benchNeedRoot(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("the benchmarks mount FUSE with mount(2) and need root")
	}
}

// benchScratch is a directory on tmpfs for what must be fast to write: the
// seed stores and the tmpfs floor. It fails when /dev/shm is not tmpfs.
func benchScratch(b *testing.B) string {
	b.Helper()
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != tmpfsMagic {
		b.Fatalf("/dev/shm is not tmpfs (statfs: %v, type %#x): the kernel floor needs one", err, st.Type)
	}
	dir, err := os.MkdirTemp("/dev/shm", "moreh-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// benchSeeds are bbolt files built once per test binary, by number of
// tokens. Each is kept open and unlinked, so nothing is left behind when the
// binary exits; a mount starts from a copy.
var benchSeeds struct {
	sync.Mutex
	files map[int]*os.File
}

// benchSeed returns a store of tokens tokens (the default token and
// t0001…) of benchPerToken devices each, built through the public API.
func benchSeed(b *testing.B, tokens int) *os.File {
	ctx := b.Context()
	b.Helper()
	benchSeeds.Lock()
	defer benchSeeds.Unlock()
	if f := benchSeeds.files[tokens]; f != nil {
		return f
	}
	start := time.Now()
	dir := benchScratch(b)
	path := filepath.Join(dir, "seed.db")
	eng, err := store.OpenBolt(path, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := store.Open(ctx, eng, benchOptions())
	if err != nil {
		b.Fatal(err)
	}
	names := []string{"default"}
	for i := 1; i < tokens; i++ {
		name := fmt.Sprintf("t%04d", i)
		if _, _, err := reg.CreateToken(ctx, name, benchPerToken); err != nil {
			b.Fatal(err)
		}
		names = append(names, name)
	}
	// The default token first, so its ids are benchFirstID….
	for range benchPerToken {
		if _, err := reg.CreateDevice(ctx, "default", benchModel); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	work := make(chan string)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				for range benchPerToken {
					if _, err := reg.CreateDevice(ctx, name, benchModel); err != nil {
						errs <- err // once per token at most: errs holds them all
						break
					}
				}
			}
		}()
	}
	for _, name := range names[1:] {
		work <- name
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if err := eng.Close(); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	os.Remove(path) // the open file lives on until the binary exits
	if benchSeeds.files == nil {
		benchSeeds.files = map[int]*os.File{}
	}
	benchSeeds.files[tokens] = f
	b.Logf("seed store: %d devices over %d tokens built in %v (once per test binary)", tokens*benchPerToken, tokens, time.Since(start).Round(time.Millisecond))
	return f
}

// benchSlowProbe answers like the probe it wraps, after wait, for each
// reading.
type benchSlowProbe struct {
	gpu.Probe
	wait time.Duration
}

func (p benchSlowProbe) Sample(ctx context.Context) ([]gpu.Reading, error) {
	if err := p.slow(ctx); err != nil {
		return nil, err
	}
	return p.Probe.Sample(ctx)
}

// slow is the probe's wait: the slowness under test, cut short when the
// sampler stops.
func (p benchSlowProbe) slow(ctx context.Context) error {
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p benchSlowProbe) Processes(ctx context.Context) ([]gpu.Process, error) {
	if err := p.slow(ctx); err != nil {
		return nil, err
	}
	return p.Probe.Processes(ctx)
}

// Assign passes the jobs on, so that the sim shows the job's memory.
func (p benchSlowProbe) Assign(pidGPUs map[int][]int) {
	if a, ok := p.Probe.(gpu.Assigner); ok {
		a.Assign(pidGPUs)
	}
}

// benchTree is a mounted tree over a copy of a seed store.
type benchTree struct {
	dir string // the mountpoint
	reg *store.Registry
}

func (bt *benchTree) path(rel string) string { return filepath.Join(bt.dir, rel) }

// benchMount mounts the tree as morehd does, over a copy of seed on the
// disk of the test's temporary directory, with a job on benchReadID. With
// debug, go-fuse logs every request to the standard logger.
func benchMount(b *testing.B, seed *os.File, probeWait time.Duration, debug ...bool) *benchTree {
	ctx := b.Context()
	b.Helper()
	base := b.TempDir()
	for dir := base; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755)
	}
	dbPath := filepath.Join(base, "moreh.db")
	if err := benchCopy(dbPath, seed); err != nil {
		b.Fatal(err)
	}
	eng, err := store.OpenBolt(dbPath, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := store.Open(ctx, eng, benchOptions())
	if err != nil {
		b.Fatal(err)
	}
	var probe gpu.Probe
	if probe, err = gpu.NewSim("sim:4x64GB"); err != nil {
		b.Fatal(err)
	}
	if probeWait > 0 {
		probe = benchSlowProbe{Probe: probe, wait: probeWait}
	}
	// The daemon logs as text to stderr; here the text goes nowhere.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt := node.New(node.Config{Registry: reg, Probe: probe, Log: log})
	if _, err := rt.RegisterGPUs(ctx); err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(ctx)
	rt.Start(ctx)
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	server, err := Mount(dir, Config{
		Node: rt, Version: "26.11.0", AllowOther: true, Log: log,
		Debug: len(debug) > 0 && debug[0],
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			b.Errorf("unmount: %v", err)
		}
		stop()
		rt.Wait()
		eng.Close()
	})
	// A job on the device that is read, so usage and status show the
	// sampler's figures: a sleeping child, attached as moreh-run would.
	job := exec.Command("sleep", "3600")
	if err := job.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { job.Process.Kill(); job.Wait() })
	// Through the runtime, as a write to procs is: its supervisor then
	// names the process for the sampler (a store write behind its back is
	// never seen, and every render would read /proc for the name).
	root := node.Caller{UID: 0, PID: os.Getpid()}
	if _, err := rt.Attach(ctx, root, "default", benchReadID, strconv.Itoa(job.Process.Pid)); err != nil {
		b.Fatal(err)
	}
	return &benchTree{dir: dir, reg: reg}
}

// benchCopy writes a copy of the whole of src to path.
func benchCopy(path string, src *os.File) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, 0, st.Size())); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// benchShape is a tree of files, directories and links to build a floor of
// the tree's shape: path → content; a content starting with "->" is a link.
type benchShape map[string]string

// resolve follows a link in the first name of rel, as the kernel would.
func (s benchShape) resolve(rel string) string {
	first, rest, _ := strings.Cut(rel, "/")
	if t, ok := s[first]; ok && strings.HasPrefix(t, "->") {
		return strings.TrimSuffix(t[2:]+"/"+rest, "/")
	}
	return rel
}

// benchShapeOf reads the files that the benchmarks touch from a mounted
// tree, and lists the devices directory, to give the floors the same
// bytes, names and depth.
func benchShapeOf(b *testing.B, bt *benchTree) benchShape {
	b.Helper()
	shape := benchShape{}
	for _, link := range []string{"current", "status", "devices"} {
		target, err := os.Readlink(bt.path(link))
		if err != nil {
			b.Fatal(err)
		}
		shape[link] = "->" + target
	}
	for _, f := range benchFiles {
		data, err := os.ReadFile(bt.path(f.path))
		if err != nil {
			b.Fatal(err)
		}
		shape[shape.resolve(f.path)] = string(data)
	}
	entries, err := os.ReadDir(bt.path("devices"))
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		shape["tokens/default/devices/"+e.Name()+"/"] = ""
	}
	return shape
}

// benchTmpfs lays shape out in a tmpfs directory.
func benchTmpfs(b *testing.B, shape benchShape) string {
	b.Helper()
	dir := benchScratch(b)
	for rel, content := range shape {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(rel, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(content[2:], p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// benchFloorFile is the least a FUSE file can do: bytes from memory, with
// direct I/O as the tree's files have; a write is accepted whole. A kept
// one is read through the page cache as the tree's kept files are: its
// size in the attributes, FOPEN_KEEP_CACHE at open.
type benchFloorFile struct {
	fusefs.Inode
	data []byte
	kept bool
}

var (
	_ = (fusefs.NodeOpener)((*benchFloorFile)(nil))
	_ = (fusefs.NodeReader)((*benchFloorFile)(nil))
	_ = (fusefs.NodeWriter)((*benchFloorFile)(nil))
	_ = (fusefs.NodeGetattrer)((*benchFloorFile)(nil))
	_ = (fusefs.NodeSetattrer)((*benchFloorFile)(nil))
)

func (f *benchFloorFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if f.kept && flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return nil, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *benchFloorFile) Read(ctx context.Context, fh fusefs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(f.data[off:min(int64(len(f.data)), off+int64(len(dest)))]), 0
}

func (f *benchFloorFile) Write(ctx context.Context, fh fusefs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return uint32(len(data)), 0
}

func (f *benchFloorFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o644
	if f.kept {
		out.Size = uint64(len(f.data))
	}
	return 0
}

func (f *benchFloorFile) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o644
	return 0
}

// benchFloorRoot builds shape as persistent nodes when mounted; the files
// named in kept are kept files.
type benchFloorRoot struct {
	fusefs.Inode
	shape benchShape
	kept  []string
}

func (r *benchFloorRoot) OnAdd(ctx context.Context) {
	names := make([]string, 0, len(r.shape))
	for rel := range r.shape {
		names = append(names, rel)
	}
	slices.Sort(names)
	for _, rel := range names {
		content := r.shape[rel]
		parent := &r.Inode
		parts := strings.Split(strings.TrimSuffix(rel, "/"), "/")
		for _, dir := range parts[:len(parts)-1] {
			child := parent.GetChild(dir)
			if child == nil {
				child = parent.NewPersistentInode(ctx, &fusefs.Inode{}, fusefs.StableAttr{Mode: fuse.S_IFDIR})
				parent.AddChild(dir, child, false)
			}
			parent = child
		}
		name := parts[len(parts)-1]
		var node *fusefs.Inode
		switch {
		case strings.HasSuffix(rel, "/"):
			node = parent.NewPersistentInode(ctx, &fusefs.Inode{}, fusefs.StableAttr{Mode: fuse.S_IFDIR})
		case strings.HasPrefix(content, "->"):
			node = parent.NewPersistentInode(ctx, &fusefs.MemSymlink{Data: []byte(content[2:])}, fusefs.StableAttr{Mode: fuse.S_IFLNK})
		default:
			file := &benchFloorFile{data: []byte(content), kept: slices.Contains(r.kept, rel)}
			node = parent.NewPersistentInode(ctx, file, fusefs.StableAttr{Mode: fuse.S_IFREG})
		}
		parent.AddChild(name, node, false)
	}
}

// benchFloor mounts shape with go-fuse: the tree's mount options, and the
// one-second timeouts go-fuse sets when given no options. With debug,
// go-fuse logs every request to the standard logger.
func benchFloor(b *testing.B, shape benchShape, debug ...bool) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "floor")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	benchMountFloor(b, dir, &benchFloorRoot{shape: shape}, len(debug) > 0 && debug[0])
	return dir
}

// benchMountFloor mounts a floor's root on dir with the tree's mount options
// and go-fuse's one-second timeouts, until the benchmark ends.
func benchMountFloor(b *testing.B, dir string, root fusefs.InodeEmbedder, debug bool) {
	b.Helper()
	second := time.Second
	server, err := fusefs.Mount(dir, root, &fusefs.Options{
		MountOptions: fuse.MountOptions{
			FsName: "moreh-floor", Name: "moreh-floor", DirectMount: true, AllowOther: true,
			MaxWrite: 64 * 1024, Options: []string{"default_permissions"}, DisableSplice: true,
			Debug: debug,
		},
		EntryTimeout: &second, AttrTimeout: &second, NullPermissions: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			b.Errorf("unmount the floor on %s: %v", dir, err)
		}
	})
	if err := server.WaitMount(); err != nil {
		b.Fatal(err)
	}
}

// The operations are timed in a client process, the test binary started
// again with benchClientEnv set, as cat and ls are other processes than
// morehd: a client thread of the server's own process would also take the
// server's signals (the Go runtime's preemption), which make the kernel send
// FUSE INTERRUPTs that no real client causes (see benchStartClient).
const benchClientEnv = "MOREH_BENCH_CLIENT"

func init() {
	if os.Getenv(benchClientEnv) == "1" {
		os.Exit(benchClientMain(os.Stdin, os.Stdout))
	}
}

// benchReq asks the client for N operations; benchResp answers.
type benchReq struct {
	Op       string   // read, list, write or create
	N        int      // operations in all
	Paths    []string // the file or directory; for create, one token directory per creator
	Data     []string // for write, written in turn
	Creators int      // for create, concurrent creators
}

type benchResp struct {
	P99     int64   // nanoseconds
	Medians []int64 // for interleave, of each path's reads
	Err     string
}

// benchClientMain serves benchReqs, one JSON line each, until stdin ends.
func benchClientMain(in io.Reader, out io.Writer) int {
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	buf := make([]byte, 128<<10) // cat's buffer
	for {
		var req benchReq
		if err := dec.Decode(&req); err != nil {
			if err == io.EOF {
				return 0
			}
			fmt.Fprintln(os.Stderr, "bench client:", err)
			return 1
		}
		lat := make([]time.Duration, req.N)
		var err error
		var medians []int64
		switch req.Op {
		case "interleave":
			medians, err = benchInterleave(req.N, req.Paths, buf)
		case "read":
			err = benchTimed(lat, func(int) error { return benchRead(req.Paths[0], buf) })
		case "list":
			err = benchTimed(lat, func(int) error { return benchList(req.Paths[0], buf) })
		case "write":
			err = benchTimed(lat, func(i int) error { return benchWrite(req.Paths[0], []byte(req.Data[i%len(req.Data)])) })
		case "create":
			err = benchCreators(lat, req.Paths[:req.Creators])
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		resp := benchResp{P99: int64(benchP99(lat)), Medians: medians}
		if err != nil {
			resp.Err = err.Error()
		}
		if err := enc.Encode(resp); err != nil {
			return 1
		}
	}
}

// benchTimed runs op once per slot of lat and times each.
func benchTimed(lat []time.Duration, op func(i int) error) error {
	for i := range lat {
		start := time.Now()
		if err := op(i); err != nil {
			return err
		}
		lat[i] = time.Since(start)
	}
	return nil
}

// benchCreators runs len(lat) device lifecycles over one goroutine per
// token directory: mkdir a device, read current for its id, rmdir it.
func benchCreators(lat []time.Duration, dirs []string) error {
	var next atomic.Int64
	errs := make(chan error, len(dirs))
	buf := make([][]byte, len(dirs))
	var wg sync.WaitGroup
	for c, dir := range dirs {
		buf[c] = make([]byte, 64)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(lat) {
					return
				}
				start := time.Now()
				if err := benchLifecycle(dir, buf[c]); err != nil {
					errs <- err
					next.Store(int64(len(lat)))
					return
				}
				lat[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// benchLifecycle is mkdir devices/<model>, read current, rmdir devices/<id>.
func benchLifecycle(tokenDir string, buf []byte) error {
	if err := syscall.Mkdir(tokenDir+"/devices/"+benchModel, 0o755); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	fd, err := syscall.Open(tokenDir+"/current", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	n, err := syscall.Read(fd, buf)
	syscall.Close(fd)
	if err != nil {
		return err
	}
	id := strings.TrimSpace(string(buf[:n]))
	if err := syscall.Rmdir(tokenDir + "/devices/" + id); err != nil {
		return fmt.Errorf("rmdir %s: %w", id, err)
	}
	return nil
}

func benchP99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	lat = slices.Clone(lat)
	slices.Sort(lat)
	return lat[(len(lat)*99)/100]
}

// benchRead is cat's work: open, read until end of file, close. Raw
// syscalls keep the Go runtime's poller out of the measure.
func benchRead(path string, buf []byte) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// benchList is ls's work: open a directory, read its entries, close.
func benchList(path string, buf []byte) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	for {
		n, err := syscall.Getdents(fd, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// benchWrite is `echo ID > file`: open with O_TRUNC, one write, close.
func benchWrite(path string, data []byte) error {
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, err = syscall.Write(fd, data)
	if cerr := syscall.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// benchClient is a running client process.
type benchClient struct {
	enc *json.Encoder
	dec *json.Decoder
}

func benchStartClient(b *testing.B) *benchClient {
	b.Helper()
	// No preemption signals, and no collections to cause them: a signal
	// that lands while a request waits makes the kernel send a FUSE
	// INTERRUPT, which go-fuse answers with EAGAIN until it has read the
	// request, so that the kernel sends it again (seen: 88 times for one
	// request). cat and ls, which the client stands for, take no signals.
	in, out := benchStartSelf(b, benchClientEnv+"=1", "GOGC=off", "GODEBUG=asyncpreemptoff=1")
	return &benchClient{enc: json.NewEncoder(in), dec: json.NewDecoder(out)}
}

// benchStartSelf runs the test binary again with env added, as a process of
// its own spoken to through its stdin and stdout, until the benchmark ends.
func benchStartSelf(b *testing.B, env ...string) (io.WriteCloser, io.Reader) {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	return in, out
}

// run times b.N operations of req (req.N when set) in the client and
// reports their p99.
func (c *benchClient) run(b *testing.B, req benchReq) {
	b.Helper()
	if req.N == 0 {
		req.N = b.N
	}
	stopProfile := benchProfile(b)
	b.ResetTimer()
	if err := c.enc.Encode(req); err != nil {
		b.Fatal(err)
	}
	var resp benchResp
	if err := c.dec.Decode(&resp); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	stopProfile()
	if resp.Err != "" {
		b.Fatal(resp.Err)
	}
	b.ReportMetric(float64(resp.P99), "p99-ns")
}

// benchProfileEnv names a directory to write, for each benchmark, a CPU
// profile of the servers (this process) during its timed part: the last
// round's, as <benchmark name>.pprof (scripts/bench.sh PROFILE=DIR).
const benchProfileEnv = "MOREH_BENCH_PROFILE"

// benchProfile starts the CPU profile of b when benchProfileEnv is set and
// returns what stops it.
func benchProfile(b *testing.B) (stop func()) {
	dir := os.Getenv(benchProfileEnv)
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "_")+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// benchRoot is one place the benchmarks run: a floor or a tree.
type benchRoot struct{ name, dir string }

// benchFloors lays out bt's shape on both floors.
func benchFloors(b *testing.B, bt *benchTree) []benchRoot {
	shape := benchShapeOf(b, bt)
	return []benchRoot{{"tmpfs", benchTmpfs(b, shape)}, {"gofuse", benchFloor(b, shape)}}
}

// BenchmarkRead is open+read+close of each file by the path a user types
// (current, devices/ID/usage, status, tokens/default/status.json), on both
// floors and on the tree over both stores.
func BenchmarkRead(b *testing.B) {
	benchNeedRoot(b)
	small := benchMount(b, benchSeed(b, 1), 0)
	big := benchMount(b, benchSeed(b, benchTokens), 0)
	slow := benchMount(b, benchSeed(b, benchTokens), benchProbeWait)
	roots := append(benchFloors(b, big),
		benchRoot{"tree", small.dir}, benchRoot{"tree10k", big.dir}, benchRoot{"tree10k-slowprobe", slow.dir})
	client := benchStartClient(b)
	for _, f := range benchFiles {
		for _, r := range roots {
			b.Run(f.name+"/"+r.name, func(b *testing.B) {
				client.run(b, benchReq{Op: "read", Paths: []string{filepath.Join(r.dir, f.path)}})
			})
		}
	}
}

// BenchmarkCreate is mkdir + read current + rmdir of a device (two commits)
// by one creator and by 16 concurrent ones, each on a token of its own, in
// the store of 10,000 devices; against one bare bbolt commit of the size of
// a creation, on the same disk, and against the same lifecycles on the
// creation floor (a minimal go-fuse tree whose mkdir and rmdir each commit
// one key: what FUSE and the disk allow here).
func BenchmarkCreate(b *testing.B) {
	ctx := b.Context()
	benchNeedRoot(b)
	bt := benchMount(b, benchSeed(b, benchTokens), 0)
	names := make([]string, benchCreatorN)
	dirs := make([]string, benchCreatorN)
	for i := range dirs {
		names[i] = fmt.Sprintf("creator%02d", i)
		if _, _, err := bt.reg.CreateToken(ctx, names[i], benchPerToken); err != nil {
			b.Fatal(err)
		}
		dirs[i] = bt.path("tokens/" + names[i])
	}
	floor := benchCreateFloor(b, filepath.Dir(bt.dir), names)
	b.Run("commit", func(b *testing.B) { benchCommits(b, filepath.Join(filepath.Dir(bt.dir), "commit.db")) })
	client := benchStartClient(b)
	for _, r := range []struct {
		name string
		dirs []string
	}{{"gofuse-", floor}, {"", dirs}} {
		b.Run(r.name+"1creator", func(b *testing.B) {
			client.run(b, benchReq{Op: "create", Paths: r.dirs, Creators: 1})
		})
		b.Run(fmt.Sprintf("%s%dcreators", r.name, benchCreatorN), func(b *testing.B) {
			client.run(b, benchReq{Op: "create", Paths: r.dirs, Creators: benchCreatorN})
		})
	}
}

// benchCommits times bare bbolt commits, each of what a device creation
// writes: the device and token records, the index key and the next id.
func benchCommits(b *testing.B, path string) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	buckets := []string{"meta", "tokens", "devices", "token_devices"}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	token, _ := json.Marshal(store.Token{Name: "creator00", Number: 1001, MaxDevices: benchPerToken, Current: 12026, UseCount: 7,
		SecretHash: make([]byte, 32), Nonce: make([]byte, 16)})
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		id := uint64(20000 + i)
		device, _ := json.Marshal(store.Device{ID: id, Token: "creator00", Model: benchModel, Created: now, LastUsed: 7, Idle: now})
		key := []byte(strconv.FormatUint(id, 16))
		err := db.Update(func(tx *bolt.Tx) error {
			return errors.Join(
				tx.Bucket([]byte("devices")).Put(key, device),
				tx.Bucket([]byte("tokens")).Put([]byte("creator00"), token),
				tx.Bucket([]byte("token_devices")).Put(append([]byte("creator00\x00"), key...), nil),
				tx.Bucket([]byte("meta")).Put([]byte("next_device_id"), key),
			)
		})
		if err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(benchP99(lat)), "p99-ns")
}

// BenchmarkSwitch is `echo ID > current` (open O_TRUNC, one write, close),
// switching between two devices; the floors accept the write and keep
// nothing.
func BenchmarkSwitch(b *testing.B) {
	benchNeedRoot(b)
	bt := benchMount(b, benchSeed(b, benchTokens), 0)
	roots := append(benchFloors(b, bt), benchRoot{"tree10k", bt.dir})
	client := benchStartClient(b)
	ids := []string{strconv.Itoa(benchReadID-1) + "\n", strconv.Itoa(benchReadID) + "\n"}
	for _, r := range roots {
		b.Run(r.name, func(b *testing.B) {
			client.run(b, benchReq{Op: "write", Paths: []string{filepath.Join(r.dir, "current")}, Data: ids})
		})
	}
}

// BenchmarkList is `ls devices` (open, getdents, close) with the token at
// its limit of 10 devices.
func BenchmarkList(b *testing.B) {
	benchNeedRoot(b)
	bt := benchMount(b, benchSeed(b, benchTokens), 0)
	roots := append(benchFloors(b, bt), benchRoot{"tree10k", bt.dir})
	client := benchStartClient(b)
	for _, r := range roots {
		b.Run(r.name, func(b *testing.B) {
			client.run(b, benchReq{Op: "list", Paths: []string{filepath.Join(r.dir, "devices")}})
		})
	}
}

// BenchmarkSMI is scripts/moreh-smi as a whole command (bash, the checks,
// cat status) on the tree, against `bash -c 'cat status'` on the floors.
func BenchmarkSMI(b *testing.B) {
	benchNeedRoot(b)
	smi, err := filepath.Abs("../scripts/moreh-smi")
	if err != nil {
		b.Fatal(err)
	}
	bt := benchMount(b, benchSeed(b, benchTokens), 0)
	home := b.TempDir()
	env := []string{"LC_ALL=C", "PATH=/usr/bin:/bin", "HOME=" + home}
	floors := benchFloors(b, bt)
	commands := []struct {
		name string
		args []string
		root string
	}{
		{"tmpfs", []string{"bash", "-c", `cat "$0/status"`, floors[0].dir}, floors[0].dir},
		{"gofuse", []string{"bash", "-c", `cat "$0/status"`, floors[1].dir}, floors[1].dir},
		{"tree10k", []string{"bash", smi}, bt.dir},
	}
	for _, c := range commands {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				cmd := exec.Command(c.args[0], c.args[1:]...)
				cmd.Env = append(env, "MOREH_ROOT="+c.root)
				if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "KT AI Accelerator") {
					b.Fatalf("%s: %v\n%s", c.name, err, out)
				}
				lat[i] = time.Since(start)
			}
			b.StopTimer()
			b.ReportMetric(float64(benchP99(lat)), "p99-ns")
		})
	}
}

// BenchmarkRequests counts the FUSE requests that each operation costs
// (req/op), on the go-fuse floor and on the tree over 10,000 devices: the
// round trips that the latencies above are made of, a number that does not
// depend on the machine or its load. Both servers log their requests (go-fuse
// debug mode) to a counter; ns/op here includes that logging.
func BenchmarkRequests(b *testing.B) {
	ctx := b.Context()
	benchNeedRoot(b)
	counter := countRequests(b)
	bt := benchMount(b, benchSeed(b, benchTokens), 0, true)
	shape := benchShapeOf(b, bt)
	roots := []benchRoot{{"gofuse", benchFloor(b, shape, true)}, {"tree10k", bt.dir}}
	client := benchStartClient(b)
	ids := []string{strconv.Itoa(benchReadID-1) + "\n", strconv.Itoa(benchReadID) + "\n"}
	type op struct {
		name string
		req  func(dir string) benchReq
	}
	var ops []op
	for _, f := range benchFiles {
		ops = append(ops, op{"read/" + f.name, func(dir string) benchReq {
			return benchReq{Op: "read", Paths: []string{filepath.Join(dir, f.path)}}
		}})
	}
	ops = append(ops,
		op{"list", func(dir string) benchReq { return benchReq{Op: "list", Paths: []string{filepath.Join(dir, "devices")}} }},
		op{"switch", func(dir string) benchReq {
			return benchReq{Op: "write", Paths: []string{filepath.Join(dir, "current")}, Data: ids}
		}})
	// Device lifecycles, on the creation floor and on a token of the tree.
	if _, _, err := bt.reg.CreateToken(ctx, "creator00", benchPerToken); err != nil {
		b.Fatal(err)
	}
	floorCreator := benchCreateFloor(b, filepath.Dir(bt.dir), []string{"creator00"}, true)[0]
	ops = append(ops, op{"create", func(dir string) benchReq {
		tokenDir := filepath.Join(dir, "tokens", "creator00")
		if dir == roots[0].dir {
			tokenDir = floorCreator
		}
		return benchReq{Op: "create", Paths: []string{tokenDir}, Creators: 1}
	}})
	const per = 20 // operations counted per b.N
	for _, o := range ops {
		for _, r := range roots {
			b.Run(o.name+"/"+r.name, func(b *testing.B) {
				req := o.req(r.dir)
				req.N = 1 // warm the kernel's caches as the timed benchmarks do
				client.run(b, req)
				counter.n.Store(0)
				req.N = per * b.N
				client.run(b, req)
				b.ReportMetric(float64(counter.n.Load())/float64(req.N), "req/op")
			})
		}
	}
}
