package scripts_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/fs"
)

const allGPUFields = "--query-gpu=index,name,uuid,memory.total,memory.used,memory.free,utilization.gpu,device,node"

const allGPUHeader = "index, name, uuid, memory.total [MiB], memory.used [MiB], memory.free [MiB], utilization.gpu [%], device, node\n"

// gpuLines are the --query-gpu lines of allGPUFields that the pool file
// ("<index> <units> <device|-> <used|-> <total> <util|-> <node> <name>")
// gives, with the uuid that the sim backend gives GPU i of node.
func gpuLines(t *testing.T, d *morehdtest.Daemon, nounits bool) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(read(t, d.Path("pool")), "\n"), "\n") {
		f := strings.SplitN(line, " ", 8)
		if len(f) != 8 {
			t.Fatalf("pool line %q", line)
		}
		unit := func(v, u string) string {
			switch {
			case v == "-":
				return "[N/A]"
			case nounits:
				return v
			}
			return v + " " + u
		}
		device := f[2]
		if device == "-" {
			device = "[N/A]"
		}
		used, total := f[3], f[4]
		free := "-"
		if used != "-" {
			free = itoa(atoi(t, total) - atoi(t, used))
		}
		idx := atoi(t, f[0])
		uuid := "SIM-" + f[6] + "-0000000" + f[0]
		if idx > 9 {
			t.Fatalf("the test knows sim uuids of one digit only")
		}
		b.WriteString(strings.Join([]string{f[0], f[7], uuid, unit(total, "MiB"), unit(used, "MiB"), unit(free, "MiB"),
			unit(f[5], "%"), device, f[6]}, ", ") + "\n")
	}
	return b.String()
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("%q is no number", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// moreh-smi --query-gpu prints the pool's GPUs as nvidia-smi --query-gpu
// does, byte for byte, from morehd's query-gpu file.
func TestQueryGPU(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	free := gpuLines(t, d, false)
	if !strings.HasPrefix(free, "0, Simulated GPU, SIM-") || !strings.Contains(free, ", 65536 MiB, 0 MiB, 65536 MiB, 0 %, [N/A], ") {
		t.Fatalf("the pool file gives\n%s", free)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		stdout string
	}{
		{"csv", []string{allGPUFields, "--format=csv"}, allGPUHeader + free},
		{"csv by default", []string{allGPUFields}, allGPUHeader + free},
		{"noheader", []string{allGPUFields, "--format=csv,noheader"}, free},
		{"nounits keeps the header's units", []string{allGPUFields, "--format", "nounits,csv"}, allGPUHeader + gpuLines(t, d, true)},
		{"as asked, spaces dropped", []string{"--query-gpu", "memory.total, index,gpu_name", "--format=csv,noheader,nounits"},
			"65536, 0, Simulated GPU\n65536, 1, Simulated GPU\n65536, 2, Simulated GPU\n65536, 3, Simulated GPU\n"},
		{"the file's", []string{"--query-gpu=index,utilization.gpu"}, read(t, d.Path("query-gpu", "index,utilization.gpu"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want(t, smi(t, d, tc.args...), 0, tc.stdout, "")
		})
	}

	// A job's GPUs show its device.
	id := addDevice(t, d, "Medium.128GB")
	startHolder(t, d, 10*time.Second, 1, "-i", id)
	r := smi(t, d, "--query-gpu=device", "--format=csv,noheader")
	if want := id + "\n" + id + "\n[N/A]\n[N/A]\n"; r.code != 0 || r.stdout != want {
		t.Errorf("moreh-smi --query-gpu=device printed %q (exit %d), want %q", r.stdout, r.code, want)
	}

	// Usage errors exit 2, as nvidia-smi's invalid arguments do.
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{[]string{"--query-gpu=index,foo"}, `moreh-smi: Field "foo" is not a valid field to query: see moreh-smi --help-query-gpu.`},
		{[]string{"--query-gpu=memory"}, `moreh-smi: Field "memory" is not a valid field to query: see moreh-smi --help-query-gpu.`},
		{[]string{"--query-gpu=id"}, `moreh-smi: Field "id" is not a valid field to query: see moreh-smi --help-query-gpu.`},
		{[]string{"--query-gpu=../models"}, `moreh-smi: Field "../models" is not a valid field to query: see moreh-smi --help-query-gpu.`},
		{[]string{"--query-gpu="}, "moreh-smi: --query-gpu needs fields, e.g. --query-gpu=index,name,memory.used; see moreh-smi --help-query-gpu."},
		{[]string{"--query-gpu=,"}, "moreh-smi: --query-gpu needs fields, e.g. --query-gpu=index,name,memory.used; see moreh-smi --help-query-gpu."},
		{[]string{"--query-gpu"}, "moreh-smi: expected a value after --query-gpu."},
		{[]string{"--query-gpu=index", "--format=xml"}, "moreh-smi: unknown --format option 'xml': use csv, noheader and nounits, e.g. --format=csv,noheader."},
		{[]string{"--query-gpu=index", "-i", id}, "moreh-smi: --query-gpu lists every GPU of the pool: -i goes with --query-device."},
		{[]string{"--query-gpu=index", "--query-device=id"}, "moreh-smi: --query-gpu goes with neither --query-device nor --json."},
		{[]string{"--query-gpu=index", "-lms", "0"}, "moreh-smi: -lms takes a number of milliseconds above 0, not '0'."},
		{[]string{"--query-gpu=index", "--loop-ms=1.5"}, "moreh-smi: -lms takes a number of milliseconds above 0, not '1.5'."},
		{[]string{"--query-gpu=index", "-lms", "100", "-l", "1"}, "moreh-smi: -l and -lms do not go together."},
	} {
		want(t, smi(t, d, tc.args...), 2, "", tc.first+"\nRun 'moreh-smi --help' for usage.\n")
	}
}

// A tree without query-gpu (an older morehd) is named as the cause, not a field.
func TestQueryGPUOlderDaemon(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "models"), []byte("1\tSmall.64GB\t1\t65520\tdefault\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	want(t, shim(t, root, "", nil, "moreh-smi", "--query-gpu=index"), 1, "",
		"Query GPUs failed. (The morehd at "+root+" has no query-gpu directory: it is older than this moreh-smi; update morehd.)\n")
}

