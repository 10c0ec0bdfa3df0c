package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store/etcdtest"
)

// bindAs writes secret to the tree's token file as uid (a real non-root
// user) and returns the shell's error output, "" on success.
func bindAs(t *testing.T, d *morehdtest.Daemon, uid int, secret string) string {
	t.Helper()
	cmd := exec.Command("/bin/bash", "-c", `echo "$S" > "$M/token"`)
	cmd.Dir = "/"
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin", "M=" + d.Mount, "S=" + secret}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// addTokenFor opens the way to d's mount for other users' shells and adds
// the token name, returning its secret.
func addTokenFor(t *testing.T, d *morehdtest.Daemon, name string) string {
	t.Helper()
	for _, dir := range []string{filepath.Dir(filepath.Dir(d.Mount)), filepath.Dir(d.Mount)} {
		os.Chmod(dir, 0o755)
	}
	code, secret, stderr := runMorehd(t, "token", "add", name, "--mount", d.Mount)
	if code != 0 {
		t.Fatalf("token add %s: %d %s", name, code, stderr)
	}
	return strings.TrimSpace(secret)
}

// TestTokenKeyLostOrWrong: with tokens, a missing or foreign token.key is
// refused at start with one line naming the fix and exit 1 (never a new key
// made in silence), and `morehd token rotate-key` recovers: every token gets
// a new secret that binds, the old ones stop binding, bound users stay bound.
func TestTokenKeyLostOrWrong(t *testing.T) {
	d := morehdtest.Start(t)
	alice := addTokenFor(t, d, "alice")
	_, bob, _ := runMorehd(t, "token", "add", "bob", "--mount", d.Mount)
	bob = strings.TrimSpace(bob)
	if out := bindAs(t, d, 1001, alice); out != "" {
		t.Fatalf("uid 1001 binds alice: %s", out)
	}
	d.Stop()

	keyPath := filepath.Join(filepath.Dir(d.DB), "token.key")
	start := func() (int, string) {
		code, _, stderr := runMorehd(t, "--mount", d.Mount, "--db", d.DB, "--gpus", "sim")
		return code, stderr
	}
	// Lost: refused, and no key is left behind to be trusted next time.
	if err := os.Rename(keyPath, keyPath+".lost"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		code, stderr := start()
		t.Logf("key missing: exit %d: %s", code, strings.TrimSpace(stderr))
		if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "token key "+keyPath+" is missing") || !strings.Contains(stderr, "morehd token rotate-key --db "+d.DB) {
			t.Errorf("start without token.key: exit %d, %q", code, stderr)
		}
		if _, err := os.Stat(keyPath); !os.IsNotExist(err) {
			t.Errorf("a refused start left a key behind: %v", err)
		}
	}
	// Wrong: another key of the right length.
	if err := os.WriteFile(keyPath, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := start(); code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "does not match") {
		t.Errorf("start with a foreign token.key: exit %d, %q", code, stderr)
	}
	// The right key back: it starts.
	if err := os.Rename(keyPath+".lost", keyPath); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	// rotate-key refuses while the daemon holds the state.
	if code, _, stderr := runMorehd(t, "token", "rotate-key", "--db", d.DB); code != 1 || !strings.Contains(stderr, "in use by a running morehd") {
		t.Errorf("rotate-key under a running daemon: %d %q", code, stderr)
	}
	d.Stop()
	os.Remove(keyPath) // lost again; rotate-key is the way out
	code, out, stderr := runMorehd(t, "token", "rotate-key", "--db", d.DB)
	t.Logf("rotate-key: exit %d\n%s%s", code, out, stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "alice mrh_") || !strings.HasPrefix(lines[1], "bob mrh_") {
		t.Fatalf("rotate-key: exit %d, %q %q", code, out, stderr)
	}
	newAlice, newBob := strings.Fields(lines[0])[1], strings.Fields(lines[1])[1]
	if newAlice == alice || newBob == bob {
		t.Errorf("rotate-key kept a secret")
	}
	d.Restart()
	if got := strings.TrimSpace(read(t, d.Path("admin", "tokens", "alice", "secret"))); got != newAlice {
		t.Errorf("admin/tokens/alice/secret = %q, want the rotated %q", got, newAlice)
	}
	if out := bindAs(t, d, 1002, bob); !strings.Contains(out, "Key was rejected by service") {
		t.Errorf("bob's old secret after the rotation: %q, want EKEYREJECTED", out)
	}
	// The rejection throttles uid 1002 for 100 ms (EAGAIN): then it binds.
	morehdtest.Eventually(t, 5*time.Second, "bob's new secret binds", func() bool {
		return bindAs(t, d, 1002, newBob) == ""
	})
	// uid 1001 stayed bound to alice through the rotation.
	if got := strings.TrimSpace(read(t, d.Path("admin", "tokens", "alice", "uids"))); got != "1001" {
		t.Errorf("alice's uids after the rotation = %q", got)
	}
}

// TestTokenRotateKeyOnEtcd: on an etcd pool, rotate-key refuses while a node
// serves it (naming the node), and with every node stopped gives each token
// a new secret that binds after the restart while the old one is rejected.
func TestTokenRotateKeyOnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	endpoints := strings.Join(etcdtest.Start(t, 1).Endpoints(), ",")
	d := morehdtest.Start(t, "--store", "etcd", "--etcd-endpoints", endpoints, "--node", "node-a", "--gpus", "sim:2", "--etcd-lease-ttl", "2s")
	alice := addTokenFor(t, d, "alice")
	rotate := func() (int, string, string) {
		return runMorehd(t, "token", "rotate-key", "--store", "etcd", "--etcd-endpoints", endpoints, "--db", d.DB)
	}
	if code, _, stderr := rotate(); code != 1 || !strings.Contains(stderr, "serves this etcd pool on node-a: stop every node first") {
		t.Errorf("rotate-key under a serving node: exit %d, %q", code, stderr)
	}
	d.Stop()
	morehdtest.Eventually(t, 10*time.Second, "rotate-key once the node's lease is gone", func() bool {
		code, out, stderr := rotate()
		if code != 0 {
			return false
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "alice mrh_") || strings.Fields(lines[0])[1] == alice || !strings.Contains(stderr, "copy "+filepath.Join(filepath.Dir(d.DB), "token.key")+" beside every node's --db") {
			t.Fatalf("rotate-key on etcd: %q %q", out, stderr)
		}
		alice = strings.Fields(lines[0])[1]
		return true
	})
	d.Restart()
	if got := strings.TrimSpace(read(t, d.Path("admin", "tokens", "alice", "secret"))); got != alice {
		t.Errorf("admin/tokens/alice/secret = %q, want the rotated %q", got, alice)
	}
	if out := bindAs(t, d, 1003, alice); out != "" {
		t.Errorf("the rotated secret does not bind: %q", out)
	}
	if code, _, stderr := runMorehd(t, "token", "list", "--store", "etcd"); code != 2 || !strings.Contains(stderr, "go with rotate-key only") {
		t.Errorf("token list --store etcd: exit %d, %q", code, stderr)
	}
}
