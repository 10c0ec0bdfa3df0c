package scripts_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// userUID is the uid the shims run as in these tests: no user of the
// machine, bound to no token until a shim binds it.
const userUID = 1001

// user is a local user of a tree with tokens: a home of its own and the
// shims where it can read them.
type user struct {
	d     *morehdtest.Daemon
	home  string // HOME, owned by the user
	shims string // a copy of the shims, readable by all
}

// newUser starts a daemon, makes its mount reachable for userUID and
// gives the user a home and the shims.
func newUser(t *testing.T, args ...string) *user {
	t.Helper()
	t.Parallel()
	d := morehdtest.Start(t, args...)
	// The mount lies in t.TempDir(), whose directories are 0700.
	tmp := filepath.Clean(os.TempDir())
	for dir := filepath.Dir(d.Mount); strings.HasPrefix(dir, tmp+"/"); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u := &user{d: d, home: filepath.Join(t.TempDir(), "home"), shims: filepath.Join(t.TempDir(), "shims")}
	for _, dir := range []string{filepath.Dir(u.home), filepath.Dir(u.shims), u.shims} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(u.home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.home, userUID, userUID); err != nil {
		t.Fatal(err)
	}
	// The repository may lie where other users cannot read (/root/...).
	for _, name := range []string{"moreh-smi", "moreh-switch-model", "moreh-run", "lib/moreh.sh"} {
		if err := os.MkdirAll(filepath.Join(u.shims, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(u.shims, name), []byte(read(t, name)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// newToken creates a token as root and returns its secret.
func newToken(t *testing.T, d *morehdtest.Daemon, name string) string {
	t.Helper()
	if err := os.Mkdir(d.Path("admin", "tokens", name), 0o700); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(read(t, d.Path("admin", "tokens", name, "secret")))
	if !strings.HasPrefix(secret, "mrh_") || len(secret) < 24 {
		t.Fatalf("the secret of %s is %q", name, secret)
	}
	return secret
}

// putToken writes the user's ~/.moreh/token, owned by the user.
func (u *user) putToken(t *testing.T, content string) string {
	t.Helper()
	dir := filepath.Join(u.home, ".moreh")
	file := filepath.Join(dir, "token")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, file} {
		if err := os.Chown(p, userUID, userUID); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

// command is the shim name with args, run by bash as the user, in a minimal
// environment plus env.
func (u *user) command(env []string, name string, args ...string) *exec.Cmd {
	return u.commandAs(userUID, env, name, args...)
}

// commandAs is command run as uid (and gid uid) instead of userUID.
func (u *user) commandAs(uid uint32, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("/bin/bash", append([]string{filepath.Join(u.shims, name)}, args...)...)
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + u.home, "MOREH_ROOT=" + u.d.Mount}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	return cmd
}

// runCmd runs a command to its end, like shim.
func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	r, err := runResult(cmd)
	if err != nil {
		t.Fatalf("run %q: %v", cmd.Args, err)
	}
	return r
}

// runResult runs a command to its end from any goroutine; the error is one
// that kept it from running, not its exit status.
func runResult(cmd *exec.Cmd) (result, error) {
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.code, err = exit.ExitCode(), nil
	}
	return r, err
}

// as runs the shim name with args as the user.
func (u *user) as(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	r := runCmd(t, u.command(env, name, args...))
	if name == "moreh-run" {
		r.stderr = withoutJobID(r.stderr)
	}
	return r
}

// wantUIDs checks the uids bound to a token.
func wantUIDs(t *testing.T, d *morehdtest.Daemon, token, uids string) {
	t.Helper()
	if got := read(t, d.Path("admin", "tokens", token, "uids")); got != uids {
		t.Errorf("admin/tokens/%s/uids = %q, want %q", token, got, uids)
	}
}

// howToBind is the line of a shim that found the caller bound to no token.
func howToBind(u *user) string {
	return "moreh: you are not bound to a token. Put your token in ~/.moreh/token (or MOREH_SDA_TOKEN), or run: echo YOUR_TOKEN > " +
		u.d.Mount + "/token\n"
}

// An unbound user is bound from MOREH_SDA_TOKEN or ~/.moreh/token by any of
// the shims, once: later commands need no token.
func TestShimsBindTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(t *testing.T, u *user, secret string) []string
		// run runs one shim as the user; id is a device of alice's.
		run  func(t *testing.T, u *user, env []string, id string) result
		want func(id string) string
	}{
		{"moreh-smi from MOREH_SDA_TOKEN",
			func(t *testing.T, u *user, secret string) []string { return []string{"MOREH_SDA_TOKEN=" + secret} },
			func(t *testing.T, u *user, env []string, id string) result {
				return u.as(t, env, "moreh-smi", "device", "add", "1")
			},
			func(string) string { return "Create device success.\n" }},
		{"moreh-smi from ~/.moreh/token",
			func(t *testing.T, u *user, secret string) []string {
				u.putToken(t, "  "+secret+"  \n# a comment\n")
				return nil
			},
			func(t *testing.T, u *user, env []string, id string) result {
				return u.as(t, env, "moreh-smi", "device", "--switch", id)
			},
			func(string) string { return "Switch current device success.\n" }},
		{"moreh-switch-model from ~/.moreh/token",
			func(t *testing.T, u *user, secret string) []string { u.putToken(t, secret); return nil },
			func(t *testing.T, u *user, env []string, id string) result {
				return u.as(t, env, "moreh-switch-model", "-M", "3")
			},
			func(string) string { return switchedTo("Large.256GB") }},
		{"moreh-run from MOREH_SDA_TOKEN",
			func(t *testing.T, u *user, secret string) []string { return []string{"MOREH_SDA_TOKEN=" + secret} },
			func(t *testing.T, u *user, env []string, id string) result {
				return u.as(t, env, "moreh-run", "-i", id, "--", "bash", "-c", `echo "$MOREH_DEVICE"`)
			},
			func(id string) string { return id + "\n" }},
		{"MOREH_SDA_TOKEN before ~/.moreh/token",
			func(t *testing.T, u *user, secret string) []string {
				u.putToken(t, "mrh_not-this-one\n")
				return []string{"MOREH_SDA_TOKEN=" + secret}
			},
			func(t *testing.T, u *user, env []string, id string) result { return u.as(t, env, "moreh-smi", "-t") },
			func(string) string { return "" }},
		{"a blank MOREH_SDA_TOKEN is none",
			func(t *testing.T, u *user, secret string) []string {
				u.putToken(t, secret+"\n")
				return []string{"MOREH_SDA_TOKEN= "}
			},
			func(t *testing.T, u *user, env []string, id string) result { return u.as(t, env, "moreh-smi", "-t") },
			func(string) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUser(t)
			secret := newToken(t, u.d, "alice")
			newToken(t, u.d, "bob")
			// A device of alice's, made by root.
			if err := os.Mkdir(u.d.Path("tokens", "alice", "devices", "Small.64GB"), 0o755); err != nil {
				t.Fatal(err)
			}
			id := strings.TrimSpace(read(t, u.d.Path("tokens", "alice", "current")))
			env := tc.env(t, u, secret)
			r := tc.run(t, u, env, id)
			if tc.want(id) == "" { // -t
				want(t, r, 0, "Token: alice\nSecret: "+secret[:4]+"****"+secret[len(secret)-4:]+"\nDevices: 1 of 5\n", "")
			} else if w := tc.want(id); strings.HasSuffix(w, " success.\n") {
				wantDone(t, r, w)
			} else {
				want(t, r, 0, w, "")
			}
			wantUIDs(t, u.d, "alice", "1001\n")
			wantUIDs(t, u.d, "bob", "")
			// The binding stays: no token is needed any more.
			r = u.as(t, nil, "moreh-smi", "--query-device=id", "--format=csv,noheader", "-i", id)
			want(t, r, 0, id+"\n", "")
		})
	}
}

