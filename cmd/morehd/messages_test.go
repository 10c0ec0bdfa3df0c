package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// TestFailuresNameTheFix: --gpus nvml without the driver, and a start as
// a user who cannot mount, each end with one line that names the fix.
func TestFailuresNameTheFix(t *testing.T) {
	bin := morehdtest.Binary(t)
	dir := t.TempDir()
	out, err := exec.Command(bin, "--gpus", "nvml", "--mount", filepath.Join(dir, "mnt"), "--db", filepath.Join(dir, "a.db")).CombinedOutput()
	if strings.Contains(string(out), "ERROR_LIBRARY_NOT_FOUND") {
		if !strings.Contains(string(out), "install the NVIDIA driver, or use --gpus auto") {
			t.Errorf("--gpus nvml without the driver: %v %q", err, out)
		}
	} else {
		t.Logf("an NVIDIA driver answers here: %q", out)
	}

	// Everything nobody needs is open to it: only the mount is refused.
	open := t.TempDir()
	for d := open; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	copied := filepath.Join(open, "morehd")
	if b, err := os.ReadFile(bin); err != nil || os.WriteFile(copied, b, 0o755) != nil {
		t.Fatalf("copy the binary: %v", err)
	}
	if err := os.Mkdir(filepath.Join(open, "mnt"), 0o777); err != nil {
		t.Fatal(err)
	}
	user := exec.Command(copied, "--gpus", "sim:1", "--mount", filepath.Join(open, "mnt"), "--db", filepath.Join(open, "state", "moreh.db"))
	user.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = user.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs root: run it as root") {
		t.Errorf("morehd as nobody: %v %q, want a line that says it needs root", err, out)
	}
}
