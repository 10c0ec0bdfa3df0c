package scripts_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// allowedSyscalls resolves a SystemCallFilter= allow list (groups and
// names) with systemd-analyze syscall-filter.
func allowedSyscalls(t *testing.T, analyze string, filter []string) map[string]bool {
	t.Helper()
	out, err := exec.Command(analyze, "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	var cur string
	for _, line := range strings.Split(string(out), "\n") {
		s := strings.TrimSpace(line)
		switch {
		case s == "" || strings.HasPrefix(s, "#"):
		case !strings.HasPrefix(line, " ") && strings.HasPrefix(s, "@"):
			cur = s
		case cur != "":
			groups[cur] = append(groups[cur], s)
		}
	}
	allowed := map[string]bool{}
	var add func(string)
	add = func(name string) {
		if !strings.HasPrefix(name, "@") {
			allowed[name] = true
			return
		}
		for _, n := range groups[name] {
			add(n)
		}
	}
	for _, f := range filter {
		add(f)
	}
	return allowed
}

// morehd keeps working within the unit's limits: only the capabilities
// of CapabilityBoundingSet (mount, serve, and SIGTERM a job of another
// user on reset), no new privileges, and no system call outside
// SystemCallFilter (traced with strace through the same work).
func TestUnitSandboxKeepsMorehdWorking(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	analyze, err1 := exec.LookPath("systemd-analyze")
	strace, err2 := exec.LookPath("strace")
	setpriv, err3 := exec.LookPath("setpriv")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Skip("needs systemd-analyze, strace and setpriv (Debian's systemd, strace, util-linux)")
	}
	unit, err := os.ReadFile("morehd.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps, filter []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			caps = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "SystemCallFilter="); ok {
			filter = append(filter, strings.Fields(v)...)
		}
	}
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	allowed := allowedSyscalls(t, analyze, filter)

	dir := t.TempDir()
	mount, trace := filepath.Join(dir, "mnt"), filepath.Join(dir, "trace")
	t.Cleanup(func() { syscall.Unmount(mount, syscall.MNT_DETACH) })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var log strings.Builder
	cmd := exec.Command(setpriv, "--no-new-privs", "--bounding-set", bounding, "--",
		strace, "-f", "-qq", "-o", trace, morehdtest.Binary(t),
		"--mount", mount, "--db", filepath.Join(dir, "moreh.db"), "--gpus", "sim", "--ready-fd", "3", "--reset-grace", "30s")
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = &log, &log, []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // strace, if the test fails before it ends
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		cmd.Wait()
		t.Fatalf("morehd in the sandbox did not start (%v):\n%s", cmd.ProcessState, log.String())
	}
	p := func(elem ...string) string { return filepath.Join(append([]string{mount}, elem...)...) }
	// A job of another user, which reset must signal: CAP_KILL.
	job := exec.Command("sleep", "600")
	job.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	defer job.Process.Kill()
	steps := []func() error{
		func() error { return os.Mkdir(p("devices", "Small.64GB"), 0o755) },
		func() error {
			return os.WriteFile(p("devices", "2026", "procs"), []byte(strconv.Itoa(job.Process.Pid)), 0)
		},
		func() error { _, err := os.ReadFile(p("status")); return err },
		func() error { _, err := os.ReadFile(p("metrics")); return err },
		func() error { _, err := os.ReadFile(p("pool")); return err },
		func() error { return os.WriteFile(p("devices", "2026", "reset"), []byte("1"), 0) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d in the sandbox: %v\n%s", i, err, log.String())
		}
	}
	if err := job.Wait(); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("the reset job of another user ended with %v, want SIGTERM", err)
	}
	morehdtest.Eventually(t, time.Minute, "the reset job's GPUs go back", func() bool {
		b, _ := os.ReadFile(p("devices", "2026", "gpus"))
		return len(b) == 0
	})
	if err := os.WriteFile(p("devices", "2026", "model"), []byte("Large.256GB"), 0); err != nil {
		t.Error(err)
	}
	if err := syscall.Rmdir(p("devices", "2026")); err != nil {
		t.Error(err)
	}
	// strace does not pass SIGTERM on: morehd is its one child.
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	morehd, err := strconv.Atoi(strings.TrimSpace(string(children)))
	if err != nil {
		t.Fatalf("strace's children: %q", children)
	}
	syscall.Kill(morehd, syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("morehd in the sandbox: %v\n%s", err, log.String())
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	call := regexp.MustCompile(`^\d+ +([a-z0-9_]+)\(`)
	for _, line := range strings.Split(string(b), "\n") {
		if m := call.FindStringSubmatch(line); m != nil {
			used[m[1]] = true
		}
	}
	var outside []string
	for name := range used {
		if !allowed[name] {
			outside = append(outside, name)
		}
	}
	if len(used) < 20 || len(outside) > 0 {
		t.Errorf("morehd used %d system calls; outside SystemCallFilter=%s: %q", len(used), strings.Join(filter, " "), outside)
	}
}