// A token that morehd does not know, or no longer knows, is refused with a
// sentence that names where it came from, and never shows it.
func TestShimsRefuseAWrongToken(t *testing.T) {
	u := newUser(t)
	newToken(t, u.d, "alice")
	revoked := newToken(t, u.d, "bob")
	if err := os.Remove(u.d.Path("admin", "tokens", "bob")); err != nil {
		t.Fatal(err)
	}
	unknown := "mrh_" + strings.Repeat("0", 40)
	home := u.putToken(t, unknown+"\n")
	for _, tc := range []struct {
		name, from, secret string
		env                []string
	}{
		{"unknown in ~/.moreh/token", home, unknown, nil},
		{"revoked in MOREH_SDA_TOKEN", "MOREH_SDA_TOKEN", revoked, []string{"MOREH_SDA_TOKEN=" + revoked}},
		{"not a token", "MOREH_SDA_TOKEN", "hunter2", []string{"MOREH_SDA_TOKEN=hunter2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr := "moreh: the token from " + tc.from + " was rejected: it is unknown or revoked.\n" + howToBind(u)
			for _, args := range [][]string{
				{"moreh-smi"},
				{"moreh-smi", "device", "add", "1"},
				{"moreh-smi", "-t"},
				{"moreh-switch-model", "-M", "1"},
				{"moreh-run", "--", "true"},
			} {
				r := u.as(t, tc.env, args[0], args[1:]...)
				want(t, r, 1, "", stderr)
				if strings.Contains(r.stdout+r.stderr, tc.secret) {
					t.Errorf("%q printed the token", args)
				}
			}
		})
	}
	wantUIDs(t, u.d, "alice", "")
	if got := deviceIDs(t, u.d); len(got) != 0 {
		t.Errorf("root's devices/ lists %q", got)
	}
	if got := read(t, u.d.Path("tokens", "alice", "limit")); got != "max 5\nused 0\n" {
		t.Errorf("alice's limit = %q", got)
	}
}