// A pool without GPUs: nvidia-smi's "No devices were found", exit 6.
func TestQueryGPUEmptyPool(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "none")
	want(t, smi(t, d, "--query-gpu=index,name"), 6, "", "No devices were found\n")
}

// -lms loops in milliseconds, the header once, as with nvidia-smi; a
// signal ends it with 0.
func TestQueryGPULoop(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:2x64GB")
	for _, args := range [][]string{{"--query-gpu=index,memory.total", "-lms", "50"}, {"--loop-ms=50", "--query-gpu=index,memory.total"}, {"-lms50", "--query-gpu=index,memory.total"}} {
		w := startWatch(t, d, args...)
		lines := w.collect(t, 10*time.Second, 3, func(l string) bool { return l == "1, 65536 MiB" })
		if lines[0] != "index, memory.total [MiB]" || strings.Count(strings.Join(lines, "\n"), "index") != 1 {
			t.Errorf("moreh-smi %q printed %q", args, lines)
		}
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if ps := w.wait(t, 10*time.Second); ps.ExitCode() != 0 {
			t.Errorf("moreh-smi %q ended with %v", args, ps)
		}
	}
}

// --help-query-gpu names every field morehd takes, and --help-query-device
// every field of --query-device, one a line; no tree is needed.
func TestHelpQuery(t *testing.T) {
	t.Parallel()
	nowhere := filepath.Join(t.TempDir(), "nowhere")
	for _, tc := range []struct {
		opt    string
		fields []string
	}{
		{"--help-query-gpu", fs.GPUFieldNames()},
		{"--help-query-device", []string{"id", "model", "memory.used", "memory.total", "utilization", "processes"}},
	} {
		r := shim(t, nowhere, "", nil, "moreh-smi", tc.opt)
		want(t, r, 0, r.stdout, "")
		var listed []string // one line a field, and none that morehd does not take
		for _, line := range strings.Split(r.stdout, "\n") {
			if name, ok := strings.CutPrefix(line, `"`); ok {
				listed = append(listed, name[:strings.Index(name, `"`)])
			}
		}
		if strings.Join(listed, ",") != strings.Join(tc.fields, ",") {
			t.Errorf("moreh-smi %s lists %q, want %q:\n%s", tc.opt, listed, tc.fields, r.stdout)
		}
	}
}

