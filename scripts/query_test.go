package scripts_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// usageOf reads devices/<id>/usage: memory_used_mib, memory_total_mib and
// utilization ("-" while no job runs).
func usageOf(t *testing.T, d *morehdtest.Daemon, id string) map[string]string {
	t.Helper()
	u := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(read(t, d.Path("devices", id, "usage"))), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			u[k] = v
		}
	}
	if len(u) != 3 {
		t.Fatalf("devices/%s/usage = %v", id, u)
	}
	return u
}

// queryLine is the --query-device=id,model,memory.used,memory.total,
// utilization,processes line that nvidia-smi's conventions give the files
// of device id.
func queryLine(t *testing.T, d *morehdtest.Daemon, id string, nounits bool) string {
	t.Helper()
	u := usageOf(t, d, id)
	model := strings.TrimSpace(read(t, d.Path("devices", id, "model")))
	procs := len(strings.Fields(read(t, d.Path("devices", id, "procs"))))
	used, total, util := u["memory_used_mib"]+" MiB", u["memory_total_mib"]+" MiB", u["utilization"]+" %"
	if nounits {
		used, total, util = u["memory_used_mib"], u["memory_total_mib"], u["utilization"]
	}
	if u["utilization"] == "-" {
		util = "[N/A]"
	}
	return fmt.Sprintf("%s, %s, %s, %s, %s, %d", id, model, used, total, util, procs)
}

const allFields = "--query-device=id,model,memory.used,memory.total,utilization,processes"

const allHeader = "id, model, memory.used [MiB], memory.total [MiB], utilization [%], processes\n"

func TestQueryDevice(t *testing.T) {
	d := start(t)
	large := addDevice(t, d, "Large.256GB")
	small := addDevice(t, d, "small")
	wantLarge := large + ", Large.256GB, 0 MiB, 262080 MiB, [N/A], 0"
	wantSmall := small + ", Small.64GB, 0 MiB, 65520 MiB, [N/A], 0"
	// The figures are those of the files.
	if got := queryLine(t, d, large, false); got != wantLarge {
		t.Fatalf("the files of %s give %q, want %q", large, got, wantLarge)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		stdout string
	}{
		{"csv", []string{allFields, "--format=csv"}, allHeader + wantLarge + "\n" + wantSmall + "\n"},
		{"csv by default", []string{allFields}, allHeader + wantLarge + "\n" + wantSmall + "\n"},
		{"noheader", []string{allFields, "--format=csv,noheader"}, wantLarge + "\n" + wantSmall + "\n"},
		{"nounits keeps the header's units", []string{allFields, "--format=csv,nounits"},
			allHeader + large + ", Large.256GB, 0, 262080, [N/A], 0\n" + small + ", Small.64GB, 0, 65520, [N/A], 0\n"},
		{"noheader,nounits", []string{allFields, "--format=csv,noheader,nounits"},
			large + ", Large.256GB, 0, 262080, [N/A], 0\n" + small + ", Small.64GB, 0, 65520, [N/A], 0\n"},
		{"nounits,noheader", []string{"--format", "nounits,noheader,csv", allFields},
			large + ", Large.256GB, 0, 262080, [N/A], 0\n" + small + ", Small.64GB, 0, 65520, [N/A], 0\n"},
		{"the fields in the order asked", []string{"--query-device=processes,memory.total,id", "--format=csv"},
			"processes, memory.total [MiB], id\n0, 262080 MiB, " + large + "\n0, 65520 MiB, " + small + "\n"},
		{"a field twice", []string{"--query-device=id,id"}, "id, id\n" + large + ", " + large + "\n" + small + ", " + small + "\n"},
		{"spaces in the list", []string{"--query-device", "id, model", "--format", "csv"},
			"id, model\n" + large + ", Large.256GB\n" + small + ", Small.64GB\n"},
		{"-i", []string{"-i", small, "--query-device=id,model"}, "id, model\n" + small + ", Small.64GB\n"},
		{"-iID after", []string{"--query-device=model", "-i" + small}, "model\nSmall.64GB\n"},
		{"--idx=ID", []string{"--idx=" + large, "--query-device=model", "--format=csv,noheader"}, "Large.256GB\n"},
		{"-i with a list", []string{"-i", small + "," + large, "--query-device=id", "--format=csv,noheader"},
			small + "\n" + large + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want(t, smi(t, d, tc.args...), 0, tc.stdout, "")
		})
	}
	// Device ids sort as numbers.
	want(t, smi(t, d, "--query-device=id", "--format=csv,noheader"), 0, large+"\n"+small+"\n", "")
}

