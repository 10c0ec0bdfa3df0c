package fs

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// keptHandles is Python that, as the token's user, opens current for
// reading and writing, devices/ as a directory and makes devices/ its cwd,
// says "ready", and once told to go on tries each of them; NEW is the id it
// tries to switch to (the new token's device).
const keptHandles = tryRows + `
S = M + "/tokens/alice"
cur = os.open(S + "/current", os.O_RDWR)
devs = os.open(S + "/devices", os.O_RDONLY | os.O_DIRECTORY)
os.chdir(S + "/devices")
print("ready", flush=True)
new = sys.stdin.readline().strip()
row("write current fd", lambda: os.write(cur, (new + "\n").encode()))
row("read current fd", lambda: os.pread(cur, 100, 0))
row("ls devices fd", lambda: os.listdir(devs))
row("ls cwd", lambda: os.listdir("."))
row("stat cwd", lambda: os.stat("."))
row("cat ../current", lambda: read("../current"))
row("echo > ../current", lambda: write("../current", new))
row("cat ../errors", lambda: read("../errors"))
row("mkdir in cwd", lambda: os.mkdir("Small.64GB"))
row("cat cwd/new/model", lambda: read(new + "/model"))
`

// TestRevokeEndsOpenHandles: alice keeps fds on current and devices/ and a
// cwd in her token; root revokes it and creates a token of the same name
// for eve. Every one of alice's handles answers ESTALE, none reaches eve's
// token (its current, devices and errors show nothing of alice).
func TestRevokeEndsOpenHandles(t *testing.T) {
	tt, _, _ := twoUsers(t)
	out := runAs(t, tt, aliceUID, `mkdir "$M/devices/Small.64GB" && cat "$M/current"; mkdir "$M/devices/NoSuch.1GB"`)
	if !strings.HasPrefix(out, "2026\n") || !strings.Contains(readFile(t, tt.path("tokens", "alice", "errors")), "uid=1001") {
		t.Fatalf("alice's device and failure: %q", out)
	}
	cmd := exec.Command("/usr/bin/python3", "-c", keptHandles)
	cmd.Dir = "/"
	cmd.Env = []string{"LC_ALL=C", "M=" + tt.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: aliceUID, Gid: aliceUID}}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := bufio.NewReader(outPipe)
	if l, err := lines.ReadString('\n'); l != "ready\n" {
		t.Fatalf("alice's handles: %q, %v", l, err)
	}

	// Root empties and revokes alice's token and makes a new one of the
	// name for eve, who creates a device in it.
	for _, p := range [][]string{{"tokens", "alice", "devices", "2026"}, {"admin", "tokens", "alice"}} {
		if err := syscall.Rmdir(tt.path(p...)); err != nil {
			t.Fatal(err)
		}
	}
	secret := newToken(t, tt, "alice")
	out = runAs(t, tt, eveUID, `echo "`+secret+`" > "$M/token" && mkdir "$M/devices/Small.64GB" && cat "$M/current"`)
	if out != "2027\n" {
		t.Fatalf("eve in the new alice: %q", out)
	}

	io.WriteString(in, "2027\n")
	rest, _ := io.ReadAll(lines)
	want := `write current fd: ESTALE
read current fd: ESTALE
ls devices fd: ESTALE
ls cwd: ESTALE
stat cwd: ESTALE
cat ../current: ESTALE
echo > ../current: ESTALE
cat ../errors: ESTALE
mkdir in cwd: ESTALE
cat cwd/new/model: ESTALE
`
	if string(rest) != want {
		t.Errorf("alice's handles after the revoke:\n%s\nwant:\n%s", rest, want)
	}
	// Eve's token holds only her own.
	if got := readFile(t, tt.path("tokens", "alice", "errors")); got != "" {
		t.Errorf("the new alice's errors:\n%s", got)
	}
	if got := strings.Join(listDir(t, tt.path("tokens", "alice", "devices")), " "); got != "2027" {
		t.Errorf("the new alice's devices: %s", got)
	}
	if out := runAs(t, tt, eveUID, `cat "$M/current"; cat "$M/tokens/alice/errors"; ls "$M/devices"`); out != "2027\n2027\n" {
		t.Errorf("eve sees:\n%s", out)
	}
	// Alice, bound to nothing now, is refused the new token by its name.
	if out := runAs(t, tt, aliceUID, `ls "$M/tokens/alice" 2>&1 | sed "s|$M|\$M|"`); out != "ls: cannot open directory '$M/tokens/alice': Permission denied\n" {
		t.Errorf("alice lists the new alice: %q", out)
	}
}
