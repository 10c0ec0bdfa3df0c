package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/store"
)

// pyAs runs a Python script as uid (gid = uid) with the mount in M, the
// files given as fds 3, 4, … and returns its combined output.
func pyAs(t *testing.T, tt *testTree, uid int, script string, files ...*os.File) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"LC_ALL=C", "HOME=/", "PATH=/usr/bin:/bin", "M=" + tt.dir}
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// tryRows is Python that runs each (name, callable) row and prints
// "name: OK" or "name: <errno name>", one line each.
const tryRows = `
import errno, os, sys
M = os.environ["M"]
def row(name, f):
    try:
        f()
        print(name + ": OK")
    except OSError as e:
        print(name + ": " + errno.errorcode.get(e.errno, str(e.errno)))
def read(p):
    with open(p) as f:
        f.read()
def write(p, s):
    with open(p, "w") as f:
        f.write(s)
`

// sharedLoad is what each user of a shared token runs for 10 s: reads,
// stats, listings, creations, removals and switches, through the
// per-caller links and the token's direct paths; it prints how many rounds
// it ran and each distinct failure with its count.
const sharedLoad = `cd /
end=$((SECONDS+10)); n=0
( while [ $SECONDS -lt $end ]; do
  n=$((n+1))
  {
    cat "$M/current" "$M/tokens/shared/limit" "$M/tokens/shared/status" >/dev/null
    stat -c %a "$M/tokens/shared" "$M/tokens/shared/devices" "$M/tokens/shared/current" >/dev/null
    mkdir "$M/devices/Small.64GB"
    for id in $(ls "$M/devices"); do
      cat "$M/devices/$id/model" >/dev/null
      echo "$id" > "$M/tokens/shared/current"
      [ "$id" = "$KEEP" ] || rmdir "$M/tokens/shared/devices/$id"
    done
    (cd "$M/tokens/shared/devices/$KEEP" && cat model gpus env >/dev/null && ls >/dev/null)
  } 2>&1
done; echo "rounds $n" ) | sed "s|$M|\$M|g; s/line [0-9]*: //; s|devices/[0-9][0-9]*|devices/ID|" | sort | uniq -c`