func TestQueryDeviceWithoutDevices(t *testing.T) {
	d := start(t)
	want(t, smi(t, d, allFields), 0, allHeader, "")
	want(t, smi(t, d, allFields, "--format=csv,noheader"), 0, "", "")
}

// A device with a job shows its utilisation as a number and its process.
func TestQueryDeviceWithJob(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	idle := addDevice(t, d, "Small.64GB")
	busy := addDevice(t, d, "Medium.128GB")
	startHolder(t, d, 10*time.Second, 50, "-i", busy)
	for _, nounits := range []bool{false, true} {
		format := "--format=csv,noheader"
		if nounits {
			format += ",nounits"
		}
		// The sampler refreshes the figures: the files, read before and
		// after, must agree with what moreh-smi printed in between.
		var got, before string
		morehdtest.Eventually(t, 10*time.Second, "moreh-smi --query-device shows the job as the files do", func() bool {
			before = queryLine(t, d, busy, nounits) + "\n" + queryLine(t, d, idle, nounits) + "\n"
			got = smi(t, d, allFields, format, "-i", busy+","+idle).stdout
			after := queryLine(t, d, busy, nounits) + "\n" + queryLine(t, d, idle, nounits) + "\n"
			return got == before && before == after
		})
		busyRow := regexp.MustCompile(`^` + busy + `, Medium\.128GB, \d+ MiB, 131040 MiB, \d+ %, 1\n`)
		if nounits {
			busyRow = regexp.MustCompile(`^` + busy + `, Medium\.128GB, \d+, 131040, \d+, 1\n`)
		}
		if !busyRow.MatchString(got) || !strings.HasSuffix(got, ", [N/A], 0\n") {
			t.Errorf("moreh-smi %s printed\n%s", format, got)
		}
	}
}

func TestQueryDeviceErrors(t *testing.T) {
	d := start(t)
	id := addDevice(t, d, "Small.64GB")
	fields := "id, model, memory.used, memory.total, utilization, processes"
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{[]string{"--query-device=id,foo"}, "moreh-smi: unknown field 'foo' in --query-device: the fields are " + fields + "."},
		{[]string{"--query-device=utilization.gpu"}, "moreh-smi: unknown field 'utilization.gpu' in --query-device: the fields are " + fields + "."},
		{[]string{"--query-device="}, "moreh-smi: --query-device needs fields, e.g. --query-device=id,memory.used."},
		{[]string{"--query-device=,"}, "moreh-smi: --query-device needs fields, e.g. --query-device=id,memory.used."},
		{[]string{"--query-device"}, "moreh-smi: expected a value after --query-device."},
		{[]string{"--query-device=id", "--format=xml"}, "moreh-smi: unknown --format option 'xml': use csv, noheader and nounits, e.g. --format=csv,noheader."},
		{[]string{"--format=csv"}, "moreh-smi: --format goes with --query-device or --query-gpu."},
		{[]string{"--query-device=id", "--json"}, "moreh-smi: --json and --query-device do not go together."},
		{[]string{"--query-device=id", "extra"}, "moreh-smi: unexpected argument 'extra': -l, --json, --query-device and --query-gpu go only with -i ID and --format."},
		{[]string{"--json", "device", "add", "1"}, "moreh-smi: unexpected argument 'device': -l, --json, --query-device and --query-gpu go only with -i ID and --format."},
		{[]string{"--json", "-i", id + "," + id}, "moreh-smi: -i takes one device ID here; a list such as " + id + "," + id + " goes with --query-device."},
		{[]string{"-l", "0"}, "moreh-smi: -l takes a number of seconds above 0, not '0'."},
		{[]string{"--loop=x"}, "moreh-smi: -l takes a number of seconds above 0, not 'x'."},
		{[]string{"-l", "1", "2"}, "moreh-smi: unexpected argument '2': -l, --json, --query-device and --query-gpu go only with -i ID and --format."},
	} {
		want(t, smi(t, d, tc.args...), 2, "", tc.first+"\nRun 'moreh-smi --help' for usage.\n")
	}
	for _, args := range [][]string{
		{"--query-device=id", "-i", "2099"},
		{"--query-device=id", "-i", id + ",2099"},
		{"--json", "-i", "2099"},
		{"--json", "-i", "../" + id},
	} {
		want(t, smi(t, d, args...), 6, "", "Show device failed. (Device "+args[len(args)-1][strings.LastIndex(args[len(args)-1], ",")+1:]+" does not exist.)\n")
	}
}

