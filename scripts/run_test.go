package scripts_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// syncBuffer collects a process's stderr while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// job is a moreh-run running in the background.
type job struct {
	cmd    *exec.Cmd
	stdin  *os.File      // closing it ends the helper programs below
	lines  chan string   // its stdout, a line at a time; closed at EOF
	stderr *syncBuffer   // all it printed to stderr
	done   chan struct{} // closed once it has exited
}

// startRun starts moreh-run ARGS against d, with env added to a minimal
// environment; the process is killed and reaped in t.Cleanup.
func startRun(t *testing.T, d *morehdtest.Daemon, env []string, args ...string) *job {
	t.Helper()
	script, err := filepath.Abs("moreh-run")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "MOREH_ROOT=" + d.Mount}, env...)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	j := &job{cmd: cmd, stdin: inW, lines: make(chan string, 100), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, j.stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(j.lines)
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			j.lines <- sc.Text()
		}
	}()
	go func() { cmd.Wait(); close(j.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		inW.Close()
		<-j.done
	})
	return j
}

// line returns the next line the job prints, failing after within.
func (j *job) line(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-j.lines:
		if !ok {
			<-j.done
			t.Fatalf("moreh-run ended (%v) before printing a line; stderr:\n%s", j.cmd.ProcessState, j.stderr)
		}
		return l
	case <-time.After(within):
		t.Fatalf("moreh-run printed no line within %v; stderr:\n%s", within, j.stderr)
	}
	return ""
}

// wait waits for the job to exit, at most within, and returns its status.
func (j *job) wait(t *testing.T, within time.Duration) syscall.WaitStatus {
	t.Helper()
	select {
	case <-j.done:
	case <-time.After(within):
		t.Fatalf("moreh-run still runs after %v; stderr:\n%s", within, j.stderr)
	}
	return j.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// stop closes the job's stdin and waits for it to exit 0.
func (j *job) stop(t *testing.T) {
	t.Helper()
	j.stdin.Close()
	if ws := j.wait(t, 10*time.Second); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("moreh-run ended with %v; stderr:\n%s", j.cmd.ProcessState, j.stderr)
	}
}

// running is true while the job has not exited.
func (j *job) running() bool {
	select {
	case <-j.done:
		return false
	default:
		return true
	}
}

// holder is a Python program that allocates and touches memMiB, prints its
// pid and the device variables it got ("env PID MOREH_DEVICE CUDA HIP"),
// then "ready", and runs until its stdin closes.
func holder(memMiB int) string {
	return `import os, sys
b = bytearray(` + strconv.Itoa(memMiB) + ` << 20)
for i in range(0, len(b), 4096): b[i] = 1
e = os.environ
print("env", os.getpid(), e.get("MOREH_DEVICE"), e.get("CUDA_VISIBLE_DEVICES"), e.get("HIP_VISIBLE_DEVICES"), flush=True)
print("ready", flush=True)
sys.stdin.read()
`
}

// startHolder runs holder(memMiB) with moreh-run ARGS and waits (at most
// within) until it runs; it returns the job and the fields of its env line.
func startHolder(t *testing.T, d *morehdtest.Daemon, within time.Duration, memMiB int, args ...string) (*job, []string) {
	t.Helper()
	j := startRun(t, d, nil, append(args, "--", "python3", "-c", holder(memMiB))...)
	env := strings.Fields(j.line(t, within))
	if len(env) != 5 || env[0] != "env" {
		t.Fatalf("the job's first line is %q, want env PID DEVICE CUDA HIP", env)
	}
	if l := j.line(t, within); l != "ready" {
		t.Fatalf("the job printed %q, want ready", l)
	}
	return j, env
}

// gpuIndices is the bound GPUs of a device as a CUDA_VISIBLE_DEVICES value.
func gpuIndices(t *testing.T, d *morehdtest.Daemon, id string) string {
	t.Helper()
	var idx []string
	for _, line := range strings.Split(strings.TrimSuffix(read(t, d.Path("devices", id, "gpus")), "\n"), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 3 {
			idx = append(idx, f[0])
		}
	}
	return strings.Join(idx, ",")
}