// With no token anywhere, every shim says how to bind and does nothing.
func TestShimsWithoutToken(t *testing.T) {
	if _, err := os.Stat("/etc/moreh/token"); err == nil {
		t.Skip("/etc/moreh/token exists on this machine: it would bind the user")
	}
	u := newUser(t)
	newToken(t, u.d, "alice")
	for _, args := range [][]string{
		{"moreh-smi"},
		{"moreh-smi", "-i", "2026"},
		{"moreh-smi", "device", "add", "3"},
		{"moreh-smi", "--json"},
		{"moreh-smi", "--query-device=id"},
		{"moreh-smi", "-t"},
		{"moreh-switch-model", "-M", "3"},
		{"moreh-run", "--", "true"},
	} {
		want(t, u.as(t, []string{"MOREH_SDA_TOKEN="}, args[0], args[1:]...), 1, "", howToBind(u))
	}
	// Help and usage errors need no token.
	r := u.as(t, nil, "moreh-smi", "--help")
	want(t, r, 0, r.stdout, "")
	want(t, u.as(t, nil, "moreh-smi", "--bogus"), 2, "", "moreh-smi: unknown option '--bogus'.\nRun 'moreh-smi --help' for usage.\n")
	wantUIDs(t, u.d, "alice", "")
}

// moreh-smi -t shows a token's first and last 4 characters only.
func TestTokenMasked(t *testing.T) {
	u := newUser(t)
	secret := newToken(t, u.d, "alice")
	r := u.as(t, []string{"MOREH_SDA_TOKEN=" + secret}, "moreh-smi", "--token")
	masked := "mrh_****" + secret[len(secret)-4:]
	want(t, r, 0, "Token: alice\nSecret: "+masked+"\nDevices: 0 of 5\n", "")
	if strings.Contains(r.stdout, secret[4:len(secret)-4]) {
		t.Errorf("moreh-smi -t shows the token: %q", r.stdout)
	}
}

// /etc/moreh/token binds when nothing else does. The test runs the shim in
// a mount namespace of its own, where an overlay on /etc holds the file, so
// the machine's /etc is never written.
func TestShimsBindFromEtc(t *testing.T) {
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing", tool)
		}
	}
	if out, err := exec.Command("unshare", "--mount", "true").CombinedOutput(); err != nil {
		t.Skipf("no mount namespaces here: %v %s", err, out)
	}
	u := newUser(t)
	secret := newToken(t, u.d, "alice")
	overlay := t.TempDir()
	upper, work := filepath.Join(overlay, "upper"), filepath.Join(overlay, "work")
	for _, dir := range []string{upper, work, filepath.Join(upper, "moreh")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(upper, "moreh", "token"), []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	asUser := func(env []string, args ...string) result {
		t.Helper()
		// exit 99: no overlay here (the test is skipped).
		script := `mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc || exit 99
shift 2
exec setpriv --reuid=1001 --regid=1001 --clear-groups /bin/bash "$@"`
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", upper, work,
			filepath.Join(u.shims, "moreh-smi")}, args...)...)
		cmd.Dir = "/"
		cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + u.home, "MOREH_ROOT=" + u.d.Mount}, env...)
		r := runCmd(t, cmd)
		if r.code == 99 {
			t.Skipf("no overlay mount of /etc in a mount namespace: %s", r.stderr)
		}
		return r
	}
	// ~/.moreh/token comes first.
	home := u.putToken(t, "mrh_wrong\n")
	want(t, asUser(nil, "-t"), 1, "", "moreh: the token from "+home+" was rejected: it is unknown or revoked.\n"+howToBind(u))
	wantUIDs(t, u.d, "alice", "")
	if err := os.Remove(home); err != nil {
		t.Fatal(err)
	}
	wantDone(t, asUser(nil, "device", "add", "2"), "Create device success.\n")
	wantUIDs(t, u.d, "alice", "1001\n")
	want(t, asUser(nil, "-t"), 0, "Token: alice\nSecret: mrh_****"+secret[len(secret)-4:]+"\nDevices: 1 of 5\n", "")
	if b, err := os.ReadFile("/etc/moreh/token"); err == nil && strings.Contains(string(b), secret) {
		t.Errorf("the machine's /etc/moreh/token holds the test's token")
	}
}

// The token binding, the error reading and the menu live once, in
// lib/moreh.sh, which each shim sources; no shim defines a function of it.
func TestShimsShareTheLibrary(t *testing.T) {
	t.Parallel()
	lib := read(t, filepath.Join("lib", "moreh.sh"))
	funcs := regexp.MustCompile(`(?m)^([a-z_]+)\(\) \{`).FindAllStringSubmatch(lib, -1)
	for _, want := range []string{"bind_token", "find_token", "cause", "try", "menu", "load_models", "read_file"} {
		if !strings.Contains(lib, "\n"+want+"() {") {
			t.Errorf("lib/moreh.sh lacks %s", want)
		}
	}
	for _, name := range []string{"moreh-smi", "moreh-switch-model", "moreh-run"} {
		s := read(t, name)
		if !strings.Contains(s, "\n. \"$MOREH_LIB\" || exit 1\n") {
			t.Errorf("%s does not source the library", name)
		}
		for _, f := range funcs {
			if strings.Contains(s, "\n"+f[1]+"() {") {
				t.Errorf("%s defines %s again", name, f[1])
			}
		}
	}
}
