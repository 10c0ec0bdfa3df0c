package scripts_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// install runs scripts/install.sh ARGS.
func install(t *testing.T, args ...string) result {
	t.Helper()
	return shim(t, filepath.Join(t.TempDir(), "nowhere"), "", nil, "install.sh", args...)
}

// wantFile checks a regular file's mode and, unless content is nil, its content.
func wantFile(t *testing.T, path string, mode fs.FileMode, content []byte) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Errorf("%s is %v, want a regular file %v", path, fi.Mode(), mode)
	}
	if content != nil {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s differs from what was installed (%v)", path, err)
		}
	}
}

// wantLink checks a symbolic link's target.
func wantLink(t *testing.T, path, target string) {
	t.Helper()
	if got, err := os.Readlink(path); err != nil || got != target {
		t.Errorf("%s links to %q (%v), want %q", path, got, err, target)
	}
}

// execStart is the ExecStart line of a unit file.
func execStart(t *testing.T, unit string) string {
	t.Helper()
	var lines []string
	for _, line := range strings.Split(read(t, unit), "\n") {
		if strings.HasPrefix(line, "ExecStart=") {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%s has ExecStart lines %q", unit, lines)
	}
	return lines[0]
}

// wantInstalled checks everything install.sh puts under root with prefix.
func wantInstalled(t *testing.T, root, prefix, binary string) {
	t.Helper()
	bin := filepath.Join(root, prefix, "bin")
	morehd, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(bin, "morehd"), 0o755, morehd)
	for _, name := range []string{"moreh-smi", "moreh-switch-model", "moreh-run"} {
		wantFile(t, filepath.Join(bin, name), 0o755, []byte(read(t, name)))
	}
	wantFile(t, filepath.Join(root, prefix, "lib", "moreh", "moreh.sh"), 0o644, []byte(read(t, filepath.Join("lib", "moreh.sh"))))
	unit := filepath.Join(root, "etc", "systemd", "system", "morehd.service")
	wantFile(t, unit, 0o644, nil)
	if got, want := execStart(t, unit), "ExecStart="+filepath.Join(prefix, "bin", "morehd")+" $MOREHD_FLAGS"; got != want {
		t.Errorf("the unit says %q, want %q", got, want)
	}
	for _, line := range []string{"Type=notify", "Restart=on-failure", "KillSignal=SIGTERM", "WantedBy=multi-user.target"} {
		if !strings.Contains(read(t, unit), "\n"+line+"\n") {
			t.Errorf("the unit lacks %q", line)
		}
	}
	completions := filepath.Join(root, prefix, "share", "bash-completion", "completions")
	wantFile(t, filepath.Join(completions, "moreh-smi"), 0o644, []byte(read(t, "moreh-completion.bash")))
	wantLink(t, filepath.Join(completions, "moreh-switch-model"), "moreh-smi")
	wantLink(t, filepath.Join(completions, "moreh-run"), "moreh-smi")
	if fi, err := os.Stat(filepath.Join(root, "etc", "moreh")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("etc/moreh: %v %v, want a 0755 directory", fi, err)
	}
}

