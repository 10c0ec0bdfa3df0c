package fs

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/store"
)

const (
	aliceUID = 1001
	bobUID   = 1002
	eveUID   = 1003 // bound to no token
)

// runAs runs a bash script as uid (gid = uid) in the mount and returns its
// combined output; errors are part of the output, in the C locale.
func runAs(t *testing.T, tt *testTree, uid int, script string) string {
	t.Helper()
	cmd := exec.Command("/bin/bash", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"LC_ALL=C", "HOME=/", "PATH=/usr/bin:/bin", "M=" + tt.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// newToken creates a token as root and returns its secret.
func newToken(t *testing.T, tt *testTree, name string) string {
	t.Helper()
	if err := os.Mkdir(tt.path("admin", "tokens", name), 0o755); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(readFile(t, tt.path("admin", "tokens", name, "secret")))
	if !strings.HasPrefix(secret, "mrh_") || len(secret) != 44 {
		t.Fatalf("secret of %s = %q", name, secret)
	}
	return secret
}

// twoUsers mounts a tree with tokens alice and bob, each bound to its uid.
func twoUsers(t *testing.T) (tt *testTree, aliceSecret, bobSecret string) {
	tt = mountTree(t, store.Options{})
	aliceSecret, bobSecret = newToken(t, tt, "alice"), newToken(t, tt, "bob")
	for uid, secret := range map[int]string{aliceUID: aliceSecret, bobUID: bobSecret} {
		if out := runAs(t, tt, uid, `echo "`+secret+`" > "$M/token"`); out != "" {
			t.Fatalf("uid %d cannot bind: %s", uid, out)
		}
	}
	return tt, aliceSecret, bobSecret
}

func TestTokensIsolateUsers(t *testing.T) {
	tt, _, _ := twoUsers(t)
	out := runAs(t, tt, aliceUID, `cd "$M"; readlink devices; mkdir devices/Small.64GB && ls devices; cat current; stat -c '%u %a' tokens/alice tokens/alice/current`)
	if out != "tokens/alice/devices\n2026\n2026\n1001 700\n1001 600\n" {
		t.Errorf("alice sees:\n%s", out)
	}
	out = runAs(t, tt, bobUID, `cd "$M"; ls devices | wc -l; mkdir devices/large && ls devices; cat status | grep -c 'Large.256GB'`)
	if out != "0\n2027\n1\n" {
		t.Errorf("bob sees:\n%s", out)
	}
	// Bob can touch nothing of alice's: the kernel refuses with EACCES.
	out = runAs(t, tt, bobUID, `cd "$M/tokens"
ls alice
cat alice/current
echo 2026 > alice/current
mkdir alice/devices/Small.64GB
rmdir alice/devices/2026
echo 2026 > "$M/current"`)
	want := `ls: cannot open directory 'alice': Permission denied
cat: alice/current: Permission denied
/bin/bash: line 4: alice/current: Permission denied
mkdir: cannot create directory 'alice/devices/Small.64GB': Permission denied
rmdir: failed to remove 'alice/devices/2026': Permission denied
/bin/bash: line 7: echo: write error: No such file or directory
`
	if out != want {
		t.Errorf("bob in alice's tree:\n%s\nwant:\n%s", out, want)
	}
	if got := readFile(t, tt.path("tokens", "alice", "current")); got != "2026\n" {
		t.Errorf("alice's current changed: %q", got)
	}
	// Root sees every token.
	for token, want := range map[string]string{"alice": "2026", "bob": "2027"} {
		if got := strings.Join(listDir(t, tt.path("tokens", token, "devices")), ","); got != want {
			t.Errorf("root sees %s's devices %q, want %q", token, got, want)
		}
	}
	if out := runAs(t, tt, bobUID, `ls "$M/admin/tokens"; cat "$M/admin/tokens/bob/secret"`); !strings.Contains(out, "Permission denied") || strings.Contains(out, "mrh_") {
		t.Errorf("bob reached admin/: %s", out)
	}
}

func TestTokenLimitsArePerToken(t *testing.T) {
	tt, _, _ := twoUsers(t)
	if err := writeFile(tt.path("admin", "tokens", "alice", "max_devices"), "1\n"); err != nil {
		t.Fatal(err)
	}
	out := runAs(t, tt, aliceUID, `cd "$M"; mkdir devices/small; mkdir devices/small; cat tokens/alice/limit`)
	if out != "mkdir: cannot create directory 'devices/small': Disk quota exceeded\nmax 1\nused 1\n" {
		t.Errorf("alice at her limit:\n%s", out)
	}
	out = runAs(t, tt, bobUID, `cd "$M"; mkdir devices/small devices/medium && ls devices | wc -l; cat tokens/bob/limit`)
	if out != "2\nmax 5\nused 2\n" {
		t.Errorf("bob under his own limit:\n%s", out)
	}
}

// TestTwoUsersAtOnce: create and switch concurrently; neither touches the
// other's current.
func TestTwoUsersAtOnce(t *testing.T) {
	tt, _, _ := twoUsers(t)
	script := `cd "$M"; mkdir devices/small devices/small || exit 1
a=$(ls devices | head -1); b=$(ls devices | tail -1)
for i in $(seq 30); do echo $a > current; echo $b > current; done
cat current; ls devices | tr '\n' ' '`
	var wg sync.WaitGroup
	outs := map[int]*string{aliceUID: new(string), bobUID: new(string)}
	for uid, out := range outs {
		wg.Add(1)
		go func() { defer wg.Done(); *out = runAs(t, tt, uid, script) }()
	}
	wg.Wait()
	for uid, out := range outs {
		lines := strings.Split(*out, "\n")
		if len(lines) != 2 {
			t.Fatalf("uid %d: %q", uid, *out)
		}
		devices := strings.Fields(lines[1])
		if len(devices) != 2 || lines[0] != devices[1] {
			t.Errorf("uid %d: current %q is not its own last switch among %v", uid, lines[0], devices)
		}
	}
	if strings.Fields(*outs[aliceUID])[1] == strings.Fields(*outs[bobUID])[1] {
		t.Errorf("alice and bob share a device: %q %q", *outs[aliceUID], *outs[bobUID])
	}
}

func TestRebindAndRevoke(t *testing.T) {
	tt, aliceSecret, bobSecret := twoUsers(t)
	runAs(t, tt, aliceUID, `mkdir "$M/devices/small"`)
	// Rebinding alice's uid to bob's token shows bob's devices.
	out := runAs(t, tt, aliceUID, `echo "`+bobSecret+`" > "$M/token" && readlink "$M/devices"`)
	if out != "tokens/bob/devices\n" {
		t.Errorf("after rebinding: %q", out)
	}
	if got := readFile(t, tt.path("admin", "tokens", "bob", "uids")); got != "1002\n1001\n" {
		t.Errorf("bob's uids = %q", got)
	}
	if got := readFile(t, tt.path("admin", "tokens", "alice", "uids")); got != "" {
		t.Errorf("alice's uids after the rebind = %q", got)
	}
	// A token with devices cannot be revoked.
	if err := syscall.Rmdir(tt.path("admin", "tokens", "alice")); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("revoke alice with a device = %v, want EBUSY", err)
	}
	if err := syscall.Rmdir(tt.path("tokens", "alice", "devices", "2026")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(tt.path("admin", "tokens", "alice")); err != nil {
		t.Fatalf("revoke alice: %v", err)
	}
	out = runAs(t, tt, eveUID, `echo "`+aliceSecret+`" > "$M/token"; ls "$M/devices"`)
	want := "/bin/bash: line 1: echo: write error: Key was rejected by service\nls: cannot access '/moreh-mnt/devices': Required key not available\n"
	if out != strings.ReplaceAll(want, "/moreh-mnt", tt.dir) {
		t.Errorf("a revoked token and an unbound user:\n%s", out)
	}
}

// TestBadSecrets: refused writes to token change no binding and leak nothing.
func TestBadSecrets(t *testing.T) {
	tt, aliceSecret, bobSecret := twoUsers(t)
	bad := []struct{ name, data string }{
		{"wrong secret", "mrh_0000000000000000000000000000000000000000"},
		{"empty write", "\n"},
		{"huge write", strings.Repeat("x", 5000)},
		{"secret with a newline", bobSecret + "\nmore"},
		{"secret and spaces", " " + bobSecret},
	}
	for _, b := range bad {
		err := writeFile(tt.path("token"), b.data)
		var errno syscall.Errno
		if !errors.As(err, &errno) || (errno != syscall.EKEYREJECTED && errno != syscall.EINVAL) {
			t.Errorf("%s: %v, want EKEYREJECTED or EINVAL", b.name, err)
		}
	}
	if out := runAs(t, tt, aliceUID, `readlink "$M/devices"`); out != "tokens/alice/devices\n" {
		t.Errorf("alice's binding changed: %q", out)
	}
	for _, path := range [][]string{{"tokens", "default", "errors"}, {"tokens", "alice", "errors"}, {"tokens", "alice", "status"}, {"tokens", "alice", "status.json"}} {
		content := readFile(t, tt.path(path...))
		if strings.Contains(content, aliceSecret) || strings.Contains(content, bobSecret) {
			t.Errorf("%v shows a secret:\n%s", path, content)
		}
	}
}

func TestTokenNames(t *testing.T) {
	tt := mountTree(t, store.Options{})
	for _, name := range []string{"Alice", "a b", ".hidden", "-x", strings.Repeat("a", 33), "ü"} {
		if err := os.Mkdir(tt.path("admin", "tokens", name), 0o755); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("mkdir admin/tokens/%q = %v, want EINVAL", name, err)
		}
	}
	if err := os.Mkdir(tt.path("admin", "tokens", "default"), 0o755); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("mkdir admin/tokens/default = %v, want EEXIST", err)
	}
	if got := listDir(t, tt.path("tokens")); strings.Join(got, ",") != "default" {
		t.Errorf("tokens after refused names = %v", got)
	}
}

