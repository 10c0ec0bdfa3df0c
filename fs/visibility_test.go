package fs

import (
	"strconv"
	"strings"
	"testing"
)

// poolDevices is the device column of each line of pool as uid reads it.
func poolDevices(t *testing.T, tt *testTree, uid int) []string {
	t.Helper()
	var col []string
	for _, line := range strings.Split(strings.TrimSpace(runAs(t, tt, uid, `cat "$M/pool"`)), "\n") {
		if f := strings.Fields(line); len(f) > 2 {
			col = append(col, f[2])
		}
	}
	return col
}

// TestTokensAndPoolHideOthers: an unbound user lists no token under
// tokens/, and neither it nor another token's user can look a token up
// (EACCES, whether the name exists or not) or learn its owner by stat;
// pool shows them a GPU bound to another token's job as "*", while root
// and the token's own users see its device id.
func TestTokensAndPoolHideOthers(t *testing.T) {
	tt, _, _ := twoUsers(t)
	// bob and eve first: nothing of alice's is in the kernel's caches yet.
	for uid, want := range map[int]string{
		eveUID: "\n" + `stat: cannot statx '$M/tokens/alice': Permission denied` + "\n" + `stat: cannot statx '$M/tokens/nosuch': Permission denied` + "\n",
		bobUID: "bob\n" + `stat: cannot statx '$M/tokens/alice': Permission denied` + "\n" + `stat: cannot statx '$M/tokens/nosuch': Permission denied` + "\n",
	} {
		out := runAs(t, tt, uid, `echo $(ls "$M/tokens"); stat -c '%u' "$M/tokens/alice" "$M/tokens/nosuch" 2>&1 | sed "s|$M|\$M|g; s/cannot stat /cannot statx /"`)
		if out != want {
			t.Errorf("uid %d sees:\n%s\nwant:\n%s", uid, out, want)
		}
	}
	if out := runAs(t, tt, aliceUID, `ls "$M/tokens"; stat -c '%u' "$M/tokens/alice"`); out != "alice\n1001\n" {
		t.Errorf("alice sees:\n%s", out)
	}
	if got := listDir(t, tt.path("tokens")); strings.Join(got, " ") != "alice bob default" {
		t.Errorf("root lists tokens %v", got)
	}

	// alice runs a job: its GPU is hers to name, "*" to everyone else.
	if out := runAs(t, tt, aliceUID, `mkdir "$M/devices/Small.64GB" && cat "$M/current"`); out != "2026\n" {
		t.Fatalf("alice's mkdir: %q", out)
	}
	pid, stop := startProc(t, 1)
	defer stop()
	if err := writeFile(tt.path("tokens", "alice", "devices", "2026", "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	for uid, want := range map[int]string{0: "2026", aliceUID: "2026", bobUID: "*", eveUID: "*"} {
		col := poolDevices(t, tt, uid)
		if len(col) != 4 || col[0] != want || col[1] != "-" {
			t.Errorf("uid %d: pool device column %v, want [%s - - -]", uid, col, want)
		}
	}
}
