package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// The unit passes systemd-analyze verify and rates at most maxExposure in
// systemd-analyze security (the unsandboxed unit rated 9.6, UNSAFE), with
// the directives the daemon relies on and none of those that would hide
// its mount or restrict its jobs (morehd.service's comment says why).
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	const maxExposure = 4.5
	unit, err := os.ReadFile("morehd.service")
	if err != nil {
		t.Fatal(err)
	}
	directives := map[string]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			directives[k] = v
		}
	}
	for k, v := range map[string]string{"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s", "Delegate": "yes", "KillSignal": "SIGTERM"} {
		if directives[k] != v {
			t.Errorf("morehd.service: %s=%q, want %q", k, directives[k], v)
		}
	}
	for _, k := range []string{"PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectSystem", "ProtectHome",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc",
		"ProcSubset", "ProtectHostname", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem",
		"BindPaths", "DevicePolicy", "DeviceAllow", "ProtectClock", "IPAddressDeny", "RestrictFileSystems",
		"SocketBindDeny", "PrivateNetwork", "PrivateUsers", "User", "DynamicUser"} {
		if v, ok := directives[k]; ok {
			t.Errorf("morehd.service sets %s=%s: it hides the mount from the host, or binds the jobs too", k, v)
		}
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_KILL"} {
		if !strings.Contains(directives["CapabilityBoundingSet"], c) {
			t.Errorf("CapabilityBoundingSet=%s lacks %s", directives["CapabilityBoundingSet"], c)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze (Debian's systemd package)")
	}
	// As install.sh installs it: ExecStart names a real binary.
	dir := t.TempDir()
	path := filepath.Join(dir, "morehd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/morehd", morehdtest.Binary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "morehd.service")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	cmd = exec.Command(analyze, "security", "--offline=yes", "--no-pager", "morehd.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for morehd.service: ([0-9.]+) (\w+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v, no overall exposure level:\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security --offline=yes: %s %s", m[1], m[2])
	if score > maxExposure {
		t.Errorf("systemd-analyze security rates the unit %s %s, want at most %.1f:\n%s", m[1], m[2], maxExposure, out)
	}
}