// --help after any command or subcommand prints help and does nothing.
func TestHelpNeverActs(t *testing.T) {
	d := start(t)
	id := addDevice(t, d, "Small.64GB")
	other := addDevice(t, d, "Medium.128GB")
	for _, tc := range []struct {
		name string
		args []string
		head string
	}{
		{"moreh-smi", []string{"device", "--help"}, "Usage: moreh-smi device COMMAND\n"},
		{"moreh-smi", []string{"device", "add", "--help"}, "Usage: moreh-smi device COMMAND\n"},
		{"moreh-smi", []string{"device", "--add", "3", "-h"}, "Usage: moreh-smi device COMMAND\n"},
		{"moreh-smi", []string{"device", "--rm", "--help"}, "Usage: moreh-smi device COMMAND\n"},
		{"moreh-smi", []string{"rm", "--all", "--help"}, "Usage: moreh-smi device COMMAND\n"},
		{"moreh-smi", []string{"device", "--switch", id, "--help"}, "Usage: moreh-smi device COMMAND\n"},
		{"moreh-smi", []string{"--switch", "--help"}, "Usage: moreh-smi device COMMAND\n"},
		{"moreh-smi", []string{"-r", "--help"}, "Usage: moreh-smi [OPTION | device COMMAND]\n"},
		{"moreh-smi", []string{"--query-gpu=index", "--help"}, "Usage: moreh-smi [OPTION | device COMMAND]\n"},
		{"moreh-switch-model", []string{"-M", "3", "--help"}, "Usage: moreh-switch-model [-M N|MODEL]\n"},
		{"moreh-switch-model", []string{"--model=large", "-h"}, "Usage: moreh-switch-model [-M N|MODEL]\n"},
		{"moreh-run", []string{"-i", "--help"}, "Usage: moreh-run [-i ID] [--] COMMAND [ARGS...]\n"},
		{"moreh-run", []string{"-i", id, "--help", "true"}, "Usage: moreh-run [-i ID] [--] COMMAND [ARGS...]\n"},
	} {
		r := shim(t, d.Mount, "", nil, tc.name, tc.args...)
		want(t, r, 0, r.stdout, "")
		if !strings.HasPrefix(r.stdout, tc.head) {
			t.Errorf("%s %q printed\n%s", tc.name, tc.args, r.stdout)
		}
	}
	wantDevices(t, d, id, other)
	wantCurrent(t, d, other)
	wantModel(t, d, other, "Medium.128GB")
	// A --help after the command is the command's.
	want(t, shim(t, d.Mount, "", nil, "moreh-run", "-i", id, "printf", "%s\\n", "--help"), 0, "--help\n", "")
}

