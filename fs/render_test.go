package fs

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// newRenderTree is a tree without a mount over the bbolt file at dbPath,
// with a simulated pool whose sampler samples only when told.
func newRenderTree(tb testing.TB, dbPath string, opts store.Options) *tree {
	ctx := tb.Context()
	tb.Helper()
	eng, err := store.OpenBolt(dbPath, time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close() })
	reg, err := store.Open(ctx, eng, opts)
	if err != nil {
		tb.Fatal(err)
	}
	probe, err := gpu.NewSim("sim:4x64GB")
	if err != nil {
		tb.Fatal(err)
	}
	rt := node.New(node.Config{Registry: reg, Probe: probe})
	if _, err := rt.RegisterGPUs(ctx); err != nil {
		tb.Fatal(err)
	}
	return newTree(Config{Node: rt, Version: "26.11.0"})
}

// backgroundRound is one round of the background: the reaper's news of the jobs to
// the probe and the sampler, then a sample.
func (t *tree) backgroundRound(tb testing.TB) {
	ctx := tb.Context()
	tb.Helper()
	t.Node.Round(ctx)
	t.Node.SampleNow(ctx)
}

// TestStatusNamesProcesses: the Processes table names a process as the last
// sample read it (so a read of status reads no /proc), and reads /proc
// for a process attached since.
func TestStatusNamesProcesses(t *testing.T) {
	ctx := t.Context()
	tr := newRenderTree(t, filepath.Join(t.TempDir(), "moreh.db"), store.Options{})
	dev, err := tr.Registry.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	// A shell that renames itself, as an exec would, when told, and says so.
	cmd := exec.Command("bash", "-c", `read; printf renamed > /proc/self/comm; echo done; read`)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	info, err := (gpu.ProcFS{Root: "/proc"}).Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Registry.Attach(ctx, "default", dev.ID, store.Proc{PID: info.PID, Start: info.Start}); err != nil {
		t.Fatal(err)
	}
	name := func() string {
		t.Helper()
		status, err := tr.renderStatus(ctx, "default", dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		cell := "|  " + strconv.Itoa(info.PID) + "  |  "
		_, rest, ok := strings.Cut(string(status), cell)
		if !ok {
			t.Fatalf("status has no row of pid %d:\n%s", info.PID, status)
		}
		return rest[:strings.IndexByte(rest, ' ')]
	}

	if got := name(); got != "bash" {
		t.Errorf("attached since the last sample: %q, want bash", got)
	}
	tr.backgroundRound(t)
	if got := name(); got != "bash" {
		t.Errorf("after a sample: %q, want bash", got)
	}
	in.Write([]byte("\n"))
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "done\n" {
		t.Fatalf("the shell did not rename itself: %q %v", line, err)
	}
	if got := name(); got != "bash" {
		t.Errorf("renamed since the last sample: %q, want the sample's bash", got)
	}
	tr.backgroundRound(t)
	if got := name(); got != "renamed" {
		t.Errorf("after the next sample: %q, want renamed", got)
	}
}
