package fs

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/store"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// writeFile is open(O_WRONLY|O_TRUNC), one write(2), close, as `echo > file`
// does. Raw syscalls: os.File would wait on the poller after EAGAIN.
func writeFile(path, content string) error {
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	if _, err := syscall.Write(fd, []byte(content)); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

func listDir(t *testing.T, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatalf("readdir %s: %v", path, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRootLayout(t *testing.T) {
	tt := mountTree(t, store.Options{})
	want := []string{"README", "admin", "current", "devices", "metrics", "models", "pool", "pool.table", "query-gpu", "queue", "queue.table", "status", "token", "tokens", "version"}
	if got := listDir(t, tt.dir); !slices.Equal(got, want) {
		t.Fatalf("root lists %v, want %v", got, want)
	}
	for _, name := range []string{"devices", "current", "status"} {
		target, err := os.Readlink(tt.path(name))
		if err != nil || target != "tokens/default/"+name {
			t.Errorf("readlink %s = %q, %v; want tokens/default/%s", name, target, err, name)
		}
	}
	if got := listDir(t, tt.path("tokens")); !slices.Equal(got, []string{"default"}) {
		t.Errorf("tokens lists %v", got)
	}
	wantToken := []string{"current", "devices", "devices.table", "errors", "history", "history.csv", "history.json", "limit", "status", "status.json", "usage"}
	if got := listDir(t, tt.path("tokens", "default")); !slices.Equal(got, wantToken) {
		t.Errorf("tokens/default lists %v, want %v", got, wantToken)
	}
	if got := readFile(t, tt.path("version")); got != "moreh-smi 22.10.1\nclient 22.10.1\nserver 22.10.1\ncontainment: proc (background children can escape)\n" {
		t.Errorf("version = %q", got)
	}
	if got := readFile(t, tt.path("tokens", "default", "limit")); got != "max 5\nused 0\n" {
		t.Errorf("limit = %q", got)
	}
	if got := readFile(t, tt.path("current")); got != "" {
		t.Errorf("current of a fresh token = %q, want empty", got)
	}
	// With tokens off every local user shares the default token: its modes
	// are DESIGN.md's opened to all (TestTokensIsolateUsers has them closed).
	modes := map[string]os.FileMode{
		"README": 0o444, "version": 0o444, "models": 0o444, "pool": 0o444, "token": 0o222,
		"tokens/default/current": 0o666, "tokens/default/status": 0o444, "tokens/default/errors": 0o444,
		"tokens/default/limit": 0o444, "tokens/default": os.ModeDir | 0o777, "admin": os.ModeDir | 0o700,
		"tokens/default/devices": os.ModeDir | 0o777,
	}
	// Kept files show their size (the page cache reads up to it); the
	// others 0, as /proc's.
	kept := map[string]bool{"README": true, "version": true, "models": true, "tokens/default/current": true, "tokens/default/limit": true}
	for name, mode := range modes {
		fi, err := os.Stat(tt.path(name))
		size := int64(0)
		if kept[name] {
			size = int64(len(readFile(t, tt.path(name))))
		}
		if err != nil || fi.Mode() != mode || fi.Size() != size {
			t.Errorf("stat %s = %v size %d, %v; want %v size %d", name, fi.Mode(), fi.Size(), err, mode, size)
		}
	}
}

func TestModelsFile(t *testing.T) {
	tt := mountTree(t, store.Options{})
	lines := strings.Split(strings.TrimSuffix(readFile(t, tt.path("models")), "\n"), "\n")
	if len(lines) != 12 {
		t.Fatalf("models has %d lines, want 12", len(lines))
	}
	for _, want := range []string{"1\tSmall.64GB\t1\t65520", "2\tMedium.128GB\t2\t131040\tdefault", "11\t24xLarge.12288GB\t192\t12579840", "12\t1.5xLarge.768GB\t12\t786240"} {
		if !slices.Contains(lines, want) {
			t.Errorf("models lacks %q", want)
		}
	}
	if lines[0] != "1\tSmall.64GB\t1\t65520" || lines[11] != "12\t1.5xLarge.768GB\t12\t786240" {
		t.Errorf("models out of seed order: first %q last %q", lines[0], lines[11])
	}
}

func TestMkdirCreatesDeviceListedByID(t *testing.T) {
	tt := mountTree(t, store.Options{})
	if err := os.Mkdir(tt.path("devices", "Large.256GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, tt.path("devices")); !slices.Equal(got, []string{"2026"}) {
		t.Fatalf("devices lists %v, want [2026]", got)
	}
	if _, err := os.Stat(tt.path("devices", "Large.256GB")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("the model name is left behind as an entry: stat = %v", err)
	}
	if got := readFile(t, tt.path("current")); got != "2026\n" {
		t.Errorf("current = %q, want 2026", got)
	}
	if got := readFile(t, tt.path("devices", "2026", "model")); got != "Large.256GB\n" {
		t.Errorf("model = %q", got)
	}
	if got := listDir(t, tt.path("devices", "2026")); !slices.Equal(got, []string{"env", "fits", "gpus", "job", "model", "procs", "reset", "status", "status.json", "usage", "waiting"}) {
		t.Errorf("device dir lists %v", got)
	}
	if got := readFile(t, tt.path("devices", "2026", "usage")); got != "memory_used_mib 0\nmemory_total_mib 262080\nutilization -\n" {
		t.Errorf("usage = %q", got)
	}
	// Short forms and any case name the same model; output is canonical.
	if err := os.Mkdir(tt.path("devices", "1.5XLARGE"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tt.path("devices", "2027", "model")); got != "1.5xLarge.768GB\n" {
		t.Errorf("model of 1.5XLARGE = %q", got)
	}
	if got := readFile(t, tt.path("current")); got != "2027\n" {
		t.Errorf("the new device is not current: %q", got)
	}
}

func TestFirstIDAndIDsNeverReused(t *testing.T) {
	tt := mountTree(t, store.Options{FirstID: 5000})
	for _, m := range []string{"Small.64GB", "Small.64GB"} {
		if err := os.Mkdir(tt.path("devices", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Rmdir(tt.path("devices", "5001")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tt.path("devices", "small"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, tt.path("devices")); !slices.Equal(got, []string{"5000", "5002"}) {
		t.Fatalf("devices = %v, want [5000 5002]", got)
	}
}

func TestSwitchAndChangeModel(t *testing.T) {
	tt := mountTree(t, store.Options{})
	for _, m := range []string{"Small.64GB", "Medium.128GB"} {
		if err := os.Mkdir(tt.path("devices", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFile(tt.path("current"), "2026\n"); err != nil {
		t.Fatalf("switch: %v", err)
	}
	if got := readFile(t, tt.path("current")); got != "2026\n" {
		t.Errorf("current = %q after switch", got)
	}
	if err := writeFile(tt.path("devices", "2027", "model"), "xlarge"); err != nil {
		t.Fatalf("change model: %v", err)
	}
	if got := readFile(t, tt.path("devices", "2027", "model")); got != "xLarge.512GB\n" {
		t.Errorf("model = %q", got)
	}
	status := readFile(t, tt.path("status"))
	for _, want := range []string{"|  * 2026  |  KT AI Accelerator  |  Small.64GB    |", "|    2027  |  KT AI Accelerator  |  xLarge.512GB  |", "   524160 MiB   "} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	one := readFile(t, tt.path("devices", "2027", "status"))
	if strings.Contains(one, "2026") || !strings.Contains(one, "|    2027  |") {
		t.Errorf("devices/2027/status is not only device 2027:\n%s", one)
	}
}

func TestRemoveFallsBackToMostRecentlyUsed(t *testing.T) {
	tt := mountTree(t, store.Options{})
	for range 3 {
		if err := os.Mkdir(tt.path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Use order: 2027 (created), 2026 (switched), 2028 (switched, current).
	for _, id := range []string{"2026", "2028"} {
		if err := writeFile(tt.path("current"), id); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct{ remove, current string }{{"2028", "2026\n"}, {"2026", "2027\n"}, {"2027", ""}}
	for _, s := range steps {
		if err := syscall.Rmdir(tt.path("devices", s.remove)); err != nil {
			t.Fatalf("rmdir %s: %v", s.remove, err)
		}
		if got := readFile(t, tt.path("current")); got != s.current {
			t.Errorf("after rmdir %s current = %q, want %q", s.remove, got, s.current)
		}
	}
}

// TestShell drives the tree with the commands a person types.
func TestShell(t *testing.T) {
	tt := mountTree(t, store.Options{})
	script := `set -e
cd "$1"
mkdir devices/Large.256GB
mkdir devices/small
ls devices
cat current
echo 2026 > current
cat current
echo xLarge.512GB > devices/2027/model
cat devices/2027/model
rmdir devices/2026
cat current
if echo 9999 > current 2>/dev/null; then echo "switch to 9999 succeeded"; fi
ls devices
cat tokens/default/limit
`
	out, err := exec.Command("bash", "-c", script, "bash", tt.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("script failed: %v\n%s", err, out)
	}
	want := "2026\n2027\n2027\n2026\nxLarge.512GB\n2027\n2027\nmax 5\nused 1\n"
	if string(out) != want {
		t.Errorf("shell output:\n%s\nwant:\n%s", out, want)
	}
}

// TestPythonOS drives the tree with Python's os module, errno included.
func TestPythonOS(t *testing.T) {
	tt := mountTree(t, store.Options{MaxDevices: 2})
	script := `
import errno, os, sys
root = sys.argv[1]
os.mkdir(os.path.join(root, "devices", "Medium.128GB"))
with open(os.path.join(root, "current")) as f:
    dev = f.read().strip()
print("created", dev, sorted(os.listdir(os.path.join(root, "devices"))))
os.mkdir(os.path.join(root, "devices", "large"))
try:
    os.mkdir(os.path.join(root, "devices", "large"))
except OSError as e:
    print("third:", errno.errorcode[e.errno])
fd = os.open(os.path.join(root, "current"), os.O_WRONLY | os.O_TRUNC)
os.write(fd, dev.encode())
os.close(fd)
print("current", open(os.path.join(root, "current")).read().strip())
try:
    os.rmdir(os.path.join(root, "devices", "4242"))
except OSError as e:
    print("rmdir 4242:", errno.errorcode[e.errno])
os.rmdir(os.path.join(root, "devices", dev))
print("left", os.listdir(os.path.join(root, "devices")), open(os.path.join(root, "current")).read().strip())
`
	out, err := exec.Command("python3", "-c", script, tt.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("python failed: %v\n%s", err, out)
	}
	want := "created 2026 ['2026']\nthird: EDQUOT\ncurrent 2026\nrmdir 4242: ENOENT\nleft ['2027'] 2027\n"
	if string(out) != want {
		t.Errorf("python output:\n%s\nwant:\n%s", out, want)
	}
}

// TestSnapshotAtOpen: an open file keeps the content it had at open, but
// for a kept file (current): once a commit that changed it has returned, no
// read shows its old content (the page cache is shared by every open).
func TestSnapshotAtOpen(t *testing.T) {
	tt := mountTree(t, store.Options{})
	for range 2 {
		if err := os.Mkdir(tt.path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(tt.path("current"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	status, err := os.Open(tt.path("status"))
	if err != nil {
		t.Fatal(err)
	}
	defer status.Close()
	head := make([]byte, 10)
	if _, err := status.Read(head); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(tt.path("current"), "2026"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(tt.path("devices", "2027")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 100)
	n, _ := f.Read(b)
	if string(b[:n]) != "2026\n" {
		t.Errorf("open current read %q after a switch, want 2026: a kept file never shows content older than a returned commit", b[:n])
	}
	rest := make([]byte, 1<<16)
	n, _ = status.Read(rest)
	if !strings.Contains(string(rest[:n]), "|  * 2027  |") {
		t.Errorf("status read after rmdir lost its snapshot:\n%s", rest[:n])
	}
}

// TestOneWriteOneCommand: each write(2) on one open is its own command.
func TestOneWriteOneCommand(t *testing.T) {
	tt := mountTree(t, store.Options{})
	for range 2 {
		if err := os.Mkdir(tt.path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(tt.path("current"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := f.Write([]byte("2026\n")); err != nil || n != 5 {
		t.Fatalf("first write = %d, %v", n, err)
	}
	if got := readFile(t, tt.path("current")); got != "2026\n" {
		t.Errorf("after first write current = %q", got)
	}
	if _, err := f.Write([]byte("2027")); err != nil {
		t.Fatalf("second write: %v", err)
	}
	if got := readFile(t, tt.path("current")); got != "2027\n" {
		t.Errorf("after second write current = %q", got)
	}
}