// dropTime removes the "time" member of a status.json, the one value that
// changes from one read to the next.
func dropTime(s string) string {
	return regexp.MustCompile(`(?m)^  "time": "[^"]*",\n`).ReplaceAllString(s, "")
}

func TestJSON(t *testing.T) {
	d := start(t)
	empty := smi(t, d, "--json")
	want(t, empty, 0, empty.stdout, "")
	if dropTime(empty.stdout) != dropTime(read(t, d.Path("tokens", "default", "status.json"))) {
		t.Errorf("moreh-smi --json without devices printed\n%s", empty.stdout)
	}
	a := addDevice(t, d, "Small.64GB")
	b := addDevice(t, d, "Large.256GB")
	for _, tc := range []struct {
		args []string
		file string
	}{
		{[]string{"--json"}, d.Path("tokens", "default", "status.json")},
		{[]string{"--json", "-i", a}, d.Path("devices", a, "status.json")},
		{[]string{"-i", b, "--json"}, d.Path("devices", b, "status.json")},
		{[]string{"--json", "--idx=" + b}, d.Path("devices", b, "status.json")},
	} {
		r := smi(t, d, tc.args...)
		want(t, r, 0, r.stdout, "")
		file := read(t, tc.file)
		if !strings.Contains(r.stdout, `"time": "`) || dropTime(r.stdout) != dropTime(file) {
			t.Errorf("moreh-smi %q printed\n%s\n%s holds\n%s", tc.args, r.stdout, tc.file, file)
		}
	}
}

// watcher is a moreh-smi -l running in the background.
type watcher struct {
	cmd   *exec.Cmd
	lines chan string   // its stdout, a line at a time; closed at EOF
	done  chan struct{} // closed once it has exited
	err   *syncBuffer
}

// startWatch starts moreh-smi ARGS against d; the process is killed and
// reaped in t.Cleanup.
func startWatch(t *testing.T, d *morehdtest.Daemon, args ...string) *watcher {
	t.Helper()
	script, err := filepath.Abs("moreh-smi")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "MOREH_ROOT=" + d.Mount}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{cmd: cmd, lines: make(chan string, 1000), done: make(chan struct{}), err: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = outW, w.err
	err = cmd.Start()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.lines)
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	go func() { cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-w.done
	})
	return w
}

// collect reads the watcher's lines until n of them satisfy match, failing
// after within; it returns all the lines read.
func (w *watcher) collect(t *testing.T, within time.Duration, n int, match func(string) bool) []string {
	t.Helper()
	var got []string
	deadline := time.After(within)
	for seen := 0; seen < n; {
		select {
		case l, ok := <-w.lines:
			if !ok {
				<-w.done
				t.Fatalf("moreh-smi ended (%v) after printing %q; stderr: %s", w.cmd.ProcessState, got, w.err)
			}
			got = append(got, l)
			if match(l) {
				seen++
			}
		case <-deadline:
			t.Fatalf("moreh-smi printed only %q within %v; stderr: %s", got, within, w.err)
		}
	}
	return got
}

// wait waits at most within for the watcher to exit.
func (w *watcher) wait(t *testing.T, within time.Duration) *os.ProcessState {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(within):
		t.Fatalf("moreh-smi still runs after %v", within)
	}
	return w.cmd.ProcessState
}

