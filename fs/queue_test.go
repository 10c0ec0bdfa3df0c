package fs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/store"
)

// TestQueueGoldens renders the queue file, its table (moreh-smi --queue)
// and the waiting messages against goldens: another token's entry keeps
// its place with its token and device masked, a command line with control
// characters is escaped.
func TestQueueGoldens(t *testing.T) {
	since := time.Date(2026, 12, 1, 13, 40, 5, 0, time.UTC)
	rows := []QueueRow{
		{Position: 1, Job: 37054, Token: "alice", Device: 2026, Model: "24xLarge.12288GB", Units: 192, Since: since, Reason: store.WaitPool},
		{Position: 2, Job: 37060, Model: "Small.64GB", Units: 1, Since: since.Add(time.Second), Reason: store.WaitQuota},
		{Position: 3, Job: 37061, Token: "alice", Device: 2027, Model: "Large.256GB", Units: 4, Since: since.Add(time.Minute), Reason: store.WaitDevice},
		{Position: 4, Job: 37062, Token: "alice", Device: 2028, Model: "xLarge.512GB", Units: 8, Since: since.Add(time.Hour), Reason: store.WaitPoolSize},
	}
	checkGolden(t, "queue.golden", string(appendQueue(nil, rows)))
	checkGolden(t, "queue_table.golden", string(appendQueueTable(nil, rows)))
	checkGolden(t, "queue_table_empty.golden", string(appendQueueTable(nil, nil)))
	var msgs strings.Builder
	for _, w := range []node.JobWait{
		{Job: store.Job{ID: 37054, Waiting: true}, Wait: store.Wait{Reason: store.WaitPool, Units: 4}},
		{Job: store.Job{ID: 37054, Waiting: true}, Wait: store.Wait{Reason: store.WaitDevice, Blocker: 37000}, BlockerPID: 26515, BlockerCmd: "python train.py"},
		{Job: store.Job{ID: 37054, Waiting: true}, Wait: store.Wait{Reason: store.WaitDevice, Blocker: 37000}, BlockerPID: 26515, BlockerCmd: store.TermSafe("evil\x1b[2J")},
		{Job: store.Job{ID: 37054, Waiting: true}, Wait: store.Wait{Reason: store.WaitDevice, Blocker: 37000}, BlockerPID: 26515, BlockerNode: "gpu-b"},
		{Job: store.Job{ID: 37054, Waiting: true}, Wait: store.Wait{Reason: store.WaitQuota, Units: 4, Held: 4, MaxUnits: 4}},
		{Job: store.Job{ID: 37054, Waiting: true}, Wait: store.Wait{Reason: store.WaitPoolSize, Units: 4, Pool: 2}},
	} {
		msgs.WriteString(waitMessage(w))
	}
	msgs.WriteString(strings.Replace(startMessage, "%d", "37054", 1))
	checkGolden(t, "wait_messages.golden", msgs.String())
}

// runExample starts scripts/examples/run_job.py on device id of tt with
// command, its stdout and stderr kept.
func runExample(t *testing.T, tt *testTree, id string, command ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	script, err := filepath.Abs("../scripts/examples/run_job.py")
	if err != nil {
		t.Fatal(err)
	}
	// The README shows the example's core: each of its lines is the script's.
	readme, err := os.ReadFile("../README.md")
	src, err2 := os.ReadFile(script)
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	excerpt := regexp.MustCompile("(?s)```py\n(.*?)```").FindSubmatch(readme)
	if excerpt == nil {
		t.Fatal("the README shows no excerpt of the example")
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(excerpt[1]), "\n"), "\n") {
		if !strings.Contains("\n"+string(src), "\n"+line+"\n") {
			t.Errorf("the README's excerpt line %q is not in %s", line, script)
		}
	}
	cmd := exec.Command("python3", append([]string{script, id}, command...)...)
	cmd.Env = append(os.Environ(), "MOREH_ROOT="+tt.dir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &out, &errOut
}