func TestInstall(t *testing.T) {
	t.Parallel()
	binary := morehdtest.Binary(t)
	root := filepath.Join(t.TempDir(), "root")
	r := install(t, "--root", root, "--binary", binary)
	want(t, r, 0, r.stdout, "")
	for _, line := range []string{
		"installed  " + root + "/usr/local/bin/morehd\n",
		"installed  " + root + "/usr/local/bin/moreh-run\n",
		"installed  " + root + "/etc/systemd/system/morehd.service\n",
		"linked     " + root + "/usr/local/share/bash-completion/completions/moreh-run -> moreh-smi\n",
		"created    " + root + "/etc/moreh\n",
		"systemctl daemon-reload && systemctl enable --now morehd\n",
	} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("install.sh did not say %q:\n%s", line, r.stdout)
		}
	}
	wantInstalled(t, root, "/usr/local", binary)
	if _, err := os.Stat(filepath.Join(root, "etc", "moreh", "token")); err == nil {
		t.Error("install.sh created etc/moreh/token")
	}

	// The installed shims work: help without a tree, and on a tree.
	smiPath := filepath.Join(root, "usr", "local", "bin", "moreh-smi")
	for _, name := range []string{"moreh-smi", "moreh-switch-model", "moreh-run"} {
		cmd := exec.Command(filepath.Join(root, "usr", "local", "bin", name), "--help")
		out, err := cmd.Output()
		if err != nil || !strings.HasPrefix(string(out), "Usage: "+name+" ") {
			t.Errorf("the installed %s --help: %v\n%s", name, err, out)
		}
	}
	d := morehdtest.Start(t)
	cmd := exec.Command(smiPath, "device", "add", "1")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MOREH_ROOT=" + d.Mount}
	if out, err := cmd.CombinedOutput(); err != nil || !devicesTable.MatchString(strings.TrimSuffix(string(out), "Create device success.\n")) {
		t.Errorf("the installed moreh-smi device add 1: %v\n%s", err, out)
	}
	wantDevices(t, d, "2026")

	// Reached by a link from another directory (as a user's ~/bin may
	// hold), and run by a relative name, a shim still finds its library.
	links := t.TempDir()
	for _, name := range []string{"moreh-smi", "moreh-switch-model", "moreh-run"} {
		if err := os.Symlink(filepath.Join(root, "usr", "local", "bin", name), filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
		for _, how := range [][]string{{filepath.Join(links, name)}, {"bash", name}} {
			cmd := exec.Command(how[0], append(how[1:], "--help")...)
			cmd.Dir = filepath.Join(root, "usr", "local", "bin")
			if how[0] != "bash" {
				cmd.Dir = links
			}
			if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "Usage: "+name+" ") {
				t.Errorf("%q --help in %s: %v\n%s", how, cmd.Dir, err, out)
			}
		}
	}
	cmd = exec.Command(filepath.Join(links, "moreh-smi"), "device", "--list")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MOREH_ROOT=" + d.Mount}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "1. Small.64GB*\n") {
		t.Errorf("moreh-smi device --list through a link: %v\n%s", err, out)
	}
	// Without its library a shim says which file it lacks.
	if err := os.Rename(filepath.Join(root, "usr", "local", "lib", "moreh", "moreh.sh"), filepath.Join(root, "moved.sh")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(smiPath, "--help").CombinedOutput(); err == nil || !strings.Contains(string(out), "lib/moreh/moreh.sh") {
		t.Errorf("moreh-smi without its library: %v\n%s", err, out)
	}

	// Again, as an upgrade: the same files, and an existing token is kept.
	token := filepath.Join(root, "etc", "moreh", "token")
	if err := os.WriteFile(token, []byte("mrh_keep-me\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	r = install(t, "--root", root+"/", "--binary", binary)
	want(t, r, 0, r.stdout, "")
	for _, line := range []string{"kept       " + root + "/etc/moreh\n", "kept       " + root + "/etc/moreh/token\n"} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("install.sh did not say %q:\n%s", line, r.stdout)
		}
	}
	wantInstalled(t, root, "/usr/local", binary)
	wantFile(t, token, 0o640, []byte("mrh_keep-me\n"))

	// Another prefix: the unit starts the morehd there.
	r = install(t, "--root="+root, "--prefix=/opt/moreh/", "--binary="+binary)
	want(t, r, 0, r.stdout, "")
	wantInstalled(t, root, "/opt/moreh", binary)
	wantFile(t, token, 0o640, []byte("mrh_keep-me\n"))
}

