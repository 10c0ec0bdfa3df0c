package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

func read(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func ls(t *testing.T, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// populate gives the daemon three devices, removes one and switches, so
// devices, current, the use order and the next id all carry state.
func populate(t *testing.T, d *morehdtest.Daemon) {
	t.Helper()
	for _, m := range []string{"Small.64GB", "Large.256GB", "xLarge.512GB"} {
		if err := os.Mkdir(d.Path("devices", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Rmdir(d.Path("devices", "2027")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Path("current"), []byte("2026\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Path("devices", "2028", "model"), []byte("Medium.128GB\n"), 0); err != nil {
		t.Fatal(err)
	}
}

// checkPopulated checks what populate left, and that the next id is 2029.
func checkPopulated(t *testing.T, d *morehdtest.Daemon) {
	t.Helper()
	if got := ls(t, d.Path("devices")); !slices.Equal(got, []string{"2026", "2028"}) {
		t.Errorf("devices = %v, want [2026 2028]", got)
	}
	if got := read(t, d.Path("current")); got != "2026\n" {
		t.Errorf("current = %q, want 2026", got)
	}
	if got := read(t, d.Path("devices", "2028", "model")); got != "Medium.128GB\n" {
		t.Errorf("model of 2028 = %q", got)
	}
	if err := syscall.Rmdir(d.Path("devices", "2026")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d.Path("current")); got != "2028\n" {
		t.Errorf("fallback after restart = %q, want 2028", got)
	}
	if err := os.Mkdir(d.Path("devices", "small"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d.Path("current")); got != "2029\n" {
		t.Errorf("next id after restart = %q, want 2029", got)
	}
}

func TestStateSurvivesSIGKILL(t *testing.T) {
	d := morehdtest.Start(t)
	populate(t, d)
	d.Kill() // leaves a stale mount; the next start must clear it
	if _, err := os.Stat(d.Path("devices")); err == nil {
		t.Fatal("the mount still answers after SIGKILL")
	}
	d.Restart()
	if !strings.Contains(d.Log(), "clearing a stale mount") {
		t.Errorf("restart did not report clearing the stale mount:\n%s", d.Log())
	}
	checkPopulated(t, d)
}

func TestStateSurvivesSIGTERM(t *testing.T) {
	d := morehdtest.Start(t)
	populate(t, d)
	d.Stop()
	if !strings.Contains(d.Log(), `msg=stopping`) {
		t.Errorf("no stop line in the log:\n%s", d.Log())
	}
	d.Restart()
	checkPopulated(t, d)
}

func TestMaxDevicesFlag(t *testing.T) {
	d := morehdtest.Start(t, "--max-devices", "1", "--first-id", "7")
	if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); !errorsIs(err, syscall.EDQUOT) {
		t.Errorf("second mkdir with --max-devices 1 = %v, want EDQUOT", err)
	}
	if got := read(t, d.Path("current")); got != "7\n" {
		t.Errorf("--first-id 7 gave %q", got)
	}
}

func errorsIs(err error, errno syscall.Errno) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == errno
}

// runMorehd runs the binary to completion and returns its exit code and output.
func runMorehd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(morehdtest.Binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "morehd: unknown flag: --no-such-flag\nRun 'morehd --help' for usage.\n"},
		{[]string{"--max-devices", "0"}, "morehd: --max-devices must be at least 1, not 0\nRun 'morehd --help' for usage.\n"},
		{[]string{"--max-devices", "five"}, "morehd: invalid argument \"five\" for \"--max-devices\" flag: \"five\" is not a number: write plain decimal digits, such as 5\nRun 'morehd --help' for usage.\n"},
		// One spelling of each number, as the tree's files take them.
		{[]string{"--max-devices", "+7"}, "morehd: invalid argument \"+7\" for \"--max-devices\" flag: \"+7\" is not a number: write plain decimal digits, such as 5\nRun 'morehd --help' for usage.\n"},
		{[]string{"--max-devices", "07"}, "morehd: invalid argument \"07\" for \"--max-devices\" flag: \"07\" is not a number: write plain decimal digits, such as 5\nRun 'morehd --help' for usage.\n"},
		{[]string{"--first-id", "0x7ea"}, "morehd: invalid argument \"0x7ea\" for \"--first-id\" flag: \"0x7ea\" is not a number: write plain decimal digits, such as 2026\nRun 'morehd --help' for usage.\n"},
		{[]string{"--unit-mib", "065520"}, "morehd: invalid argument \"065520\" for \"--unit-mib\" flag: \"065520\" is not a number: write plain decimal digits, such as 2026\nRun 'morehd --help' for usage.\n"},
		// Ids cannot wrap: at least 2^47 of them stay above --first-id.
		{[]string{"--first-id", "140737488355329"}, "morehd: --first-id must be from 1 to 140737488355328 (ids never wrap)\nRun 'morehd --help' for usage.\n"},
		{[]string{"--first-id", "18446744073709551615"}, "morehd: --first-id must be from 1 to 140737488355328 (ids never wrap)\nRun 'morehd --help' for usage.\n"},
		{[]string{"extra"}, "morehd: unexpected argument \"extra\": morehd takes only flags, or the subcommand token (morehd token --help)\nRun 'morehd --help' for usage.\n"},
	}
	for _, c := range cases {
		code, stdout, stderr := runMorehd(t, c.args...)
		if code != 2 || stderr != c.want || stdout != "" {
			t.Errorf("morehd %v: exit %d, stderr %q; want exit 2, %q", c.args, code, stderr, c.want)
		}
	}
	dir := t.TempDir()
	code, _, stderr := runMorehd(t, "--gpus", "tpu", "--db", filepath.Join(dir, "db"), "--mount", filepath.Join(dir, "m"))
	if code != 1 || !strings.Contains(stderr, `unknown --gpus "tpu": use auto, nvml, amdgpu, sim[:N[xSIZE]] or none`) {
		t.Errorf("--gpus tpu: exit %d, %q", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	code, stdout, stderr := runMorehd(t, "--help")
	if code != 0 || stderr != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, stderr)
	}
	for _, flag := range []string{"--mount", "--db", "--gpus", "--max-devices", "--first-id", "--allow-other", "--ready-fd", "--help"} {
		if !strings.Contains(stdout, flag) {
			t.Errorf("--help does not mention %s:\n%s", flag, stdout)
		}
	}
	if code, stdout, _ := runMorehd(t, "--version"); code != 0 || !strings.HasPrefix(stdout, "morehd "+Version+"\nrevision ") {
		t.Errorf("--version: %d %q", code, stdout)
	}
}

// TestDBHeldByAnotherDaemon: a second daemon on the same db refuses clearly.
func TestDBHeldByAnotherDaemon(t *testing.T) {
	d := morehdtest.Start(t)
	code, _, stderr := runMorehd(t, "--db", d.DB, "--mount", filepath.Join(t.TempDir(), "m2"), "--gpus", "sim")
	if code != 1 || !strings.Contains(stderr, "is in use by another morehd") {
		t.Errorf("second daemon on one db: exit %d, %q", code, stderr)
	}
}