// TestQueueWaitsAndStartsPython: with files only (the README's Python
// example), a job on a full pool is queued, its read of job blocks, the
// queue file lists it; when the running job ends it starts on the freed
// GPUs, and its history says how long it waited.
func TestQueueWaitsAndStartsPython(t *testing.T) {
	tt := mountTree(t, store.Options{}) // 4 simulated GPUs, 4 units
	first := mkdevice(t, tt, "Large.256GB")
	second := mkdevice(t, tt, "Large.256GB")
	pid, stop := startProc(t, 1)
	if err := writeFile(tt.path("devices", first, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	cmd, out, errOut := runExample(t, tt, second, "sh", "-c", `echo "gpus $CUDA_VISIBLE_DEVICES"`)
	morehdtest.Eventually(t, 10*time.Second, "the example's job in the queue", func() bool {
		return strings.Count(readFile(t, tt.path("queue")), "\n") == 1
	})
	f := strings.Fields(readFile(t, tt.path("queue")))
	if len(f) != 7 || f[0] != "1" || f[1] != "2" || f[2] != "default" || f[3] != second || f[4] != "Large.256GB" || f[5] != "4" {
		t.Fatalf("queue = %q, want 1 2 default %s Large.256GB 4 <since>", f, second)
	}
	if _, err := time.Parse(time.RFC3339, f[6]); err != nil {
		t.Errorf("waiting since %q: %v", f[6], err)
	}
	if table := readFile(t, tt.path("queue.table")); !strings.Contains(table, "|  GPUs ") {
		t.Errorf("queue.table does not say the job waits for GPUs:\n%s", table)
	}
	if got := readFile(t, tt.path("devices", second, "gpus")); got != "" {
		t.Errorf("a waiting job's device has GPUs %q", got)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(readFile(t, tt.path("devices", second, "status.json"))), &st); err != nil || len(st.Devices) != 1 || st.Devices[0].State != "waiting" {
		t.Errorf("status.json of the waiting device = %+v, %v; want state waiting", st.Devices, err)
	}
	if table := readFile(t, tt.path("devices", second, "status")); !strings.Contains(table, "|  waiting ") {
		t.Errorf("the device table does not show the wait:\n%s", table)
	}
	metrics := readFile(t, tt.path("metrics"))
	if !strings.Contains(metrics, "\nmoreh_queue_length{node=\"local\"} 1\n") || !strings.Contains(metrics, "\nmoreh_queue_head_wait_seconds{node=\"local\"} ") {
		t.Errorf("metrics lack the queue's length 1 and the head's wait:\n%s", metrics)
	}
	if _, err := os.ReadFile(tt.path("devices", second, "job")); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("job read by a process of no job = %v, want ESRCH", err)
	}
	stop()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("example: %v\n%s", err, errOut)
	}
	if got := out.String(); got != "gpus 0,1,2,3\n" {
		t.Errorf("the started job's command printed %q, want its four GPUs", got)
	}
	if !strings.Contains(errOut.String(), "[info] Moreh Job ID: 2\n") {
		t.Errorf("example's stderr = %q", errOut)
	}
	if got := readFile(t, tt.path("queue")); got != "" {
		t.Errorf("queue after the start = %q", got)
	}
	morehdtest.Eventually(t, 10*time.Second, "the second job's history", func() bool {
		h, _ := tt.reg.History(t.Context(), "default")
		return len(h) == 2
	})
	h, _ := tt.reg.History(t.Context(), "default")
	if h[1].Job != 2 || h[1].WaitedMillis == 0 || h[0].WaitedMillis != 0 {
		t.Errorf("history waits = %d (job %d), %d (job %d); want the second > 0, the first 0", h[1].WaitedMillis, h[1].Job, h[0].WaitedMillis, h[0].Job)
	}
}

// waiterScript attaches itself to $DEV, says whether a non-blocking read
// of job would block, then prints the waiting stream line by line and
// waits for its stdin to close.
const waiterScript = `
import os, sys
dev = sys.argv[1]
with open(os.path.join(dev, "procs"), "w") as f:
    f.write(str(os.getpid()))
fd = os.open(os.path.join(dev, "job"), os.O_RDONLY | os.O_NONBLOCK)
try:
    os.read(fd, 100)
    print("nonblock: running", flush=True)
except BlockingIOError:
    print("nonblock: EAGAIN", flush=True)
with open(os.path.join(dev, "waiting")) as f:
    for line in f:
        print(line, end="", flush=True)
print("eof", flush=True)
sys.stdin.read()
`