// Without --binary, install.sh builds morehd with go build.
func TestInstallBuilds(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	root := t.TempDir()
	// The caller's environment: Go's caches and module settings.
	cmd := exec.Command("bash", "install.sh", "--root", root, "--prefix", "/usr")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("install.sh: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	want(t, r, 0, r.stdout, "")
	if !strings.HasPrefix(r.stdout, "building   morehd (go build -trimpath -ldflags='-s -w' ./cmd/morehd)\n") {
		t.Errorf("install.sh printed\n%s", r.stdout)
	}
	morehd := filepath.Join(root, "usr", "bin", "morehd")
	wantInstalled(t, root, "/usr", morehd)
	// Built with -trimpath and stripped: no symbol table, no DWARF.
	info, err := buildinfo.ReadFile(morehd)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// (With -trimpath, go records no -ldflags: they may hold paths.)
	if settings["-trimpath"] != "true" {
		t.Errorf("the installed morehd was built with -trimpath=%q, want true", settings["-trimpath"])
	}
	if bin, err := elf.Open(morehd); err != nil {
		t.Error(err)
	} else {
		for _, name := range []string{".symtab", ".debug_info"} {
			if bin.Section(name) != nil {
				t.Errorf("the installed morehd has a %s section: not stripped", name)
			}
		}
		bin.Close()
	}
	if out, err := exec.Command(morehd, "--version").Output(); err != nil || !strings.HasPrefix(string(out), "morehd ") {
		t.Errorf("the installed morehd --version: %v %q", err, out)
	}
}

func TestInstallUsage(t *testing.T) {
	t.Parallel()
	r := install(t, "--help")
	want(t, r, 0, r.stdout, "")
	for _, form := range []string{"Usage: scripts/install.sh [--prefix DIR] [--root DIR] [--binary PATH]\n", "/etc/moreh/token", "--root DIR"} {
		if !strings.Contains(r.stdout, form) {
			t.Errorf("install.sh --help lacks %q:\n%s", form, r.stdout)
		}
	}
	root := t.TempDir()
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{[]string{"--bogus"}, "install.sh: unexpected argument '--bogus'."},
		{[]string{"--prefix"}, "install.sh: expected a value after --prefix."},
		{[]string{"--prefix", "usr/local"}, "install.sh: --prefix must be an absolute path, not 'usr/local'."},
		{[]string{"--prefix", "/opt/my moreh"}, "install.sh: --prefix must not hold spaces: the unit's ExecStart names it."},
	} {
		want(t, install(t, append([]string{"--root", root}, tc.args...)...), 2, "", tc.first+"\nRun 'install.sh --help' for usage.\n")
	}
	missing := filepath.Join(root, "no-morehd")
	want(t, install(t, "--root", root, "--binary", missing), 1, "", "install.sh: --binary "+missing+" is not an executable file.\n")
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("a failed install.sh left %v", entries)
	}
}