// TestSharedTokenNeverRefusesItsUsers: two users bound to one token work on
// it at once for 10 s and no operation is refused (EACCES), while a third
// user on another token reaches nothing of it by any way in: direct paths,
// a symlink, another process's cwd in /proc, an fd passed to it, a hard
// link, a rename; both while the two work and after.
func TestSharedTokenNeverRefusesItsUsers(t *testing.T) {
	tt := mountTree(t, store.Options{})
	shared, other := newToken(t, tt, "shared"), newToken(t, tt, "other")
	for uid, secret := range map[int]string{aliceUID: shared, bobUID: shared, eveUID: other} {
		if out := runAs(t, tt, uid, `echo "`+secret+`" > "$M/token"`); out != "" {
			t.Fatalf("uid %d cannot bind: %s", uid, out)
		}
	}
	keep := mkdeviceIn(t, tt, "shared", "Small.64GB")
	// alice's process whose cwd is in the shared token, for /proc/<pid>/cwd.
	sleeper := exec.Command("/bin/sleep", "60")
	sleeper.Dir = tt.path("tokens", "shared", "devices")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: aliceUID, Gid: aliceUID}}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	// An fd on the shared token's directory, opened by a bound user (root)
	// and passed to eve.
	passed, err := os.Open(tt.path("tokens", "shared"))
	if err != nil {
		t.Fatal(err)
	}
	defer passed.Close()
	scratch := t.TempDir()
	if err := os.Chmod(scratch, 0o777); err != nil {
		t.Fatal(err)
	}
	isolation := tryRows + `
S = M + "/tokens/shared"
K = S + "/devices/` + keep + `"
link = "` + filepath.Join(scratch, "link") + `"
if not os.path.islink(link):
    os.symlink(S + "/current", link)
row("ls tokens/shared", lambda: os.listdir(S))
row("stat tokens/shared", lambda: os.stat(S))
row("cat current", lambda: read(S + "/current"))
row("write current", lambda: write(S + "/current", "` + keep + `"))
row("stat current", lambda: os.stat(S + "/current"))
row("mkdir devices/Small.64GB", lambda: os.mkdir(S + "/devices/Small.64GB"))
row("rmdir devices/id", lambda: os.rmdir(K))
row("cat devices/id/model", lambda: read(K + "/model"))
row("ls devices/id", lambda: os.listdir(K))
row("cat symlink", lambda: read(link))
row("ls /proc/pid/cwd", lambda: os.listdir("/proc/` + strconv.Itoa(sleeper.Process.Pid) + `/cwd"))
row("ls passed fd", lambda: os.listdir(3))
row("cat passed fd/current", lambda: read("/proc/self/fd/3/current"))
try:
    st = os.stat("devices", dir_fd=3)
    print("stat passed fd/devices: EACCES or cached" if (st.st_uid, oct(st.st_mode)) == (0, "0o40777") else "stat passed fd/devices: %d %o" % (st.st_uid, st.st_mode))
except OSError as e:
    print("stat passed fd/devices: " + ("EACCES or cached" if e.errno == errno.EACCES else errno.errorcode[e.errno]))
row("cat passed fd/devices/id/model", lambda: read(os.path.join("/proc/self/fd/3/devices/` + keep + `/model")))
row("hard link current", lambda: os.link(S + "/current", M + "/tokens/other/current2"))
row("rename current", lambda: os.rename(S + "/current", M + "/tokens/other/current2"))
row("own token", lambda: os.listdir(M + "/tokens/other"))
`
	// The one thing a passed fd may give: stat of a name the kernel keeps
	// below it, answered from its cache (else the daemon refuses it).
	// Attributes are the same for every caller and tell nothing (root,
	// 0777); opening, listing and changing always ask the daemon.
	want := `ls tokens/shared: EACCES
stat tokens/shared: EACCES
cat current: EACCES
write current: EACCES
stat current: EACCES
mkdir devices/Small.64GB: EACCES
rmdir devices/id: EACCES
cat devices/id/model: EACCES
ls devices/id: EACCES
cat symlink: EACCES
ls /proc/pid/cwd: EACCES
ls passed fd: EACCES
cat passed fd/current: EACCES
stat passed fd/devices: EACCES or cached
cat passed fd/devices/id/model: EACCES
hard link current: EACCES
rename current: EACCES
own token: OK
`

	var wg sync.WaitGroup
	outs := map[int]*string{aliceUID: new(string), bobUID: new(string)}
	for uid, out := range outs {
		wg.Add(1)
		go func() { defer wg.Done(); *out = runAs(t, tt, uid, "KEEP="+keep+"\n"+sharedLoad) }()
	}
	// While they work, with everything of theirs in the kernel's caches.
	var during []string
	for range 3 {
		during = append(during, pyAs(t, tt, eveUID, isolation, passed))
	}
	wg.Wait()
	for uid, out := range outs {
		if strings.Contains(*out, "Permission denied") || !strings.Contains(*out, " rounds ") || strings.Contains(*out, " rounds 0\n") {
			t.Errorf("uid %d on the shared token was refused:\n%s", uid, *out)
		} else {
			t.Logf("uid %d:\n%s", uid, *out)
		}
	}
	for i, got := range append(during, pyAs(t, tt, eveUID, isolation, passed)) {
		if got != want {
			t.Errorf("eve's run %d in the shared token:\n%s\nwant:\n%s", i, got, want)
		}
	}
	// The shared token's users and root still reach all of it.
	for _, uid := range []int{aliceUID, bobUID, 0} {
		out := runAs(t, tt, uid, `cat "$M/tokens/shared/devices/`+keep+`/model" && echo `+keep+` > "$M/tokens/shared/current" && ls "$M/tokens/shared/devices"`)
		if out != "Small.64GB\n"+keep+"\n" {
			t.Errorf("uid %d in the shared token after the run:\n%s", uid, out)
		}
	}
}

// mkdeviceIn creates a device in token's devices/ as root and returns its id.
func mkdeviceIn(t *testing.T, tt *testTree, token, model string) string {
	t.Helper()
	if err := os.Mkdir(tt.path("tokens", token, "devices", model), 0o755); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(readFile(t, tt.path("tokens", token, "current")))
}
