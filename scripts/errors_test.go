package scripts_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Two users of one token, with no home of their own.
const aliceUID, bobUID = 4001, 4002

// shareToken binds aliceUID and bobUID to one new token of u's daemon and
// returns the environment that names it.
func shareToken(t *testing.T, u *user) []string {
	t.Helper()
	env := []string{"MOREH_SDA_TOKEN=" + newToken(t, u.d, "team"), "HOME=/nonexistent"}
	for _, uid := range []uint32{aliceUID, bobUID} {
		wantDone(t, runCmd(t, u.commandAs(uid, env, "moreh-smi", "device", "add", "1")), "Create device success.\n")
	}
	wantUIDs(t, u.d, "team", "4001\n4002\n")
	return env
}

func unknownModel(model string) string {
	return `Create device failed. (Unknown model "` + model + `": the models file lists them (e.g. Large.256GB).)` + "\n"
}

// A failure sentence belongs to its caller: alice's mkdir fails, and bob's
// fails after it on the same token before alice's shim reads errors; each
// shim prints its own sentence, not the last line of errors.
func TestFailureSentenceOfItsCaller(t *testing.T) {
	u := newUser(t)
	env := shareToken(t, u)
	// Alice's mkdir makes the failing system call in its own process, as
	// mkdir(1) does, then waits on the test before exiting.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	failed, goOn := filepath.Join(dir, "failed"), filepath.Join(dir, "go")
	for _, fifo := range []string{failed, goOn} {
		if err := syscall.Mkfifo(fifo, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(fifo, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := `#!/usr/bin/env python3
import os, sys
path = sys.argv[-1]
try:
    os.mkdir(path)
except OSError as e:
    print("mkdir: cannot create directory '%s': %s" % (path, e.strerror), file=sys.stderr, flush=True)
    open(` + fmt.Sprintf("%q", failed) + `, "w").write("failed\n")
    open(` + fmt.Sprintf("%q", goOn) + `).read()
    sys.exit(1)
`
	if err := os.WriteFile(filepath.Join(dir, "mkdir"), []byte(mkdir), 0o755); err != nil {
		t.Fatal(err)
	}
	alice := u.commandAs(aliceUID, append(env, "PATH="+dir+":/usr/bin:/bin"), "moreh-smi", "device", "add", "BogusA")
	var stdout, stderr syncBuffer
	alice.Stdout, alice.Stderr = &stdout, &stderr
	if err := alice.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- alice.Wait() }()
	reached := make(chan struct{})
	go func() { os.ReadFile(failed); close(reached) }()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("alice's moreh-smi ended (%v) before its mkdir failed: %s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("alice's mkdir did not fail within 30s")
	}
	// Alice's failure is in errors; bob's lands after it.
	want(t, runCmd(t, u.commandAs(bobUID, env, "moreh-smi", "device", "add", "BogusB")), 1, "", unknownModel("BogusB"))
	if err := os.WriteFile(goOn, []byte("go\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("alice's moreh-smi did not end within 30s")
	}
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: alice.ProcessState.ExitCode()}
	want(t, r, 1, "", unknownModel("BogusA"))

	// Each line of errors names its caller, alice's first.
	lines := strings.Split(strings.TrimSuffix(read(t, u.d.Path("tokens", "team", "errors")), "\n"), "\n")
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ pid=[1-9]\d* uid=(\d+) mkdir tokens/team/devices/(\S+): `)
	var got []string
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("errors line %q is not <time> pid=<pid> uid=<uid> mkdir <path>: <message>", l)
		}
		got = append(got, m[1]+" "+m[2])
	}
	if strings.Join(got, ",") != "4001 BogusA,4002 BogusB" {
		t.Errorf("errors names %q, want alice's BogusA then bob's BogusB:\n%s", got, strings.Join(lines, "\n"))
	}
}

// Two users of one token fail at the same moment, round after round, with
// mkdir (a child of the shim makes the system call) and with a write to
// current (the shell itself makes it): no shim prints another's sentence.
//
// The kernel may also refuse a shim before morehd is asked: while two users
// share a token, each sees itself as its owner with an attribute timeout of
// 0, and the kernel takes attributes fetched for one user within the same
// jiffy as fresh for the other (setAttr in fs/tree.go). Then the operation
// fails with "Permission denied", or the errors file cannot be read and
// the shim shows its own errno's text ("Invalid argument", "No such file or
// directory"). Those are counted and logged, never the other's sentence.
func TestFailureSentencesAtOnce(t *testing.T) {
	u := newUser(t)
	env := shareToken(t, u)
	own, refused := 0, 0
	errnoText := regexp.MustCompile(` failed\. \((Permission denied|Invalid argument|No such file or directory)\)\n$`)
	for round := range 10 {
		type run struct {
			uid    uint32
			args   []string
			stderr string
		}
		switchFailed := func(id int) string {
			return fmt.Sprintf("Switch current device failed. (Device %d does not exist.)\n", id)
		}
		runs := []run{
			{aliceUID, []string{"device", "add", fmt.Sprint("BogusA", round)}, unknownModel(fmt.Sprint("BogusA", round))},
			{bobUID, []string{"device", "add", fmt.Sprint("BogusB", round)}, unknownModel(fmt.Sprint("BogusB", round))},
			{aliceUID, []string{"device", "--switch", fmt.Sprint(9100 + round)}, switchFailed(9100 + round)},
			{bobUID, []string{"device", "--switch", fmt.Sprint(9200 + round)}, switchFailed(9200 + round)},
		}
		results := make([]chan result, len(runs))
		for i, r := range runs {
			results[i] = make(chan result, 1)
			cmd := u.commandAs(r.uid, env, "moreh-smi", r.args...)
			go func() {
				r, err := runResult(cmd)
				if err != nil {
					r.code, r.stderr = -1, err.Error()
				}
				results[i] <- r
			}()
		}
		for i, r := range runs {
			got := <-results[i]
			if errnoText.MatchString(got.stderr) && strings.Count(got.stderr, "\n") == 1 && got.code == 1 && got.stdout == "" {
				refused++
				continue
			}
			want(t, got, 1, "", r.stderr)
			own++
		}
	}
	t.Logf("%d own sentences, %d errno texts where the kernel's attribute cache refused a shim", own, refused)
	if own == 0 {
		t.Error("no shim got to morehd: every run was refused")
	}
}