func TestAttachOnlyOwnProcesses(t *testing.T) {
	tt, _, _ := twoUsers(t)
	out := runAs(t, tt, aliceUID, `cd "$M"; mkdir devices/small; echo 1 > devices/2026/procs; echo $$ > devices/2026/procs && grep -cx $$ devices/2026/procs`)
	if out != "/bin/bash: line 1: echo: write error: Operation not permitted\n1\n" {
		t.Errorf("attach as alice:\n%s", out)
	}
}

// TestCachedOwnersFollowBindings: a token's attributes are cached while one
// user owns it, and every binding change drops them at once, so that the
// kernel's permission check never uses an owner from before the change.
func TestCachedOwnersFollowBindings(t *testing.T) {
	tt, aliceSecret, _ := twoUsers(t)
	// One user each: every caller, root included, sees that user as owner.
	out := runAs(t, tt, 0, `cd "$M/tokens"; stat -c '%u %a' alice alice/current bob bob/devices`)
	if out != "1001 700\n1001 600\n1002 700\n1002 700\n" {
		t.Errorf("owners seen by root:\n%s", out)
	}
	// Bob caches his own token's attributes, then joins alice's token: he
	// reads her files at once (a cached owner 1001 would refuse him) and no
	// longer his old token's (a cached owner 1002 would let him in).
	out = runAs(t, tt, bobUID, `cd "$M/tokens"; cat bob/current; stat -c %u bob bob/current
echo "`+aliceSecret+`" > "$M/token"
cat alice/current && stat -c '%u %a' alice alice/current
cat bob/current`)
	want := "1002\n1002\n0 777\n0 666\ncat: bob/current: Permission denied\n"
	if out != want {
		t.Errorf("bob joining alice's token:\n%s\nwant:\n%s", out, want)
	}
	// Shared by two users, root owns it, its modes open to all (the daemon
	// admits its users: TestSharedTokenNeverRefusesItsUsers); bob's old
	// token has no user left and belongs to root.
	if out := runAs(t, tt, aliceUID, `stat -c '%u %a' "$M/tokens/alice"`); out != "0 777\n" {
		t.Errorf("alice sees her shared token as %q", out)
	}
	if out := runAs(t, tt, 0, `stat -c %u "$M/tokens/alice" "$M/tokens/bob"`); out != "0\n0\n" {
		t.Errorf("root sees the shared token and the empty one owned by:\n%s", out)
	}
	// Revoking the last tokens opens the default token to every local user
	// at once, though root just cached it as root's and 0700.
	if out := runAs(t, tt, 0, `stat -c '%u %a' "$M/tokens/default" "$M/tokens/default/current"`); out != "0 700\n0 600\n" {
		t.Errorf("the default token before the revoke:\n%s", out)
	}
	for _, name := range []string{"alice", "bob"} {
		if err := syscall.Rmdir(tt.path("admin", "tokens", name)); err != nil {
			t.Fatal(err)
		}
	}
	out = runAs(t, tt, eveUID, `cd "$M"; readlink current; cat tokens/default/current && stat -c '%u %a' tokens/default tokens/default/current`)
	if out != "tokens/default/current\n0 777\n0 666\n" {
		t.Errorf("eve after the last revoke:\n%s", out)
	}
}
