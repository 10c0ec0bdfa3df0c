package fs

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/store"
)

// TestFsyncEveryFile: fsync and fdatasync succeed on every file and
// directory of the tree, command files open for writing included, so that
// `dd conv=fsync` reports a command that took effect as a success.
func TestFsyncEveryFile(t *testing.T) {
	tt, _, _ := badInputTree(t)
	readOnly := [][]string{
		{"README"}, {"version"}, {"models"}, {"pool"}, {"metrics"},
		{"tokens", "default", "limit"}, {"tokens", "default", "status"}, {"tokens", "default", "status.json"},
		{"tokens", "default", "errors"}, {"tokens", "default", "current"},
		{"tokens", "default", "devices", "2026", "model"}, {"tokens", "default", "devices", "2026", "usage"},
		{"tokens", "default", "devices", "2026", "gpus"}, {"tokens", "default", "devices", "2026", "env"},
		{"admin", "tokens", "alice", "secret"}, {"admin", "tokens", "alice", "max_devices"},
		{}, {"tokens"}, {"tokens", "default", "devices"}, {"admin", "tokens"},
	}
	writable := [][]string{
		{"token"}, {"tokens", "default", "current"}, {"tokens", "default", "devices", "2026", "model"},
		{"tokens", "default", "devices", "2026", "procs"}, {"tokens", "default", "devices", "2026", "reset"},
		{"admin", "tokens", "alice", "max_devices"},
	}
	check := func(path []string, flags int) {
		fd, err := syscall.Open(tt.path(path...), flags|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open %v: %v", path, err)
			return
		}
		defer syscall.Close(fd)
		if err := syscall.Fsync(fd); err != nil {
			t.Errorf("fsync %v (flags %#x) = %v, want success", path, flags, err)
		}
		if err := syscall.Fdatasync(fd); err != nil {
			t.Errorf("fdatasync %v (flags %#x) = %v, want success", path, flags, err)
		}
	}
	for _, p := range readOnly {
		check(p, syscall.O_RDONLY)
	}
	for _, p := range writable {
		check(p, syscall.O_WRONLY)
	}
	// dd writes the command in one write(2), then fsyncs: a success.
	cmd := exec.Command("dd", "of="+tt.path("tokens", "default", "current"), "conv=fsync,notrunc", "status=none")
	cmd.Stdin = strings.NewReader("2026\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("dd conv=fsync > current: %v: %s", err, out)
	}
	if got := readFile(t, tt.path("current")); got != "2026\n" {
		t.Errorf("current after dd = %q", got)
	}
}

// TestDeviceIDsExhausted: the id counter never wraps; at its end, creation
// fails with EOVERFLOW, a sentence in errors, and nothing is created.
func TestDeviceIDsExhausted(t *testing.T) {
	tt := mountTree(t, store.Options{FirstID: store.MaxDeviceID - 1})
	last := mkdevice(t, tt, "Small.64GB")
	if want := strconv.FormatUint(store.MaxDeviceID-1, 10); last != want {
		t.Fatalf("first id = %s, want %s", last, want)
	}
	err := os.Mkdir(tt.path("devices", "Small.64GB"), 0o755)
	if !errors.Is(err, syscall.EOVERFLOW) {
		t.Fatalf("mkdir past the last id = %v, want EOVERFLOW", err)
	}
	if got := listDir(t, tt.path("devices")); len(got) != 1 || got[0] != last {
		t.Errorf("devices lists %v, want only %s", got, last)
	}
	lines := errorLines(t, tt)
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "ids are never reused") {
		t.Errorf("errors = %q", lines)
	}
	// Removing the last device gives no id back.
	if err := syscall.Rmdir(tt.path("devices", last)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tt.path("devices", "Small.64GB"), 0o755); !errors.Is(err, syscall.EOVERFLOW) {
		t.Errorf("mkdir after rmdir = %v, want EOVERFLOW", err)
	}
}
