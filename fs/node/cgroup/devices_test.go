package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Opening a node the program allows reaches the (absent) driver: ENXIO for
// NVIDIA's 195:N on a machine without it, success for 1:3 (null). A denied
// node answers EPERM from the cgroup, before any driver is asked.
func TestSetDevicesDeniesExactlyTheListedNodes(t *testing.T) {
	m := testManager(t)
	if err := Supported(); err != nil {
		t.Skipf("device programs unsupported: %v", err)
	}
	dir := mknodGPUs(t)
	nodes := map[string]Device{"nvidia0": {'c', 195, 0}, "nvidia1": {'c', 195, 1}}
	g := create(t, m, 1)
	if got := openAll(t, g, dir); got != "nvidia0 ENXIO\nnvidia1 ENXIO\nnull ok\n" {
		t.Fatalf("with no program:\n%s", got)
	}
	if err := g.SetDevices([]Device{nodes["nvidia1"]}); err != nil {
		t.Fatal(err)
	}
	if got := openAll(t, g, dir); got != "nvidia0 ENXIO\nnvidia1 EPERM\nnull ok\n" {
		t.Errorf("denying nvidia1:\n%s", got)
	}
	if err := g.SetDevices([]Device{nodes["nvidia0"]}); err != nil {
		t.Fatal(err)
	}
	if got := openAll(t, g, dir); got != "nvidia0 EPERM\nnvidia1 ENXIO\nnull ok\n" {
		t.Errorf("denying nvidia0 instead:\n%s", got)
	}
	if err := g.SetDevices([]Device{nodes["nvidia0"], nodes["nvidia1"], {'b', 195, 1}}); err != nil {
		t.Fatal(err)
	}
	if got := openAll(t, g, dir); got != "nvidia0 EPERM\nnvidia1 EPERM\nnull ok\n" {
		t.Errorf("denying both (a waiting job):\n%s", got)
	}
	// mknod is an access too: a job cannot make itself a denied node elsewhere.
	got := runHelperIn(t, g, "mknod", filepath.Join(dir, "again0")+":195:0", filepath.Join(dir, "other")+":195:7")
	if want := fmt.Sprintf("%s EPERM\n%s ok\n", filepath.Join(dir, "again0"), filepath.Join(dir, "other")); got != want {
		t.Errorf("mknod in the job:\n%s\nwant:\n%s", got, want)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
}

// The program belongs to the cgroup, not to the daemon's handle: a restarted
// daemon (a new Manager and Group) finds the job still confined, and its
// SetDevices replaces the old program rather than adding to it.
func TestDevicesOutliveTheHandle(t *testing.T) {
	m := testManager(t)
	if err := Supported(); err != nil {
		t.Skipf("device programs unsupported: %v", err)
	}
	dir := mknodGPUs(t)
	g := create(t, m, 1)
	if has, err := g.HasDevices(); has || err != nil {
		t.Fatalf("HasDevices of a new job = %v, %v", has, err)
	}
	if err := g.SetDevices([]Device{{'c', 195, 1}}); err != nil {
		t.Fatal(err)
	}
	restarted, err := New(m.Dir())
	if err != nil {
		t.Fatal(err)
	}
	again, err := restarted.Open(1)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := again.HasDevices(); !has || err != nil {
		t.Fatalf("HasDevices after a restart = %v, %v", has, err)
	}
	if got := openAll(t, again, dir); got != "nvidia0 ENXIO\nnvidia1 EPERM\nnull ok\n" {
		t.Errorf("after a restart, before SetDevices:\n%s", got)
	}
	if err := again.SetDevices([]Device{{'c', 195, 0}}); err != nil {
		t.Fatal(err)
	}
	if got := openAll(t, again, dir); got != "nvidia0 EPERM\nnvidia1 ENXIO\nnull ok\n" {
		t.Errorf("after a restart's SetDevices (replaced, not stacked):\n%s", got)
	}
	if n := countPrograms(t, again); n != 1 {
		t.Errorf("%d device programs on the job, want 1", n)
	}
}

func countPrograms(t *testing.T, g *Group) int {
	cg, err := os.Open(g.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Programs)
}

// mknodGPUs makes nvidia0 (195:0), nvidia1 (195:1) and null (1:3) in a temporary directory.
func mknodGPUs(t *testing.T) string {
	dir := t.TempDir()
	for name, d := range map[string]Device{"nvidia0": {'c', 195, 0}, "nvidia1": {'c', 195, 1}, "null": {'c', 1, 3}} {
		if err := unix.Mknod(filepath.Join(dir, name), unix.S_IFCHR|0o666, int(unix.Mkdev(d.Major, d.Minor))); err != nil {
			t.Fatalf("mknod %s: %v", name, err)
		}
	}
	return dir
}

// A block node with the numbers of a denied char node is another device.
func TestSetDevicesTellsBlockFromChar(t *testing.T) {
	m := testManager(t)
	if err := Supported(); err != nil {
		t.Skipf("device programs unsupported: %v", err)
	}
	dir := t.TempDir()
	if err := unix.Mknod(filepath.Join(dir, "blk"), unix.S_IFBLK|0o666, int(unix.Mkdev(195, 0))); err != nil {
		t.Fatal(err)
	}
	g := create(t, m, 1)
	if err := g.SetDevices([]Device{{'c', 195, 0}}); err != nil {
		t.Fatal(err)
	}
	if got, want := runHelperIn(t, g, "open", filepath.Join(dir, "blk")), filepath.Join(dir, "blk")+" ENXIO\n"; got != want {
		t.Errorf("block 195:0 with char 195:0 denied: %q, want %q", got, want)
	}
}

func TestSetDevicesRejectsBadNodes(t *testing.T) {
	for _, d := range []Device{{'x', 1, 3}, {'c', 1 << 12, 0}, {'c', 0, 1 << 20}} {
		if _, err := denyInstructions([]Device{d}); err == nil {
			t.Errorf("denyInstructions(%v) = nil error", d)
		}
	}
}

func openAll(t *testing.T, g *Group, dir string) string {
	t.Helper()
	out := runHelperIn(t, g, "open", filepath.Join(dir, "nvidia0"), filepath.Join(dir, "nvidia1"), filepath.Join(dir, "null"))
	return strings.ReplaceAll(out, dir+"/", "")
}

// runHelperIn runs this test binary as a helper inside g and returns its report.
func runHelperIn(t *testing.T, g *Group, op string, args ...string) string {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Path = mustExecutable(t)
	cmd.Env = append(cmd.Environ(), helperEnv+"="+op)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	startIn(t, g, cmd)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper %s: %v: %s", op, err, out.String())
	}
	return out.String()
}