// complete drives a completion function of moreh-completion.bash as bash
// does on TAB: words are the command line, the last one being completed.
func complete(t *testing.T, script, root string, fn string, words ...string) []string {
	t.Helper()
	prog := `source "$1"; shift; fn=$1; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", append([]string{"-c", prog, "bash", script, fn}, words...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MOREH_ROOT=" + root, "HOME=" + t.TempDir()}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("completing %q: %v\n%s", words, err, stderr.String())
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) == 1 && got[0] == "" {
		return nil
	}
	return got
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if r := install(t, "--root", root, "--binary", "/bin/true"); r.code != 0 {
		t.Fatalf("install.sh: %+v", r)
	}
	// The installed file, through the link bash-completion loads for moreh-run.
	script := filepath.Join(root, "usr", "local", "share", "bash-completion", "completions", "moreh-run")
	out, err := exec.Command("bash", "-c", `source "$1" && complete -p moreh-smi moreh-switch-model moreh-run`, "bash", script).Output()
	if want := "complete -F _moreh_smi moreh-smi\ncomplete -F _moreh_switch_model moreh-switch-model\ncomplete -F _moreh_run moreh-run\n"; err != nil || string(out) != want {
		t.Errorf("complete -p: %v\n%s\nwant\n%s", err, out, want)
	}

	d := morehdtest.Start(t)
	a := addDevice(t, d, "Small.64GB")
	b := addDevice(t, d, "Large.256GB")
	ids := []string{a, b}
	models := []string{"1", "Small.64GB", "2", "Medium.128GB", "3", "Large.256GB", "4", "xLarge.512GB", "5", "2xLarge.1024GB",
		"6", "3xLarge.1536GB", "7", "4xLarge.2048GB", "8", "6xLarge.3072GB", "9", "8xLarge.4096GB", "10", "12xLarge.6144GB",
		"11", "24xLarge.12288GB", "12", "1.5xLarge.768GB"}
	for _, tc := range []struct {
		fn    string
		words []string
		want  []string
	}{
		{"_moreh_smi", []string{"moreh-smi", "device", "--"}, []string{"--add", "--rm", "--switch", "--list"}},
		{"_moreh_smi", []string{"moreh-smi", "device", ""}, []string{"add", "rm", "switch", "list"}},
		{"_moreh_smi", []string{"moreh-smi", "-i", ""}, ids},
		{"_moreh_smi", []string{"moreh-smi", "--idx", a[:3]}, ids},
		{"_moreh_smi", []string{"moreh-smi", "-r", b}, []string{b}},
		{"_moreh_smi", []string{"moreh-smi", ""}, []string{"device", "add", "rm", "switch", "list"}},
		{"_moreh_smi", []string{"moreh-smi", "--q"}, []string{"--query-device=", "--query-gpu="}},
		{"_moreh_smi", []string{"moreh-smi", "--query-gpu", "=", "index,memory.u"}, []string{"index,memory.used"}},
		{"_moreh_smi", []string{"moreh-smi", "-t"}, []string{"-t"}},
		{"_moreh_smi", []string{"moreh-smi", "device", "add", ""}, models},
		{"_moreh_smi", []string{"moreh-smi", "add", "La"}, []string{"Large.256GB"}},
		{"_moreh_smi", []string{"moreh-smi", "device", "--rm", ""}, append(append([]string{}, ids...), "--all")},
		{"_moreh_smi", []string{"moreh-smi", "switch", ""}, ids},
		{"_moreh_smi", []string{"moreh-smi", "device", "--list", ""}, nil},
		{"_moreh_smi", []string{"moreh-smi", "--query-device", "=", "id,mem"}, []string{"id,memory.used", "id,memory.total"}},
		{"_moreh_smi", []string{"moreh-smi", "--query-device", "=", ""},
			[]string{"id", "model", "memory.used", "memory.total", "utilization", "processes"}},
		{"_moreh_smi", []string{"moreh-smi", "--query-device=id,u"}, []string{"--query-device=id,utilization"}},
		{"_moreh_smi", []string{"moreh-smi", "--query-device=id", "--format", "=", "csv,nou"}, []string{"csv,nounits"}},
		{"_moreh_smi", []string{"moreh-smi", "-i", a, "--j"}, []string{"--json"}},
		{"_moreh_switch_model", []string{"moreh-switch-model", ""}, []string{"-M", "--model", "-h", "--help"}},
		{"_moreh_switch_model", []string{"moreh-switch-model", "-M", "1"},
			[]string{"1", "10", "12xLarge.6144GB", "11", "12", "1.5xLarge.768GB"}},
		{"_moreh_switch_model", []string{"moreh-switch-model", "--model", "=", "x"}, []string{"xLarge.512GB"}},
		{"_moreh_run", []string{"moreh-run", "-i", ""}, ids},
		{"_moreh_run", []string{"moreh-run", "--idx", "=", ""}, ids},
		{"_moreh_run", []string{"moreh-run", "-"}, []string{"-i", "--idx", "-h", "--help", "--"}},
		{"_moreh_run", []string{"moreh-run", "-i", a, "--", "bas"}, nil}, // commands: checked below
	} {
		got := complete(t, script, d.Mount, tc.fn, tc.words...)
		if tc.fn == "_moreh_run" && slices.Contains(tc.words, "--") {
			// Commands on PATH: at least bash.
			if !slices.Contains(got, "bash") {
				t.Errorf("completing %q gave %q, want bash among them", tc.words, got)
			}
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("completing %q gave %q, want %q", tc.words, got, tc.want)
		}
	}
	// Without a tree, models still complete, ids do not.
	nowhere := filepath.Join(t.TempDir(), "nowhere")
	if got := complete(t, script, nowhere, "_moreh_smi", "moreh-smi", "add", "1"); !slices.Equal(got, []string{"1", "10", "11", "12", "12xLarge.6144GB", "1.5xLarge.768GB"}) {
		t.Errorf("completing models without a tree gave %q", got)
	}
	if got := complete(t, script, nowhere, "_moreh_smi", "moreh-smi", "-i", ""); got != nil {
		t.Errorf("completing ids without a tree gave %q", got)
	}
}