// device --switch without an id asks, with a menu of the token's devices,
// as the real moreh-smi does; then the short table and the success line.
func TestSwitchMenu(t *testing.T) {
	d := start(t)
	if r := shim(t, d.Mount, "1\n", nil, "moreh-smi", "device", "--switch"); r.code != 1 ||
		r.stderr != "Switch current device failed. (You have no device to switch to: create one with moreh-smi device --add.)\n" {
		t.Errorf("device --switch without devices: %+v", r)
	}
	small := addDevice(t, d, "Small.64GB")
	large := addDevice(t, d, "Large.256GB")
	medium := addDevice(t, d, "Medium.128GB")
	menu := "Current KT AI Accelerator: " + medium + " Medium.128GB\n\n" +
		"1. " + small + " Small.64GB\n2. " + large + " Large.256GB\n3. " + medium + " Medium.128GB*\n\n"
	const ask = "Selection (1-3, q, Q): "
	r := shim(t, d.Mount, "x\n4\n0\n2\n", nil, "moreh-smi", "device", "--switch")
	table := read(t, d.Path("tokens", "default", "devices.table"))
	want(t, r, 0, menu+ask+ask+ask+ask+table+"Switch current device success.\n", "")
	wantCurrent(t, d, large)
	if !strings.Contains(table, "|  * "+large+"  |  KT AI Accelerator  |  Large.256GB   |\n") {
		t.Errorf("devices.table does not mark %s current:\n%s", large, table)
	}
	menu = strings.Replace(strings.Replace(menu, "Medium.128GB*", "Medium.128GB", 1), "Large.256GB\n3", "Large.256GB*\n3", 1)
	menu = strings.Replace(menu, medium+" Medium.128GB\n\n1", large+" Large.256GB\n\n1", 1)
	for _, quit := range []string{"q\n", "Q\n"} {
		want(t, shim(t, d.Mount, quit, nil, "moreh-smi", "switch"), 0, menu+ask, "")
	}
	want(t, shim(t, d.Mount, "", nil, "moreh-smi", "--switch"), 1, menu+ask+"\n", "Switch current device failed. (No selection was made.)\n")
	wantCurrent(t, d, large)
}

// The short table comes before the exact success lines of --add, --rm and
// --switch (so that grepping scripts still find them), and is the file's.
func TestDevicesTableAfterCommands(t *testing.T) {
	d := start(t)
	r := smi(t, d, "device", "add", "3")
	golden := "+-------------------------------------------------+\n" +
		"|  Device  |        Name         |      Model     |\n" +
		"+=================================================+\n" +
		"|  * 2026  |  KT AI Accelerator  |  Large.256GB   |\n" +
		"+-------------------------------------------------+\n"
	want(t, r, 0, golden+"Create device success.\n", "")
	addDevice(t, d, "Small.64GB")
	r = smi(t, d, "device", "--switch", "2026")
	want(t, r, 0, read(t, d.Path("tokens", "default", "devices.table"))+"Switch current device success.\n", "")
	r = smi(t, d, "rm", "2027")
	want(t, r, 0, golden+"Remove device success.\n", "")
	r = smi(t, d, "device", "rm", "--all")
	want(t, r, 0, read(t, d.Path("tokens", "default", "devices.table"))+"Remove device success.\n", "")
	if !strings.Contains(r.stdout, "No devices. Create one with: moreh-smi device --add") {
		t.Errorf("the table after rm --all:\n%s", r.stdout)
	}
	// Failures print no table.
	want(t, smi(t, d, "device", "--switch", "2099"), 1, "", "Switch current device failed. (Device 2099 does not exist.)\n")
}

func TestServerVersion(t *testing.T) {
	d := start(t)
	r := smi(t, d, "-s")
	want(t, r, 0, r.stdout, "")
	want(t, smi(t, d, "--server-version"), 0, r.stdout, "")
	if !strings.HasPrefix(r.stdout, "Server Version: ") {
		t.Errorf("-s printed %q", r.stdout)
	}
}

// moreh-run of a file that is not executable: 126 and a sentence naming the
// cause and the fix, no GPU bound.
func TestRunNotExecutable(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t, "--gpus", "sim:2x64GB")
	id := addDevice(t, d, "Small.64GB")
	dir := t.TempDir()
	script := filepath.Join(dir, "train.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, runShim(t, d, nil, "--", script), 126, "",
		"Run failed. ("+script+": permission denied: it is not executable (chmod +x "+script+", or run it through its interpreter, e.g. moreh-run -- bash "+script+").)\n")
	want(t, runShim(t, d, nil, "--", dir), 126, "", "Run failed. ("+dir+": is a directory, not a command.)\n")
	want(t, runShim(t, d, nil, "--", dir+"/none.sh"), 127, "", "Run failed. ("+dir+"/none.sh: no such file.)\n")
	if poolHolds(t, d, id) {
		t.Errorf("the pool binds device %s for a command that never ran", id)
	}
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	want(t, runShim(t, d, nil, "--", script), 0, "ran\n", "")
}
