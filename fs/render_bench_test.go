package fs

// Benchmarks of rendering alone, below FUSE: what an open of status,
// status.json or usage costs in CPU, over the big store of the mount
// benchmarks (10,000 devices over 1,000 tokens) with a job on the device
// that is read. Unlike those, they need no root.

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// benchRenderTree is a tree over a copy of the big seed store, with a
// sampled sim pool and a sleeping process attached to benchReadID.
func benchRenderTree(b *testing.B) *tree {
	ctx := b.Context()
	b.Helper()
	dbPath := filepath.Join(b.TempDir(), "moreh.db")
	if err := benchCopy(dbPath, benchSeed(b, benchTokens)); err != nil {
		b.Fatal(err)
	}
	t := newRenderTree(b, dbPath, benchOptions())
	job := exec.Command("sleep", "3600")
	if err := job.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { job.Process.Kill(); job.Wait() })
	info, err := (gpu.ProcFS{Root: "/proc"}).Read(job.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := t.Registry.Attach(ctx, "default", benchReadID, store.Proc{PID: info.PID, Start: info.Start}); err != nil {
		b.Fatal(err)
	}
	t.backgroundRound(b)
	return t
}

func BenchmarkRender(b *testing.B) {
	t := benchRenderTree(b)
	dev := &deviceDir{fixedDir: fixedDir{t: t, owned: owned{token: "default"}}, id: benchReadID}
	ctx := context.Background()
	for _, r := range []struct {
		name   string
		render func() ([]byte, error)
	}{
		{"status", func() ([]byte, error) { return t.renderStatus(ctx, "default", 0) }},
		{"status.json", func() ([]byte, error) { return t.renderStatusJSON(ctx, "default", 0) }},
		{"device-status", func() ([]byte, error) { return t.renderStatus(ctx, "default", benchReadID) }},
		{"device-status.json", func() ([]byte, error) { return t.renderStatusJSON(ctx, "default", benchReadID) }},
		{"usage", func() ([]byte, error) { return dev.renderUsage(ctx) }},
	} {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.render(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