// poolHolds reports whether any GPU of the pool is bound to device id.
func poolHolds(t *testing.T, d *morehdtest.Daemon, id string) bool {
	t.Helper()
	for _, line := range strings.Split(read(t, d.Path("pool")), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == id {
			return true
		}
	}
	return false
}

// procRow is a row of the Processes table.
type procRow struct {
	device, jobID, pid, name string
	memMiB                   int
}

var procRowRE = regexp.MustCompile(`(?m)^\|\s+(\d+)\s+\|\s+(\d+)\s+\|\s+(\d+)\s+\|\s+(\S+)\s+\|\s+(\d+) MiB\s+\|$`)

// processes parses the Processes rows of a moreh-smi table.
func processes(table string) []procRow {
	var rows []procRow
	for _, m := range procRowRE.FindAllStringSubmatch(table, -1) {
		mem, _ := strconv.Atoi(m[5])
		rows = append(rows, procRow{m[1], m[2], m[3], m[4], mem})
	}
	return rows
}

// jobOf is the job id that status.json gives the process pid on device id.
func jobOf(t *testing.T, d *morehdtest.Daemon, id, pid string) string {
	t.Helper()
	var s struct {
		Processes []struct {
			JobID uint64 `json:"job_id"`
			PID   int    `json:"pid"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(read(t, d.Path("devices", id, "status.json"))), &s); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Processes {
		if strconv.Itoa(p.PID) == pid {
			return strconv.FormatUint(p.JobID, 10)
		}
	}
	t.Fatalf("devices/%s/status.json lists no process %s", id, pid)
	return ""
}

// runShim runs moreh-run ARGS to its end, like shim.
func runShim(t *testing.T, d *morehdtest.Daemon, env []string, args ...string) result {
	t.Helper()
	return shim(t, d.Mount, "", env, "moreh-run", args...)
}

const printDevice = `echo "$MOREH_DEVICE $CUDA_VISIBLE_DEVICES $HIP_VISIBLE_DEVICES"`

func TestRunJobShowsAndReleases(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	addDevice(t, d, "Small.64GB")
	id := addDevice(t, d, "Medium.128GB")
	j, env := startHolder(t, d, 10*time.Second, 200, "-i", id)

	// moreh-run execs the command: the program has moreh-run's pid.
	pid := strconv.Itoa(j.cmd.Process.Pid)
	if env[1] != pid {
		t.Errorf("the program's pid is %s, moreh-run's %s", env[1], pid)
	}
	gpus := gpuIndices(t, d, id)
	if strings.Count(gpus, ",") != 1 {
		t.Errorf("devices/%s/gpus binds %q, want the 2 GPUs of Medium.128GB", id, gpus)
	}
	if env[2] != id || env[3] != gpus || env[4] != gpus {
		t.Errorf("the program got MOREH_DEVICE=%s CUDA_VISIBLE_DEVICES=%s HIP_VISIBLE_DEVICES=%s, want %s %s %s",
			env[2], env[3], env[4], id, gpus, gpus)
	}
	if got := read(t, d.Path("devices", id, "procs")); got != pid+"\n" {
		t.Errorf("devices/%s/procs = %q, want %q", id, got, pid+"\n")
	}

	// moreh-smi -i shows the process once the sampler has its memory.
	var row procRow
	morehdtest.Eventually(t, 10*time.Second, "moreh-smi -i shows the job's 200 MiB", func() bool {
		r := smi(t, d, "-i", id)
		rows := processes(r.stdout)
		if r.code != 0 || len(rows) != 1 {
			return false
		}
		row = rows[0]
		return row.memMiB >= 190
	})
	wantRow := procRow{device: id, jobID: jobOf(t, d, id, pid), pid: pid, name: "python3", memMiB: row.memMiB}
	if row != wantRow {
		t.Errorf("moreh-smi -i %s shows %+v, want %+v", id, row, wantRow)
	}

	j.stop(t)
	morehdtest.Eventually(t, time.Second, "the GPUs are back in the pool within a second", func() bool {
		return !poolHolds(t, d, id)
	})
	if got := read(t, d.Path("devices", id, "gpus")); got != "" {
		t.Errorf("devices/%s/gpus after the job = %q", id, got)
	}
	if got := j.stderr.String(); !jobIDLine.MatchString(got) || withoutJobID(got) != "" {
		t.Errorf("moreh-run printed to stderr %q, want only its job id line", got)
	}
}

// Two Medium.128GB devices on a pool of 2 GPUs: the second job waits for the
// first, says so once, and runs when the first has ended.
func TestRunWaitsForTheBusyPool(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:2x64GB")
	first := addDevice(t, d, "Medium.128GB")
	second := addDevice(t, d, "Medium.128GB")
	j1, _ := startHolder(t, d, 10*time.Second, 1, "-i", first)

	j2 := startRun(t, d, []string{"MOREH_VISIBLE_DEVICE=" + second}, "--", "bash", "-c", printDevice)
	warning := "[warning] Not enough resources are currently available for KT AI Accelerator. All resources in the system are being used by other users. The program will resume automatically when resources become available...\n"
	morehdtest.Eventually(t, 10*time.Second, "the second moreh-run warns that it waits", func() bool {
		return j2.stderr.String() != ""
	})
	waiter := strconv.Itoa(j2.cmd.Process.Pid) + "\n"
	morehdtest.Throughout(t, 700*time.Millisecond, "the second job waits, attached but with no GPU, while the first runs", func() bool {
		return j2.running() && len(j2.lines) == 0 && read(t, d.Path("devices", second, "procs")) == waiter &&
			read(t, d.Path("devices", second, "gpus")) == "" && gpuIndices(t, d, first) == "0,1"
	})
	if got := j2.stderr.String(); got != warning {
		t.Fatalf("the waiting moreh-run printed %q, want %q", got, warning)
	}
	// Waiting is a blocked read, not a retried attach: nothing fails.
	if got := read(t, d.Path("tokens", "default", "errors")); got != "" {
		t.Errorf("errors holds %q after a wait", got)
	}

	j1.stop(t)
	if got, want := j2.line(t, 10*time.Second), second+" 0,1 0,1"; got != want {
		t.Errorf("the second job printed %q, want %q", got, want)
	}
	if ws := j2.wait(t, 10*time.Second); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("the second moreh-run ended with %v", j2.cmd.ProcessState)
	}
	if got := j2.stderr.String(); got != warning+"[info] Moreh Job ID: 2\n" {
		t.Errorf("the second moreh-run printed %q, want only %q and its job id", got, warning)
	}
	morehdtest.Eventually(t, time.Second, "the second job's GPUs are back in the pool", func() bool {
		return !poolHolds(t, d, second)
	})
}

// A device whose job waits cannot be removed (EBUSY); Ctrl-C of the
// waiting moreh-run leaves the queue at once, and its command never runs.
func TestRunWaitEndsOnCtrlC(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:2x64GB")
	small := addDevice(t, d, "Small.64GB")
	medium := addDevice(t, d, "Medium.128GB")
	startHolder(t, d, 10*time.Second, 1, "-i", small)
	j := startRun(t, d, nil, "-i", medium, "bash", "-c", "echo ran")
	morehdtest.Eventually(t, 10*time.Second, "moreh-run waits", func() bool { return j.stderr.String() != "" })
	if got := strings.Fields(read(t, d.Path("queue"))); len(got) != 7 || got[3] != medium {
		t.Fatalf("queue = %q, want the waiting job of device %s", got, medium)
	}
	if err := syscall.Rmdir(d.Path("devices", medium)); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("rmdir of a device whose job waits = %v, want EBUSY", err)
	}
	if err := j.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if ws := j.wait(t, 10*time.Second); ws.Exited() && ws.ExitStatus() == 0 {
		t.Errorf("moreh-run ended with %v after SIGINT", j.cmd.ProcessState)
	}
	morehdtest.Eventually(t, 5*time.Second, "the queue is empty", func() bool { return read(t, d.Path("queue")) == "" })
	if l, ok := <-j.lines; ok {
		t.Errorf("the command ran: %q", l)
	}
	wantErr := "[warning] Not enough resources are currently available for KT AI Accelerator. All resources in the system are being used by other users. The program will resume automatically when resources become available...\n"
	if got := j.stderr.String(); got != wantErr {
		t.Errorf("moreh-run printed %q, want %q", got, wantErr)
	}
}

func TestRunPicksTheDevice(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	a := addDevice(t, d, "Small.64GB")
	b := addDevice(t, d, "Medium.128GB") // current
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		id   string
	}{
		{"current", nil, nil, b},
		{"MOREH_VISIBLE_DEVICE", []string{"MOREH_VISIBLE_DEVICE=" + a}, nil, a},
		{"empty MOREH_VISIBLE_DEVICE", []string{"MOREH_VISIBLE_DEVICE="}, nil, b},
		{"-i", nil, []string{"-i", a}, a},
		{"-i before MOREH_VISIBLE_DEVICE", []string{"MOREH_VISIBLE_DEVICE=" + a}, []string{"-i", b}, b},
		{"-iID", nil, []string{"-i" + a}, a},
		{"--idx ID", nil, []string{"--idx", a}, a},
		{"--idx=ID", nil, []string{"--idx=" + a}, a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, sep := range [][]string{{"--"}, nil} {
				args := append(append(append([]string{}, tc.args...), sep...), "bash", "-c", printDevice)
				gpus := map[string]string{a: "0", b: "0,1"}[tc.id]
				want(t, runShim(t, d, tc.env, args...), 0, tc.id+" "+gpus+" "+gpus+"\n", "")
				// Each run ends with its process; the next may bind the same GPUs.
				morehdtest.Eventually(t, 5*time.Second, "the GPUs are back in the pool", func() bool {
					return !poolHolds(t, d, tc.id)
				})
			}
		})
	}
	// Arguments after the command are the command's, options included.
	want(t, runShim(t, d, nil, "-i", a, "echo", "-i", b, "--", "x"), 0, "-i "+b+" -- x\n", "")
}

func TestRunFailures(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:2x64GB")
	echo := []string{"bash", "-c", "echo ran"}
	none := "Run failed. (There is no current device: create one with moreh-smi device --add.)\n"
	want(t, runShim(t, d, nil, echo...), 1, "", none)
	want(t, runShim(t, d, []string{"MOREH_VISIBLE_DEVICE=2099"}, echo...), 1, "", "Run failed. (Device 2099 does not exist.)\n")

	large := addDevice(t, d, "Large.256GB")
	small := addDevice(t, d, "Small.64GB")
	for _, args := range [][]string{{"-i", "2099"}, {"-i", "abc"}, {"-i", "../" + large}} {
		want(t, runShim(t, d, nil, append(args, echo...)...), 1, "", "Run failed. (Device "+args[1]+" does not exist.)\n")
	}
	// A model larger than the whole pool can never run: no wait, no command.
	nospace := "Run failed. (Device " + large + " (Large.256GB) needs 4 GPU units; the whole pool has 2.)\n"
	want(t, runShim(t, d, nil, append([]string{"-i", large}, echo...)...), 1, "", nospace)
	if got := read(t, d.Path("devices", large, "procs")); got != "" {
		t.Errorf("devices/%s/procs = %q after ENOSPC", large, got)
	}
	// A command that is not there binds nothing.
	want(t, runShim(t, d, nil, "-i", small, "no-such-command-42"), 127, "", "Run failed. (no-such-command-42: command not found.)\n")
	if got := read(t, d.Path("pool")); strings.Contains(got, " "+small+" ") {
		t.Errorf("the pool binds device %s for a missing command:\n%s", small, got)
	}
	// The command's own exit status is moreh-run's.
	want(t, runShim(t, d, nil, "-i", small, "bash", "-c", "exit 7"), 7, "", "")
}

func TestRunWithoutTree(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "nowhere")
	want(t, shim(t, root, "", nil, "moreh-run", "true"), 1, "", notRunning(root))
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	nowhere := filepath.Join(t.TempDir(), "nowhere") // help and usage errors need no tree
	for _, args := range [][]string{{"--help"}, {"-h"}} {
		r := shim(t, nowhere, "", nil, "moreh-run", args...)
		want(t, r, 0, r.stdout, "")
		for _, form := range []string{"Usage: moreh-run [-i ID] [--] COMMAND [ARGS...]\n", "MOREH_VISIBLE_DEVICE", "moreh-smi -r"} {
			if !strings.Contains(r.stdout, form) {
				t.Errorf("moreh-run %s lacks %q:\n%s", args[0], form, r.stdout)
			}
		}
	}
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{nil, "moreh-run: expected a command to run."},
		{[]string{"--"}, "moreh-run: expected a command to run."},
		{[]string{"-i", "2026"}, "moreh-run: expected a command to run."},
		{[]string{"-i"}, "moreh-run: expected a device ID after -i."},
		{[]string{"--idx", ""}, "moreh-run: expected a device ID after --idx."},
		{[]string{"-i="}, "moreh-run: expected a device ID after -i."},
		{[]string{"--bogus", "true"}, "moreh-run: unknown option '--bogus'."},
	} {
		want(t, shim(t, nowhere, "", nil, "moreh-run", tc.args...), 2, "", tc.first+"\nRun 'moreh-run --help' for usage.\n")
	}
	if fi, err := os.Stat("moreh-run"); err != nil || fi.Mode()&0o111 != 0o111 {
		t.Errorf("moreh-run is not executable by all: %v %v", fi.Mode(), err)
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB", "--reset-grace", "300ms")
	want(t, smi(t, d, "-r"), 1, "", "Device release failed. (There is no current device: create one with moreh-smi device --add.)\n")
	other := addDevice(t, d, "Small.64GB")
	id := addDevice(t, d, "Medium.128GB") // current

	// A job that ignores SIGTERM is killed after the grace.
	j := startRun(t, d, nil, "--", "bash", "-c", `trap '' TERM; echo ready; while :; do sleep 0.05; done`)
	if l := j.line(t, 10*time.Second); l != "ready" {
		t.Fatalf("the job printed %q", l)
	}
	if !poolHolds(t, d, id) {
		t.Fatal("the job holds no GPU")
	}
	want(t, smi(t, d, "-r"), 0, "Device release success.\n", "")
	// The reset returns once the job is gone and its GPUs are free.
	if poolHolds(t, d, id) || read(t, d.Path("devices", id, "gpus")) != "" {
		t.Errorf("GPUs still bound after the reset:\n%s", read(t, d.Path("pool")))
	}
	if ws := j.wait(t, 5*time.Second); ws.Signal() != syscall.SIGKILL {
		t.Errorf("the job ended with %v, want SIGKILL after ignoring SIGTERM", j.cmd.ProcessState)
	}

	// --reset ID stops the job of a device that is not current.
	j, _ = startHolder(t, d, 10*time.Second, 1, "-i", other)
	want(t, smi(t, d, "--reset", other), 0, "Device release success.\n", "")
	if poolHolds(t, d, other) {
		t.Errorf("device %s still holds GPUs after the reset:\n%s", other, read(t, d.Path("pool")))
	}
	if ws := j.wait(t, 5*time.Second); ws.Signal() != syscall.SIGTERM {
		t.Errorf("the job ended with %v, want SIGTERM", j.cmd.ProcessState)
	}

	for _, args := range [][]string{{"-r"}, {"--reset"}, {"-r", other}} {
		want(t, smi(t, d, args...), 1, "", "Device release failed. (Not running job.)\n")
	}
	want(t, smi(t, d, "-r", "2099"), 1, "", "Device release failed. (Device 2099 does not exist.)\n")
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{[]string{"-r", id, other}, "moreh-smi: -r takes one device ID at most."},
		{[]string{"--reset", "--all"}, "moreh-smi: --reset: unknown option '--all'."},
		{[]string{"-p", "x"}, "moreh-smi: -p takes no argument."},
		{[]string{"--pool", "x"}, "moreh-smi: --pool takes no argument."},
	} {
		want(t, smi(t, d, tc.args...), 2, "", tc.first+"\nRun 'moreh-smi --help' for usage.\n")
	}
}

// normalisePool replaces, in the rows of GPUs bound to a device, the memory
// and utilisation cells (which follow the process) by N, keeping the widths.
func normalisePool(t *testing.T, table string) string {
	t.Helper()
	mem := regexp.MustCompile(`^ +\d+ MiB  $`)
	util := regexp.MustCompile(`^  \d+% +  $`)
	lines := strings.Split(table, "\n")
	for i, line := range lines {
		cells := strings.Split(line, "|")
		if len(cells) != 10 || strings.TrimSpace(cells[5]) == "-" || strings.TrimSpace(cells[5]) == "Device" {
			continue
		}
		if !mem.MatchString(cells[6]) || !util.MatchString(cells[8]) {
			t.Errorf("malformed pool row %q", line)
			continue
		}
		cells[6] = strings.Repeat(" ", len(cells[6])-7) + "N MiB  "
		cells[8] = "  N%" + strings.Repeat(" ", len(cells[8])-4)
		lines[i] = strings.Join(cells, "|")
	}
	return strings.Join(lines, "\n")
}

func TestPoolTable(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:2x64GB", "--node", "node-a")
	id := addDevice(t, d, "Small.64GB")
	if id != "2026" {
		t.Fatalf("the first device is %s, testdata/pool.golden shows 2026", id)
	}
	golden := read(t, filepath.Join("testdata", "pool.golden"))
	free := strings.Replace(golden, "|    2026  |         N MiB  |     65536 MiB  |  N%           |",
		"|       -  |         0 MiB  |     65536 MiB  |  0%           |", 1)

	want(t, smi(t, d, "-p"), 0, free, "")
	j, _ := startHolder(t, d, 10*time.Second, 1, "-i", id)
	for _, opt := range []string{"-p", "--pool"} {
		r := smi(t, d, opt)
		want(t, r, 0, r.stdout, "")
		if got := normalisePool(t, r.stdout); got != golden {
			t.Errorf("moreh-smi %s printed\n%s\nwant (memory and utilisation of bound GPUs as N)\n%s", opt, r.stdout, golden)
		}
	}
	j.stop(t)
	morehdtest.Eventually(t, 5*time.Second, "moreh-smi -p shows the GPU free again", func() bool {
		return smi(t, d, "-p").stdout == free
	})
}

// moreh-smi -p prints the table that morehd renders (pool.table: its
// widening and empty cases are fs's goldens) byte for byte; a tree of plain
// files stands in for morehd.
func TestPoolTableWidens(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "models"), []byte("1\tSmall.64GB\t1\t65520\tdefault\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table := filepath.Join(root, "pool.table")
	for _, golden := range []string{"pool_wide.golden", "pool_empty.golden"} {
		content := read(t, filepath.Join("..", "fs", "testdata", golden))
		if err := os.WriteFile(table, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		want(t, shim(t, root, "", nil, "moreh-smi", "-p"), 0, content, "")
	}
	if err := os.Remove(table); err != nil {
		t.Fatal(err)
	}
	want(t, shim(t, root, "", nil, "moreh-smi", "-p"), 1, "", "Show pool failed. (The pool file could not be read.)\n")
}

// moreh-smi --queue prints the table that morehd renders (queue.table, whose
// cases are fs's goldens) byte for byte; a tree of plain files stands in.
func TestQueueTable(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "models"), []byte("1\tSmall.64GB\t1\t65520\tdefault\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table := filepath.Join(root, "queue.table")
	for _, golden := range []string{"queue_table.golden", "queue_table_empty.golden"} {
		content := read(t, filepath.Join("..", "fs", "testdata", golden))
		if err := os.WriteFile(table, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		want(t, shim(t, root, "", nil, "moreh-smi", "--queue"), 0, content, "")
	}
	want(t, shim(t, root, "", nil, "moreh-smi", "--queue", "x"), 2, "", "moreh-smi: --queue takes no argument.\nRun 'moreh-smi --help' for usage.\n")
	if err := os.Remove(table); err != nil {
		t.Fatal(err)
	}
	want(t, shim(t, root, "", nil, "moreh-smi", "--queue"), 1, "", "Show queue failed. (The queue file could not be read.)\n")
}

func TestSmiHelpNamesResetAndPool(t *testing.T) {
	t.Parallel()
	r := shim(t, filepath.Join(t.TempDir(), "nowhere"), "", nil, "moreh-smi", "--help")
	for _, form := range []string{"moreh-smi -r, --reset [ID]", "moreh-smi -p, --pool"} {
		if !strings.Contains(r.stdout, form) {
			t.Errorf("moreh-smi --help lacks %q:\n%s", form, r.stdout)
		}
	}
}

// A second moreh-run on a device whose job runs waits with the real
// product's message, naming the first job's pid and command line, and
// starts when that job ends; on a shared token it joins the job at once.
func TestRunWaitsForTheDevice(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	id := addDevice(t, d, "Small.64GB")
	first, env := startHolder(t, d, 10*time.Second, 1, "-i", id)
	pid := env[1]
	second := startRun(t, d, nil, "-i", id, "--", "bash", "-c", printDevice)
	warning := "[warning] KT AI Accelerator is already in use by another process:\n" +
		"(pid: " + pid + ") " + cmdlineOf(t, pid) + "\n" +
		"Two or more processes cannot use KT AI Accelerator at the same time. The program will resume automatically after the process " + pid + " terminates...\n"
	morehdtest.Eventually(t, 10*time.Second, "the second moreh-run says why it waits", func() bool {
		return strings.Count(second.stderr.String(), "\n") >= 3
	})
	if got := second.stderr.String(); got != warning {
		t.Fatalf("the waiting moreh-run printed %q, want %q", got, warning)
	}
	if !second.running() {
		t.Fatal("the second moreh-run did not wait")
	}
	first.stop(t)
	if got, want := second.line(t, 10*time.Second), id+" 0 0"; got != want {
		t.Errorf("the second job printed %q, want %q", got, want)
	}
	if ws := second.wait(t, 10*time.Second); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("the second moreh-run ended with %v", second.cmd.ProcessState)
	}
	if got := second.stderr.String(); !strings.HasPrefix(got, warning) || !jobIDLine.MatchString(got[len(warning):]) {
		t.Errorf("the second moreh-run printed %q, want the warning once, then its job id", got)
	}

	// Shared: a second moreh-run joins the running job at once.
	if err := os.WriteFile(d.Path("admin", "tokens", "default", "shared"), []byte("1\n"), 0); err != nil {
		t.Fatal(err)
	}
	holder, env := startHolder(t, d, 10*time.Second, 1, "-i", id)
	joined := runShim(t, d, nil, "-i", id, "--", "bash", "-c", printDevice)
	want(t, joined, 0, id+" 0 0\n", "")
	if got := strings.Fields(read(t, d.Path("devices", id, "procs"))); len(got) == 0 || got[0] != env[1] {
		t.Errorf("procs = %v, want the holder %s still in the job", got, env[1])
	}
	holder.stop(t)
}

// With max_units 4, a second Large job waits with the quota's message,
// not the pool's, and starts when the first ends.
func TestRunWaitsForTheQuota(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:8x64GB")
	if err := os.WriteFile(d.Path("admin", "tokens", "default", "max_units"), []byte("4\n"), 0); err != nil {
		t.Fatal(err)
	}
	a := addDevice(t, d, "Large.256GB")
	b := addDevice(t, d, "Large.256GB")
	first, _ := startHolder(t, d, 10*time.Second, 1, "-i", a)
	second := startRun(t, d, nil, "-i", b, "--", "bash", "-c", printDevice)
	warning := "[warning] The GPU unit quota of this token (max_units 4) is in use: its running jobs hold 4 units and this job needs 4. The program will resume automatically when they release enough...\n"
	morehdtest.Eventually(t, 10*time.Second, "the second moreh-run says why it waits", func() bool {
		return second.stderr.String() != ""
	})
	if got := second.stderr.String(); got != warning {
		t.Fatalf("the waiting moreh-run printed %q, want %q", got, warning)
	}
	if q := strings.Fields(read(t, d.Path("queue"))); len(q) != 7 || q[3] != b {
		t.Errorf("queue = %q, want device %s's job", q, b)
	}
	first.stop(t)
	if got := second.line(t, 10*time.Second); !strings.HasPrefix(got, b+" ") || strings.Count(got, ",") != 6 {
		t.Errorf("the second job printed %q, want device %s with 4 GPUs", got, b)
	}
	second.wait(t, 10*time.Second)
}

// cmdlineOf is pid's command line as the waiting message shows it: its
// arguments joined by spaces, control characters (holder's newlines) escaped.
func cmdlineOf(t *testing.T, pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return store.TermSafe(strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
}
