package fs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The floor of a read, served by a process of its own: the test binary
// started again with benchFloorEnv set, serving a shape of the tree's bytes
// from memory with go-fuse (benchFloorRoot), as a daemon other than the
// measuring one. The client reads the tree and the floor in turn, read by
// read, so that both see the same machine at the same moments.
const benchFloorEnv = "MOREH_BENCH_FLOOR"

func init() {
	if os.Getenv(benchFloorEnv) == "1" {
		os.Exit(benchFloorMain(os.Stdin, os.Stdout))
	}
}

// benchFloorReq is what the floor process is told: where to mount what.
type benchFloorReq struct {
	Dir   string
	Shape benchShape
	Kept  []string // the files of Shape read as kept files
}

// benchFloorMain mounts the shape it is given, says "ready", and unmounts
// when its stdin ends.
func benchFloorMain(in io.Reader, out io.Writer) int {
	r := bufio.NewReader(in)
	var req benchFloorReq
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "bench floor:", err)
		return 1
	}
	second := time.Second
	server, err := fusefs.Mount(req.Dir, &benchFloorRoot{shape: req.Shape, kept: req.Kept}, &fusefs.Options{
		MountOptions: fuse.MountOptions{
			FsName: "moreh-floor", Name: "moreh-floor", DirectMount: true, AllowOther: true,
			MaxWrite: 64 * 1024, Options: []string{"default_permissions"}, DisableSplice: true,
		},
		EntryTimeout: &second, AttrTimeout: &second, NullPermissions: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench floor:", err)
		return 1
	}
	if err := server.WaitMount(); err != nil {
		fmt.Fprintln(os.Stderr, "bench floor:", err)
		return 1
	}
	fmt.Fprintln(out, "ready")
	io.Copy(io.Discard, r)
	if err := server.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "bench floor: unmount:", err)
		return 1
	}
	return 0
}

// benchStartFloor serves shape from a process of its own on a new
// directory, until the benchmark ends.
func benchStartFloor(b *testing.B, shape benchShape, kept []string) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "floor")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	in, out := benchStartSelf(b, benchFloorEnv+"=1")
	if err := json.NewEncoder(in).Encode(benchFloorReq{Dir: dir, Shape: shape, Kept: kept}); err != nil {
		b.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		b.Fatalf("the floor process: %q, %v", line, err)
	}
	return dir
}

// benchKept are the kept files read on their direct path, against tmpfs.
var benchKept = []struct{ name, path string }{
	{"tokens-current", "tokens/default/current"},
	{"model", "tokens/default/devices/" + strconv.Itoa(benchReadID) + "/model"},
}

// BenchmarkReadFloor reads each file of benchFiles on the tree and on the
// go-fuse floor in its own process, in turn, and each kept file on its
// direct path on the tree, on tmpfs and as a kept file of the floor, in
// turn; it reports the ratios of the medians (x-floor, x-tmpfs; for kept
// files also x-keptfloor and the floor's own floor-x-tmpfs: what an open
// that reaches any FUSE server costs here) and each median.
func BenchmarkReadFloor(b *testing.B) {
	benchNeedRoot(b)
	bt := benchMount(b, benchSeed(b, 1), 0)
	shape := benchShapeOf(b, bt)
	for _, f := range benchKept {
		data, err := os.ReadFile(bt.path(f.path))
		if err != nil {
			b.Fatal(err)
		}
		shape[f.path] = string(data)
	}
	var kept []string
	for _, f := range benchKept {
		kept = append(kept, f.path)
	}
	floor, tmpfs := benchStartFloor(b, shape, kept), benchTmpfs(b, shape)
	client := benchStartClient(b)
	for _, f := range benchFiles {
		b.Run(f.name, func(b *testing.B) {
			meds := client.interleave(b, filepath.Join(bt.dir, f.path), filepath.Join(floor, f.path))
			b.ReportMetric(float64(meds[0]), "tree-ns")
			b.ReportMetric(float64(meds[1]), "floor-ns")
			b.ReportMetric(float64(meds[0])/float64(meds[1]), "x-floor")
		})
	}
	for _, f := range benchKept {
		b.Run(f.name, func(b *testing.B) {
			meds := client.interleave(b, filepath.Join(bt.dir, f.path), filepath.Join(tmpfs, f.path), filepath.Join(floor, f.path))
			b.ReportMetric(float64(meds[0]), "tree-ns")
			b.ReportMetric(float64(meds[1]), "tmpfs-ns")
			b.ReportMetric(float64(meds[2]), "keptfloor-ns")
			b.ReportMetric(float64(meds[0])/float64(meds[1]), "x-tmpfs")
			b.ReportMetric(float64(meds[0])/float64(meds[2]), "x-keptfloor")
			b.ReportMetric(float64(meds[2])/float64(meds[1]), "floor-x-tmpfs")
		})
	}
}

// interleave reads paths in turn, b.N rounds, in the client, and returns
// the median of each path's reads.
func (c *benchClient) interleave(b *testing.B, paths ...string) []int64 {
	b.Helper()
	b.ResetTimer()
	if err := c.enc.Encode(benchReq{Op: "interleave", N: b.N, Paths: paths}); err != nil {
		b.Fatal(err)
	}
	var resp benchResp
	if err := c.dec.Decode(&resp); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if resp.Err != "" {
		b.Fatal(resp.Err)
	}
	return resp.Medians
}

// benchInterleave is the client's side of interleave.
func benchInterleave(rounds int, paths []string, buf []byte) ([]int64, error) {
	lat := make([][]time.Duration, len(paths))
	for i := range lat {
		lat[i] = make([]time.Duration, rounds)
	}
	for r := range rounds {
		for i, p := range paths {
			start := time.Now()
			if err := benchRead(p, buf); err != nil {
				return nil, err
			}
			lat[i][r] = time.Since(start)
		}
	}
	meds := make([]int64, len(paths))
	for i, l := range lat {
		slices.Sort(l)
		meds[i] = int64(l[len(l)/2])
	}
	return meds, nil
}
