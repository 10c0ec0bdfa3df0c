package fs

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// testTree is a real mount of the tree over a real bbolt file.
type testTree struct {
	dir    string // the mountpoint
	reg    *store.Registry
	engine store.Engine
	tree   *tree
}

// path joins names below the mountpoint.
func (tt *testTree) path(elem ...string) string {
	return filepath.Join(append([]string{tt.dir}, elem...)...)
}

// mountTree mounts the tree in t.TempDir() and unmounts it in t.Cleanup.
func mountTree(t *testing.T, opts store.Options) *testTree {
	t.Helper()
	probe, err := gpu.NewSim("sim:4x64GB")
	if err != nil {
		t.Fatal(err)
	}
	return mountTreeWith(t, opts, probe)
}

// mountTreeWith is mountTree over another GPU probe.
func mountTreeWith(t *testing.T, opts store.Options, probe gpu.Probe) *testTree {
	t.Helper()
	return mountTreeConfig(t, opts, probe, nil)
}

// mountTreeConfig is mountTreeWith with a last say on the tree's Config.
func mountTreeConfig(t *testing.T, opts store.Options, probe gpu.Probe, configure func(*Config)) *testTree {
	ctx := t.Context()
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting without fusermount needs root")
	}
	base := t.TempDir()
	// Other users' shells must reach the mount: open the temp dirs to them.
	for dir := base; dir != os.TempDir(); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := store.OpenBolt(filepath.Join(base, "moreh.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Key == nil {
		opts.Key = []byte("a test key of thirty-two bytes!!")
	}
	reg, err := store.Open(ctx, eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	rt := node.New(node.Config{Registry: reg, Probe: probe, SampleEvery: 50 * time.Millisecond, ReapEvery: 20 * time.Millisecond, ResetGrace: time.Second, Log: log})
	if _, err := rt.RegisterGPUs(ctx); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	rt.Start(ctx)
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Node: rt, Version: "22.10.1", AllowOther: true,
		Log: log,
		Now: func() time.Time { return time.Date(2022, 10, 17, 13, 40, 41, 0, time.UTC) },
	}
	if configure != nil {
		configure(&cfg)
	}
	server, tree, err := mount(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		stop()
		rt.Wait()
		eng.Close()
	})
	return &testTree{dir: dir, reg: reg, engine: eng, tree: tree}
}

// testWriter sends the daemon's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