// TestExclusiveDevice: a second, unrelated process on a device whose job
// runs waits, with the message naming the first job's pid and command
// line, and starts once that job ends; on a shared token it joins at once.
func TestExclusiveDevice(t *testing.T) {
	tt := mountTree(t, store.Options{})
	id := mkdevice(t, tt, "Small.64GB")
	sleeper := exec.Command("sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	first := sleeper.Process.Pid
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(first)); err != nil {
		t.Fatal(err)
	}
	waiter := exec.Command("python3", "-c", waiterScript, tt.path("devices", id))
	stdin, _ := waiter.StdinPipe()
	stdout, _ := waiter.StdoutPipe()
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); waiter.Process.Kill(); waiter.Wait() })
	lines := bufio.NewReader(stdout)
	next := func() string {
		line, err := lines.ReadString('\n')
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		return line
	}
	want := []string{
		"nonblock: EAGAIN\n",
		"[warning] KT AI Accelerator is already in use by another process:\n",
		"(pid: " + strconv.Itoa(first) + ") sleep 1000\n",
		"Two or more processes cannot use KT AI Accelerator at the same time. The program will resume automatically after the process " + strconv.Itoa(first) + " terminates...\n",
	}
	for _, w := range want {
		if got := next(); got != w {
			t.Fatalf("waiter printed %q, want %q", got, w)
		}
	}
	if got := readFile(t, tt.path("devices", id, "procs")); got != strconv.Itoa(first)+"\n" {
		t.Errorf("procs = %q: the waiting process joined the running job", got)
	}
	if q := readFile(t, tt.path("queue.table")); !strings.Contains(q, "|  device ") {
		t.Errorf("queue.table does not say the job waits for its device:\n%s", q)
	}
	sleeper.Process.Kill()
	if got := next(); got != "[info] Moreh Job ID: 2\n" {
		t.Fatalf("after the first job ended the waiter printed %q", got)
	}
	if got := next(); got != "eof\n" {
		t.Fatalf("the waiting file did not end: %q", got)
	}
	if got := readFile(t, tt.path("devices", id, "procs")); got != strconv.Itoa(waiter.Process.Pid)+"\n" {
		t.Errorf("procs = %q, want the started waiter", got)
	}

	// Shared: another process joins the running job at once.
	if err := writeFile(tt.path("admin", "tokens", "default", "shared"), "1"); err != nil {
		t.Fatal(err)
	}
	joiner, _ := startProc(t, 1)
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(joiner)); err != nil {
		t.Fatal(err)
	}
	if got, wantPids := readFile(t, tt.path("devices", id, "procs")), []int{waiter.Process.Pid, joiner}; !samePids(got, wantPids) {
		t.Errorf("procs = %q on a shared token, want %v", got, wantPids)
	}
	if got := readFile(t, tt.path("queue")); got != "" {
		t.Errorf("queue = %q on a shared token", got)
	}
}

func samePids(got string, want []int) bool {
	var w []string
	for _, p := range want {
		w = append(w, strconv.Itoa(p))
	}
	f := strings.Fields(got)
	slices.Sort(f)
	slices.Sort(w)
	return slices.Equal(f, w)
}

// TestResetOfAWaitingJob: reset on a device whose job waits (none runs)
// stops that job's processes, and it leaves the queue.
func TestResetOfAWaitingJob(t *testing.T) {
	tt := mountTree(t, store.Options{})
	first := mkdevice(t, tt, "Large.256GB")
	second := mkdevice(t, tt, "Large.256GB")
	running, _ := startProc(t, 1)
	if err := writeFile(tt.path("devices", first, "procs"), strconv.Itoa(running)); err != nil {
		t.Fatal(err)
	}
	waiting := exec.Command("sleep", "1000")
	if err := waiting.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waiting.Process.Kill(); waiting.Wait() })
	if err := writeFile(tt.path("devices", second, "procs"), strconv.Itoa(waiting.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, tt.path("queue")); !strings.HasPrefix(got, "1 2 default "+second+" ") {
		t.Fatalf("queue = %q, want the second job", got)
	}
	if err := writeFile(tt.path("devices", second, "reset"), "1"); err != nil {
		t.Fatalf("reset of the waiting job: %v", err)
	}
	if err := waiting.Wait(); err == nil {
		t.Error("the waiting job's process was not stopped")
	}
	if got := readFile(t, tt.path("queue")); got != "" {
		t.Errorf("queue after the reset = %q", got)
	}
	if got := readFile(t, tt.path("devices", first, "procs")); got != strconv.Itoa(running)+"\n" {
		t.Errorf("the running job changed: procs = %q", got)
	}
}