// moreh-smi -l SEC prints the table again every SEC seconds until SIGINT
// or SIGTERM, which end it with status 0.
func TestLoop(t *testing.T) {
	d := start(t)
	id := addDevice(t, d, "Small.64GB")
	// The table without its timestamp line, a line an element.
	table := strings.Split(strings.TrimSuffix(dropFirstLine(read(t, d.Path("status"))), "\n"), "\n")
	isHeader := func(l string) bool { return strings.Contains(l, "Moreh-SMI") }
	for _, tc := range []struct {
		name  string
		args  []string
		sig   syscall.Signal
		match func(string) bool
		check func(t *testing.T, lines []string)
	}{
		{"table", []string{"-l", "1"}, syscall.SIGINT, isHeader,
			func(t *testing.T, lines []string) {
				// The first table is the status file's, then a blank line
				// and the next one (timestamp, rule, Moreh-SMI line).
				if len(lines) != 1+len(table)+1+3 {
					t.Fatalf("moreh-smi -l printed %q", lines)
				}
				if got := lines[1 : 1+len(table)]; strings.Join(got, "\n") != strings.Join(table, "\n") {
					t.Errorf("the first table is\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(table, "\n"))
				}
				if lines[1+len(table)] != "" || lines[len(lines)-1] != table[1] {
					t.Errorf("the tables are not apart: %q", lines)
				}
			}},
		{"--loop= with -i", []string{"--loop=1", "-i", id}, syscall.SIGTERM, isHeader, nil},
		{"query", []string{"--query-device=id,model", "-l", "1"}, syscall.SIGINT,
			func(l string) bool { return strings.HasPrefix(l, id+", ") },
			func(t *testing.T, lines []string) {
				// The header comes once, as with nvidia-smi.
				if want := []string{"id, model", id + ", Small.64GB", id + ", Small.64GB"}; strings.Join(lines, "\n") != strings.Join(want, "\n") {
					t.Errorf("moreh-smi --query-device -l printed %q, want %q", lines, want)
				}
			}},
		{"decimal seconds", []string{"-l0.2", "--json"}, syscall.SIGINT,
			func(l string) bool { return l == `  "token": "default",` }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(t, d, tc.args...)
			lines := w.collect(t, 10*time.Second, 2, tc.match)
			if tc.check != nil {
				tc.check(t, lines)
			}
			if err := w.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if ps := w.wait(t, 10*time.Second); !ps.Exited() || ps.ExitCode() != 0 {
				t.Errorf("moreh-smi %q ended with %v after %v, want exit 0", tc.args, ps, tc.sig)
			}
			if s := w.err.String(); s != "" {
				t.Errorf("moreh-smi %q printed to stderr: %q", tc.args, s)
			}
		})
	}
}

// A signal ends the wait between two tables at once, not when it is over.
//
// The signal is sent once moreh-smi is in that wait, blocked in the kernel
// (pselect6 on its never-ready pipe, as /proc/PID/syscall shows), never at
// a moment it may still be on its way there: bash checks its pending traps
// and then blocks, so a signal that lands in between is taken only when the
// wait times out, 600 s later. That window is the shim's (bash's read -t);
// this test shows what it promises, a signal during the wait, without a race.
func TestLoopSignalEndsTheWait(t *testing.T) {
	if _, ok := selectSyscalls[runtime.GOARCH]; !ok {
		t.Skipf("the select syscalls of %s are not listed", runtime.GOARCH)
	}
	d := start(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		w := startWatch(t, d, "-l", "600")
		w.collect(t, time.Minute, 1, func(l string) bool { return strings.Contains(l, "Moreh-SMI") })
		pid := w.cmd.Process.Pid
		morehdtest.Eventually(t, time.Minute, "moreh-smi -l 600 waits in pselect6 on a pipe", func() bool { return inLoopWait(pid) })
		if err := w.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		// At once: the bound only turns a hang into a failure.
		if ps := w.wait(t, time.Minute); !ps.Exited() || ps.ExitCode() != 0 {
			t.Errorf("moreh-smi -l 600 ended with %v after %v, want exit 0", ps, sig)
		}
	}
}