// addThenDetach is SetDevices' replacement on kernels before 5.6 (no
// BPF_F_REPLACE); this kernel has it, so the fallback is driven directly.
func TestAddThenDetachReplaces(t *testing.T) {
	m := testManager(t)
	if err := Supported(); err != nil {
		t.Skipf("device programs unsupported: %v", err)
	}
	dir := mknodGPUs(t)
	g := create(t, m, 1)
	if err := g.SetDevices([]Device{{'c', 195, 1}}); err != nil {
		t.Fatal(err)
	}
	cg, err := os.Open(g.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	old, err := ownProgram(int(cg.Fd()))
	if err != nil || old == nil {
		t.Fatalf("ownProgram = %v, %v", old, err)
	}
	defer old.Close()
	prog, err := denyProgram([]Device{{'c', 195, 0}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	opts := link.RawAttachProgramOptions{Target: int(cg.Fd()), Program: prog, Attach: ebpf.AttachCGroupDevice, Flags: unix.BPF_F_ALLOW_MULTI}
	if err := addThenDetach(opts, old); err != nil {
		t.Fatal(err)
	}
	if got := openAll(t, g, dir); got != "nvidia0 EPERM\nnvidia1 ENXIO\nnull ok\n" {
		t.Errorf("after addThenDetach:\n%s", got)
	}
	if n := countPrograms(t, g); n != 1 {
		t.Errorf("%d device programs on the job, want 1", n)
	}
}
