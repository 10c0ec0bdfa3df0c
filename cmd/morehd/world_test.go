package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// --log-format json writes one JSON object a line; --log-level hides what
// is below it.
func TestLogFlags(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--log-format", "json", "--log-level", "debug")
	d.Stop()
	mounted := false
	for _, line := range strings.Split(strings.TrimSpace(d.Log()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("--log-format json wrote a line that is not JSON: %q (%v)", line, err)
		}
		if rec["msg"] == "mounted" {
			mounted = rec["level"] == "INFO" && rec["mount"] == d.Mount
		}
	}
	if !mounted {
		t.Errorf("no JSON \"mounted\" line at INFO naming the mount:\n%s", d.Log())
	}

	w := morehdtest.Start(t, "--log-level", "warn")
	w.Stop()
	if log := w.Log(); strings.Contains(log, "level=INFO") || strings.Contains(log, "msg=mounted") {
		t.Errorf("--log-level warn shows info lines:\n%s", log)
	}
	txt := morehdtest.Start(t) // the default: text at info
	txt.Stop()
	if !strings.Contains(txt.Log(), "level=INFO msg=mounted mount="+txt.Mount) {
		t.Errorf("the default log is not text at info:\n%s", txt.Log())
	}

	for _, tc := range []struct{ args, want string }{
		{"--log-format=xml", "morehd: --log-format must be text or json, not \"xml\"\n"},
		{"--log-level=loud", "morehd: --log-level must be debug, info, warn or error, not \"loud\"\n"},
		{"--log-level=info+2", "morehd: --log-level must be debug, info, warn or error, not \"info+2\"\n"},
	} {
		code, stdout, stderr := runMorehd(t, tc.args)
		if code != exitUsage || stdout != "" || stderr != tc.want+"Run 'morehd --help' for usage.\n" {
			t.Errorf("morehd %s: exit %d, %q %q; want 2 and %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	for _, level := range []string{"debug", "INFO", "warn", "error"} {
		if _, err := parseFlags([]string{"--log-level", level}, nil); err != nil {
			t.Errorf("--log-level %s: %v", level, err)
		}
	}
}

// versionText names the revision, "modified" when the checkout had
// changes, and says why when the build holds none.
func TestVersionText(t *testing.T) {
	t.Parallel()
	info := func(kv ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{GoVersion: "go1.26.8"}
		for i := 0; i < len(kv); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return b
	}
	v := "morehd " + Version + "\n"
	for _, tc := range []struct {
		info *debug.BuildInfo
		want string
	}{
		{info("vcs", "git", "vcs.revision", "abc123", "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "false"),
			v + "revision abc123\ncommitted 2026-12-01T10:00:00Z\nbuilt with go1.26.8\n"},
		{info("vcs.revision", "abc123", "vcs.modified", "true"), v + "revision abc123 (modified)\nbuilt with go1.26.8\n"},
		{info("-trimpath", "true"), v + "revision unknown (built outside a checkout, or with -buildvcs=false)\nbuilt with go1.26.8\n"},
		{nil, v + "revision unknown (no build information)\n"},
	} {
		if got := versionText(tc.info); got != tc.want {
			t.Errorf("versionText = %q, want %q", got, tc.want)
		}
	}
}

// A morehd built in a git checkout says which commit, and that the
// checkout had changes. The build is made in a clone (git clone --shared):
// go stamps no VCS information in a git worktree, whose .git is a file.
func TestVersionShowsTheRevision(t *testing.T) {
	t.Parallel()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	src := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("git", "clone", "--quiet", "--shared", strings.TrimSpace(string(top)), src).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", src, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "untracked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "morehd")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/morehd")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	if want := "revision " + strings.TrimSpace(string(head)) + " (modified)"; len(lines) < 2 || lines[0] != "morehd "+Version || lines[1] != want {
		t.Errorf("morehd --version printed %q, want its second line %q", out, want)
	}
}

// Every morehd token command has --help, which prints and never acts, and
// a usage error that names the commands or the arguments.
func TestTokenSubcommandMessages(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t)
	for _, tc := range []struct {
		args   []string
		stdout string // a prefix
	}{
		{[]string{"token", "--help"}, "Usage: morehd token add NAME [--max-devices N] [--priority N] [--max-units N] [--mount DIR]\n       morehd token list"},
		{[]string{"token", "-h"}, "Usage: morehd token add NAME"},
		{[]string{"token", "add", "bob", "--help"}, "Usage: morehd token add NAME [--max-devices N] [--priority N] [--max-units N] [--mount DIR]\n\nCreates"},
		{[]string{"token", "add", "--help", "bob", "--max-devices", "3"}, "Usage: morehd token add NAME"},
		{[]string{"token", "rm", "default", "--help"}, "Usage: morehd token rm NAME [--mount DIR]\n\nRevokes"},
		{[]string{"token", "list", "-h"}, "Usage: morehd token list [--mount DIR]\n\nLists"},
		{[]string{"token", "foo", "--help"}, "Usage: morehd token add NAME"},
	} {
		code, stdout, stderr := runMorehd(t, append(tc.args, "--mount", d.Mount)...)
		if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, tc.stdout) {
			t.Errorf("morehd %q: exit %d, %q %q; want 0 and %q…", tc.args, code, stdout, stderr, tc.stdout)
		}
	}
	if names := ls(t, d.Path("admin", "tokens")); strings.Join(names, " ") != "default" {
		t.Errorf("--help acted: the tokens are %q", names)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "foo"}, `unknown command "foo": the commands are add, list, rm and rotate-key`},
		{[]string{"token"}, "say add, list, rm or rotate-key"},
		{[]string{"token", "add"}, "add needs one token NAME (usage: morehd token add NAME [--max-devices N] [--priority N] [--max-units N] [--mount DIR])"},
		{[]string{"token", "rm", "a", "b"}, "rm needs one token NAME (usage: morehd token rm NAME [--mount DIR])"},
		{[]string{"token", "list", "x"}, "list takes no arguments (usage: morehd token list [--mount DIR])"},
		{[]string{"token", "list", "--max-devices", "2"}, "--max-devices, --priority and --max-units go with add only"},
		{[]string{"token", "add", "x", "--bogus"}, "unknown flag: --bogus"},
	} {
		code, stdout, stderr := runMorehd(t, append(tc.args, "--mount", d.Mount)...)
		if want := "morehd token: " + tc.want + "\nRun 'morehd token --help' for usage.\n"; code != exitUsage || stdout != "" || stderr != want {
			t.Errorf("morehd %q: exit %d, %q %q; want 2 and %q", tc.args, code, stdout, stderr, want)
		}
	}
	if code, stdout, _ := runMorehd(t, "--help"); code != 0 || !strings.Contains(stdout, "morehd token add|list|rm") {
		t.Errorf("morehd --help does not name the token subcommand: %q", stdout)
	}
	if _, err := os.Stat(d.Path("admin", "tokens", "x")); err == nil {
		t.Error("a usage error created a token")
	}
}
