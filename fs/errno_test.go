package fs

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/store"
)

// fingerprint is the token's whole state, to prove a failure changed nothing.
func fingerprint(t *testing.T, tt *testTree) string {
	ctx := t.Context()
	t.Helper()
	v, err := tt.reg.View(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func errorLines(t *testing.T, tt *testTree) []string {
	t.Helper()
	s := readFile(t, tt.path("tokens", "default", "errors"))
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// TestErrnoTable checks every errno row of DESIGN.md that the core tree has:
// the errno, one line in errors naming the op and cause, and no change.
func TestErrnoTable(t *testing.T) {
	big := strings.Repeat("7", 5*1024)
	rows := []struct {
		name   string
		op     func(tt *testTree) error
		errno  syscall.Errno
		logged string // a fragment of the errors line; "" when the kernel answers alone
	}{
		{"unknown model", func(tt *testTree) error { return os.Mkdir(tt.path("devices", "Huge.1GB"), 0o755) }, syscall.EINVAL, `mkdir tokens/default/devices/Huge.1GB: Unknown model "Huge.1GB"`},
		{"limit reached", func(tt *testTree) error { return os.Mkdir(tt.path("devices", "Small.64GB"), 0o755) }, syscall.EDQUOT, "mkdir tokens/default/devices/Small.64GB: Maximum number of devices (2) reached."},
		{"switch to unknown id", func(tt *testTree) error { return writeFile(tt.path("current"), "9999\n") }, syscall.ENOENT, "write tokens/default/current: Device 9999 does not exist."},
		{"switch to a word", func(tt *testTree) error { return writeFile(tt.path("current"), "abc") }, syscall.EINVAL, `write tokens/default/current: "abc" is not a device id`},
		{"switch to nothing", func(tt *testTree) error { return writeFile(tt.path("current"), "\n") }, syscall.EINVAL, "The write is empty"},
		{"two lines", func(tt *testTree) error { return writeFile(tt.path("current"), "2026\n2027\n") }, syscall.EINVAL, "not one line"},
		{"oversized write", func(tt *testTree) error { return writeFile(tt.path("current"), big) }, syscall.EINVAL, "The write is 5120 bytes"},
		{"unknown model written", func(tt *testTree) error { return writeFile(tt.path("devices", "2026", "model"), "Bogus") }, syscall.EINVAL, `write tokens/default/devices/2026/model: Unknown model "Bogus"`},
		{"rmdir unknown id", func(tt *testTree) error { return syscall.Rmdir(tt.path("devices", "9999")) }, syscall.ENOENT, ""},
		{"create a file in devices", func(tt *testTree) error { return os.WriteFile(tt.path("devices", "x"), []byte("1"), 0o644) }, syscall.EPERM, "create tokens/default/devices/x: Operation not permitted"},
		{"create a file at the root", func(tt *testTree) error { return os.WriteFile(tt.path("x"), []byte("1"), 0o644) }, syscall.EPERM, "create x: Operation not permitted"},
		{"mkdir at the root", func(tt *testTree) error { return os.Mkdir(tt.path("Small.64GB"), 0o755) }, syscall.EPERM, "mkdir Small.64GB:"},
		{"mkdir in a token", func(tt *testTree) error { return os.Mkdir(tt.path("tokens", "default", "x"), 0o755) }, syscall.EPERM, "mkdir tokens/default/x:"},
		{"mkdir in a device", func(tt *testTree) error { return os.Mkdir(tt.path("devices", "2026", "Small.64GB"), 0o755) }, syscall.EPERM, "mkdir tokens/default/devices/2026/Small.64GB:"},
		{"mkdir in tokens", func(tt *testTree) error { return os.Mkdir(tt.path("tokens", "someone"), 0o755) }, syscall.EPERM, "mkdir tokens/someone:"},
		{"rmdir devices itself", func(tt *testTree) error { return syscall.Rmdir(tt.path("tokens", "default", "devices")) }, syscall.EPERM, "rmdir tokens/default/devices:"},
		{"rename a device", func(tt *testTree) error { return os.Rename(tt.path("devices", "2026"), tt.path("devices", "2030")) }, syscall.EPERM, "rename tokens/default/devices/2026:"},
		{"unlink a file", func(tt *testTree) error { return os.Remove(tt.path("devices", "2026", "model")) }, syscall.EPERM, "unlink tokens/default/devices/2026/model:"},
		{"symlink", func(tt *testTree) error { return os.Symlink("2026", tt.path("devices", "mine")) }, syscall.EPERM, "symlink tokens/default/devices/mine:"},
		{"chmod", func(tt *testTree) error { return os.Chmod(tt.path("tokens", "default", "current"), 0o777) }, syscall.EPERM, "setattr tokens/default/current:"},
		{"write a read-only file", func(tt *testTree) error { return writeFile(tt.path("tokens", "default", "status"), "x") }, syscall.EACCES, "open tokens/default/status:"},
	}
	tt := mountTree(t, store.Options{MaxDevices: 2})
	for _, m := range []string{"Small.64GB", "Medium.128GB"} {
		if err := os.Mkdir(tt.path("devices", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			before, linesBefore := fingerprint(t, tt), errorLines(t, tt)
			err := row.op(tt)
			if !errors.Is(err, row.errno) {
				t.Fatalf("got %v, want %v (%d)", err, row.errno, row.errno)
			}
			if after := fingerprint(t, tt); after != before {
				t.Errorf("a failed operation changed the state:\nbefore %s\nafter  %s", before, after)
			}
			lines := errorLines(t, tt)
			if row.logged == "" {
				if len(lines) != len(linesBefore) {
					t.Errorf("errors grew by %d lines, want 0", len(lines)-len(linesBefore))
				}
				return
			}
			if len(lines) != len(linesBefore)+1 {
				t.Fatalf("errors grew by %d lines, want 1: %q", len(lines)-len(linesBefore), lines)
			}
			if last := lines[len(lines)-1]; !strings.Contains(last, row.logged) {
				t.Errorf("errors line %q lacks %q", last, row.logged)
			}
		})
	}
	// The limit is a limit of held devices: removing one lets a create through
	// with the next id, none skipped by the failures above.
	if err := syscall.Rmdir(tt.path("devices", "2027")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tt.path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tt.path("current")); got != "2028\n" {
		t.Errorf("after the failures the next device is %q, want 2028", got)
	}
}

// TestStoreFailureIsEIO closes the bbolt file under the mounted tree.
func TestStoreFailureIsEIO(t *testing.T) {
	tt := mountTree(t, store.Options{})
	if err := tt.engine.Close(); err != nil {
		t.Fatal(err)
	}
	err := os.Mkdir(tt.path("devices", "Small.64GB"), 0o755)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("mkdir with the store closed = %v, want EIO", err)
	}
	if _, err := os.ReadFile(tt.path("status")); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading status with the store closed = %v, want EIO", err)
	}
	lines := errorLines(t, tt)
	if len(lines) != 2 || !strings.Contains(lines[0], "mkdir tokens/default/devices/Small.64GB: The state store failed: database not open") {
		t.Errorf("errors = %q", lines)
	}
}

// TestConcurrentCreators: 16 processes mkdir at once on a token with limit
// 5; exactly 5 devices exist afterwards and the rest got EDQUOT.
func TestConcurrentCreators(t *testing.T) {
	tt := mountTree(t, store.Options{MaxDevices: 5})
	const creators = 16
	script := `
import errno, os, sys
sys.stdin.read()  # start together: the test closes stdin once all are running
try:
    os.mkdir(sys.argv[1])
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
`
	var wg sync.WaitGroup
	results := make([]string, creators)
	stdins := make([]interface{ Close() error }, creators)
	cmds := make([]*exec.Cmd, creators)
	for i := range creators {
		cmd := exec.Command("python3", "-c", script, tt.path("devices", "Small.64GB"))
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdins[i], cmds[i] = in, cmd
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd.Wait()
			results[i] = strings.TrimSpace(out.String())
		}()
	}
	for _, in := range stdins {
		in.Close()
	}
	wg.Wait()
	counts := map[string]int{}
	for _, r := range results {
		counts[r]++
	}
	if counts["ok"] != 5 || counts["EDQUOT"] != creators-5 {
		t.Fatalf("results %v, want 5 ok and %d EDQUOT", counts, creators-5)
	}
	if got := listDir(t, tt.path("devices")); len(got) != 5 || got[0] != "2026" || got[4] != "2030" {
		t.Errorf("devices = %v, want 2026…2030", got)
	}
	if got := readFile(t, tt.path("tokens", "default", "limit")); got != "max 5\nused 5\n" {
		t.Errorf("limit = %q", got)
	}
}