// selectSyscalls are the numbers of select and pselect6, by GOARCH.
var selectSyscalls = map[string][]int{"amd64": {23, 270}, "arm64": {72}, "386": {82, 308}}

// inLoopWait reports whether process pid is blocked in select or pselect6
// on a pipe: bash's read -t on moreh-smi's never-ready pipe. Nothing else
// in moreh-smi selects; its reads of the tree are plain read(2).
func inLoopWait(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	f := strings.Fields(string(b))
	if err != nil || len(f) < 2 {
		return false // "running", or the process is gone
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil || !slices.Contains(selectSyscalls[runtime.GOARCH], nr) {
		return false
	}
	nfds, err := strconv.ParseInt(f[1], 0, 32)
	if err != nil || nfds < 1 {
		return false
	}
	link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, nfds-1))
	return strings.HasPrefix(link, "pipe:")
}

// -l ends with status 9 (nvidia-smi's "driver not loaded") when the tree
// goes away, saying that morehd is not running.
func TestLoopEndsWithTheTree(t *testing.T) {
	d := start(t)
	addDevice(t, d, "Small.64GB")
	lines := len(strings.Split(strings.TrimSuffix(read(t, d.Path("status")), "\n"), "\n"))
	w := startWatch(t, d, "-l", "1")
	// The whole first table: moreh-smi now waits a second.
	n := 0
	w.collect(t, 10*time.Second, 1, func(string) bool { n++; return n == lines })
	d.Stop()
	if ps := w.wait(t, 10*time.Second); ps.ExitCode() != 9 {
		t.Errorf("moreh-smi -l ended with %v, want exit 9", ps)
	}
	if got, want := w.err.String(), notRunning(d.Mount); got != want {
		t.Errorf("moreh-smi -l printed %q, want %q", got, want)
	}
}

// --query-device reads one file, the token's status.json: a tree of plain
// files that has no per-device model, usage or procs gives the same lines.
func TestQueryDeviceReadsStatusJSON(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	status := `{
  "time": "2026-12-01T11:00:00Z",
  "smi_version": "1",
  "client_version": "1",
  "server_version": "1",
  "token": "default",
  "current": 2027,
  "limit": {
    "max": 5,
    "used": 2
  },
  "devices": [
    {
      "id": 2026,
      "current": false,
      "name": "KT AI Accelerator",
      "model": "Large.256GB",
      "units": 4,
      "memory_used_mib": 1234,
      "memory_total_mib": 262080,
      "utilization": 37
    },
    {
      "id": 2027,
      "current": true,
      "name": "KT AI Accelerator",
      "model": "Small.64GB",
      "units": 1,
      "memory_used_mib": 0,
      "memory_total_mib": 65520,
      "utilization": null
    }
  ],
  "processes": [
    {
      "device": 2026,
      "job_id": 1,
      "pid": 100,
      "name": "python3",
      "memory_mib": 1000
    },
    {
      "device": 2026,
      "job_id": 1,
      "pid": 101,
      "name": "python3",
      "memory_mib": 234
    }
  ]
}
`
	for name, content := range map[string]string{"models": "1\tSmall.64GB\t1\t65520\tdefault\n", "status.json": status} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"2026", "2027"} {
		if err := os.MkdirAll(filepath.Join(root, "devices", dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	busy, idle := "2026, Large.256GB, 1234 MiB, 262080 MiB, 37 %, 2", "2027, Small.64GB, 0 MiB, 65520 MiB, [N/A], 0"
	want(t, shim(t, root, "", nil, "moreh-smi", allFields), 0, allHeader+busy+"\n"+idle+"\n", "")
	want(t, shim(t, root, "", nil, "moreh-smi", allFields, "-i", "2027,2026", "--format=csv,noheader,nounits"), 0,
		"2027, Small.64GB, 0, 65520, [N/A], 0\n2026, Large.256GB, 1234, 262080, 37, 2\n", "")
	want(t, shim(t, root, "", nil, "moreh-smi", allFields, "-i", "2028"), 6, "", "Show device failed. (Device 2028 does not exist.)\n")
}
