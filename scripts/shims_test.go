package scripts_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// result is what one run of a shim printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// shim runs scripts/<name> with bash against the tree at root, with a
// fresh HOME, stdin as its input and env added to a minimal environment.
func shim(t *testing.T, root, stdin string, env []string, name string, args ...string) result {
	t.Helper()
	script, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "MOREH_ROOT=" + root}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	r := runCmd(t, cmd)
	if name == "moreh-run" {
		r.stderr = withoutJobID(r.stderr) // checked where it matters (TestRunJobShowsAndReleases)
	}
	return r
}

// jobIDLine is what moreh-run prints once its job holds its GPUs.
var jobIDLine = regexp.MustCompile(`(?m)^\[info\] Moreh Job ID: [0-9]+\n`)

// withoutJobID is moreh-run's stderr less its one job id line.
func withoutJobID(stderr string) string {
	if loc := jobIDLine.FindStringIndex(stderr); loc != nil {
		return stderr[:loc[0]] + stderr[loc[1]:]
	}
	return stderr
}

// smi runs moreh-smi ARGS against d with no input.
func smi(t *testing.T, d *morehdtest.Daemon, args ...string) result {
	t.Helper()
	return shim(t, d.Mount, "", nil, "moreh-smi", args...)
}

// devicesTable is the short Device | Name | Model table (devices.table)
// that moreh-smi prints after device --add, --rm and --switch.
var devicesTable = regexp.MustCompile(`^\+-+\+\n\|  Device  \|        Name         \|  +Model  +\|\n\+=+\+\n(\|.*\|\n\+-+\+\n)+$`)

// wantDone checks a command that changed the devices: exit 0, nothing on
// stderr, the token's short table and then line, last, on stdout.
func wantDone(t *testing.T, r result, line string) {
	t.Helper()
	table, ok := strings.CutSuffix(r.stdout, line)
	if r.code != 0 || r.stderr != "" || !ok || !devicesTable.MatchString(table) {
		t.Errorf("got exit %d\nstdout %q\nstderr %q\nwant exit 0, the devices table then %q", r.code, r.stdout, r.stderr, line)
	}
}

// want checks all three outcomes of a run.
func want(t *testing.T, r result, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || r.stdout != stdout || r.stderr != stderr {
		t.Errorf("got exit %d\nstdout %q\nstderr %q\nwant exit %d\nstdout %q\nstderr %q",
			r.code, r.stdout, r.stderr, code, stdout, stderr)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// start runs a daemon with at most 3 devices per token.
func start(t *testing.T) *morehdtest.Daemon {
	t.Parallel()
	return morehdtest.Start(t, "--max-devices", "3")
}

// addDevice creates a device through the tree, not the shim, and returns its id.
func addDevice(t *testing.T, d *morehdtest.Daemon, model string) string {
	t.Helper()
	if err := os.Mkdir(d.Path("devices", model), 0o755); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(read(t, d.Path("current")))
}

func deviceIDs(t *testing.T, d *morehdtest.Daemon) []string {
	t.Helper()
	entries, err := os.ReadDir(d.Path("devices"))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	slices.Sort(ids)
	return ids
}

func wantDevices(t *testing.T, d *morehdtest.Daemon, ids ...string) {
	t.Helper()
	if got := deviceIDs(t, d); !slices.Equal(got, append([]string{}, ids...)) {
		t.Errorf("devices/ lists %q, want %q", got, ids)
	}
}

func wantCurrent(t *testing.T, d *morehdtest.Daemon, id string) {
	t.Helper()
	want := ""
	if id != "" {
		want = id + "\n"
	}
	if got := read(t, d.Path("current")); got != want {
		t.Errorf("current = %q, want %q", got, want)
	}
}

func wantModel(t *testing.T, d *morehdtest.Daemon, id, model string) {
	t.Helper()
	if got := read(t, d.Path("devices", id, "model")); got != model+"\n" {
		t.Errorf("devices/%s/model = %q, want %q", id, got, model+"\n")
	}
}

// dropFirstLine removes the timestamp line of a status table.
func dropFirstLine(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

const prompt = "Selection (1-12, q, Q): "

// golden is the seed's menu on a token without devices, prompt included.
func golden(t *testing.T) string {
	t.Helper()
	return read(t, filepath.Join("testdata", "menu.golden"))
}

// menuFor is the golden menu with model as the current one.
func menuFor(t *testing.T, model string) string {
	t.Helper()
	s := strings.Replace(golden(t), ". Medium.128GB*\n", ". Medium.128GB\n", 1)
	s = strings.Replace(s, ". "+model+"\n", ". "+model+"*\n", 1)
	return strings.Replace(s, "Accelerator: Medium.128GB\n", "Accelerator: "+model+"\n", 1)
}

// listFor is the menu without its prompt: what device --list prints.
func listFor(t *testing.T, model string) string {
	t.Helper()
	return strings.TrimSuffix(menuFor(t, model), "\n"+prompt)
}

func TestGoldenMenuIsTheSeeds(t *testing.T) {
	g := golden(t)
	if !strings.HasPrefix(g, "Current KT AI Accelerator: Medium.128GB\n\n1. Small.64GB\n2. Medium.128GB*\n") ||
		!strings.HasSuffix(g, "12. 1.5xLarge.768GB\n\n"+prompt) || strings.Count(g, "\n") != 15 {
		t.Fatalf("testdata/menu.golden is not the seed's menu:\n%s", g)
	}
}

func TestStatusTable(t *testing.T) {
	d := start(t)
	id := addDevice(t, d, "Large.256GB")
	r := smi(t, d)
	want(t, r, 0, r.stdout, "")
	if got, file := dropFirstLine(r.stdout), dropFirstLine(read(t, d.Path("status"))); got != file {
		t.Errorf("moreh-smi printed\n%s\nstatus holds\n%s", got, file)
	}
	row := "|  * " + id + "  |  KT AI Accelerator  |  Large.256GB   |        0 MiB   |   262080 MiB   |  -            |\n"
	if !strings.Contains(r.stdout, row) {
		t.Errorf("moreh-smi lacks the row %q:\n%s", row, r.stdout)
	}
}

// The tables and the JSON are printed by bash itself: with no program on
// PATH, moreh-smi still shows them (a process to start costs more than the
// read, and -l waits in bash so that a signal never waits for a child).
func TestShowStartsNoProgram(t *testing.T) {
	d := start(t)
	id := addDevice(t, d, "Small.64GB")
	noPath := []string{"PATH=/nonexistent"}
	for _, c := range []struct {
		args []string
		file string
	}{
		{nil, "status"},
		{[]string{"-i", id}, "devices/" + id + "/status"},
		{[]string{"--json"}, "tokens/default/status.json"},
		{[]string{"--json", "-i", id}, "devices/" + id + "/status.json"},
	} {
		r := shim(t, d.Mount, "", noPath, "moreh-smi", c.args...)
		want(t, r, 0, r.stdout, "")
		if got, file := dropFirstLine(r.stdout), dropFirstLine(read(t, d.Path(strings.Split(c.file, "/")...))); got != file {
			t.Errorf("moreh-smi %q printed\n%s\n%s holds\n%s", c.args, got, c.file, file)
		}
	}
}

func TestAddWithArgument(t *testing.T) {
	for _, args := range [][]string{
		{"device", "--add", "Large.256GB"},
		{"device", "--add", "3"},
		{"device", "add", "3"},
		{"device", "add", "large"},
		{"device", "--add", "03"},
		{"--add", "3"},
		{"add", "large.256gb"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			d := start(t)
			wantDone(t, smi(t, d, args...), "Create device success.\n")
			wantDevices(t, d, "2026")
			wantCurrent(t, d, "2026")
			wantModel(t, d, "2026", "Large.256GB")
		})
	}
}

// The seed's example: "moreh-smi device add 3" creates a Large.256GB device,
// which moreh-smi then shows as current.
func TestDeviceAdd3ThenStatus(t *testing.T) {
	d := start(t)
	addDevice(t, d, "Small.64GB")
	wantDone(t, smi(t, d, "device", "add", "3"), "Create device success.\n")
	wantDevices(t, d, "2026", "2027")
	wantCurrent(t, d, "2027")
	wantModel(t, d, "2027", "Large.256GB")
	r := smi(t, d)
	for _, row := range []string{
		"|    2026  |  KT AI Accelerator  |  Small.64GB    |",
		"|  * 2027  |  KT AI Accelerator  |  Large.256GB   |",
	} {
		if !strings.Contains(r.stdout, row) {
			t.Errorf("moreh-smi lacks %q:\n%s", row, r.stdout)
		}
	}
}

func TestAddFailures(t *testing.T) {
	for _, tc := range []struct {
		arg, stderr string
	}{
		{"foo", `Create device failed. (Unknown model "foo": the models file lists them (e.g. Large.256GB).)` + "\n"},
		{"13", "Create device failed. (There is no model number 13: choose 1-12.)\n"},
		{"0", "Create device failed. (There is no model number 0: choose 1-12.)\n"},
		{"a/b", `Create device failed. (Unknown model "a/b": see moreh-smi device --list.)` + "\n"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			d := start(t)
			want(t, smi(t, d, "device", "--add", tc.arg), 1, "", tc.stderr)
			wantDevices(t, d)
			wantCurrent(t, d, "")
		})
	}
}

func TestAddBeyondLimit(t *testing.T) {
	d := start(t)
	for _, m := range []string{"Small.64GB", "Medium.128GB", "Large.256GB"} {
		addDevice(t, d, m)
	}
	want(t, smi(t, d, "device", "--add", "1"), 1, "", "Create device failed. (Maximum number of devices (3) reached.)\n")
	wantDevices(t, d, "2026", "2027", "2028")
	wantCurrent(t, d, "2028")
	if got := read(t, d.Path("tokens", "default", "limit")); got != "max 3\nused 3\n" {
		t.Errorf("limit = %q", got)
	}
}

func TestInteractiveAdd(t *testing.T) {
	for _, tc := range []struct {
		name, stdin string
		code        int
		stdout      func(t *testing.T) string
		stderr      string
		model       string // "" when nothing may be created
	}{
		{"reasks twice", "x\n99\n3\n", 0, func(t *testing.T) string {
			return golden(t) + prompt + prompt
		}, "", "Large.256GB"},
		{"reasks on empty line", "\n \n12\n", 0, func(t *testing.T) string {
			return golden(t) + prompt + prompt
		}, "", "1.5xLarge.768GB"},
		{"last line without newline", "1", 0, func(t *testing.T) string {
			return golden(t)
		}, "", "Small.64GB"},
		{"q quits", "q\n", 0, golden, "", ""},
		{"Q quits", "5x\nQ\n3\n", 0, func(t *testing.T) string { return golden(t) + prompt }, "", ""},
		{"end of input", "x\n", 1, func(t *testing.T) string { return golden(t) + prompt + "\n" },
			"Create device failed. (No selection was made.)\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := start(t)
			r := shim(t, d.Mount, tc.stdin, nil, "moreh-smi", "device", "--add")
			stdout := tc.stdout(t)
			if tc.model != "" {
				// The devices table, the model created (the seed's "message
				// saying it changed to the selected model"), the success line.
				stdout += read(t, d.Path("tokens", "default", "devices.table")) + switchedTo(tc.model) + "Create device success.\n"
			}
			want(t, r, tc.code, stdout, tc.stderr)
			if tc.model == "" {
				wantDevices(t, d)
				wantCurrent(t, d, "")
				return
			}
			wantDevices(t, d, "2026")
			wantModel(t, d, "2026", tc.model)
		})
	}
}

// The menu of device --add stars the current device's model.
func TestInteractiveAddShowsCurrentModel(t *testing.T) {
	d := start(t)
	addDevice(t, d, "xlarge")
	want(t, shim(t, d.Mount, "q\n", nil, "moreh-smi", "device", "--add"), 0, menuFor(t, "xLarge.512GB"), "")
	wantDevices(t, d, "2026")
}

func TestRemoveByID(t *testing.T) {
	for _, args := range [][]string{
		{"device", "--rm", "2026"},
		{"device", "rm", "2026"},
		{"rm", "2026"},
		{"--rm", "2026"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			d := start(t)
			addDevice(t, d, "Small.64GB")
			addDevice(t, d, "Medium.128GB")
			wantDone(t, smi(t, d, args...), "Remove device success.\n")
			wantDevices(t, d, "2027")
			wantCurrent(t, d, "2027")
		})
	}
}

// device --rm without an id removes the current device; the one used last
// becomes current.
func TestRemoveCurrent(t *testing.T) {
	d := start(t)
	addDevice(t, d, "Small.64GB")
	addDevice(t, d, "Medium.128GB")
	addDevice(t, d, "Large.256GB")
	wantDone(t, smi(t, d, "device", "--switch", "2027"), "Switch current device success.\n")
	wantDone(t, smi(t, d, "device", "--rm"), "Remove device success.\n")
	wantDevices(t, d, "2026", "2028")
	wantCurrent(t, d, "2028")
	wantDone(t, smi(t, d, "device", "rm"), "Remove device success.\n")
	wantDevices(t, d, "2026")
	wantCurrent(t, d, "2026")
	wantDone(t, smi(t, d, "device", "--rm"), "Remove device success.\n")
	wantDevices(t, d)
	wantCurrent(t, d, "")
	want(t, smi(t, d, "device", "--rm"), 1, "", "Remove device failed. (No device to remove.)\n")
}

func TestRemoveAll(t *testing.T) {
	for _, args := range [][]string{
		{"device", "rm", "--all"},
		{"device", "--rm", "--all"},
		{"rm", "--all"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			d := start(t)
			addDevice(t, d, "Small.64GB")
			addDevice(t, d, "Medium.128GB")
			addDevice(t, d, "Large.256GB")
			wantDone(t, smi(t, d, args...), "Remove device success.\n")
			wantDevices(t, d)
			wantCurrent(t, d, "")
			if got := read(t, d.Path("tokens", "default", "limit")); got != "max 3\nused 0\n" {
				t.Errorf("limit = %q", got)
			}
			// Nothing left to remove is no failure.
			wantDone(t, smi(t, d, args...), "Remove device success.\n")
		})
	}
}

func TestSwitch(t *testing.T) {
	for _, args := range [][]string{
		{"device", "--switch", "2026"},
		{"device", "switch", "2026"},
		{"--switch", "2026"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			d := start(t)
			addDevice(t, d, "Small.64GB")
			addDevice(t, d, "Medium.128GB")
			wantDone(t, smi(t, d, args...), "Switch current device success.\n")
			wantCurrent(t, d, "2026")
			wantDevices(t, d, "2026", "2027")
		})
	}
}

// moreh-smi -i of an unknown device exits 6, nvidia-smi's "not found"; the
// device commands, moreh's own, 1.
func TestUnknownDevice(t *testing.T) {
	d := start(t)
	addDevice(t, d, "Small.64GB")
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"-i", "2099"}, 6, "Show device failed. (Device 2099 does not exist.)\n"},
		{[]string{"-i", "abc"}, 6, "Show device failed. (Device abc does not exist.)\n"},
		{[]string{"device", "--rm", "2099"}, 1, "Remove device failed. (Device 2099 does not exist.)\n"},
		{[]string{"rm", "../2026"}, 1, "Remove device failed. (Device ../2026 does not exist.)\n"},
		{[]string{"device", "--switch", "2099"}, 1, "Switch current device failed. (Device 2099 does not exist.)\n"},
		{[]string{"device", "switch", "x"}, 1, "Switch current device failed. (Device x does not exist.)\n"},
	} {
		want(t, smi(t, d, tc.args...), tc.code, "", tc.stderr)
	}
	wantDevices(t, d, "2026")
	wantCurrent(t, d, "2026")
}

func TestShowDevice(t *testing.T) {
	d := start(t)
	addDevice(t, d, "Small.64GB")
	addDevice(t, d, "24xLarge.12288GB")
	for _, args := range [][]string{
		{"-i", "2026"}, {"--idx", "2026"}, {"-i=2026"}, {"--idx=2026"}, {"-i2026"},
		{"-i", "2027"},
	} {
		id := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(args[len(args)-1], "--idx="), "-i"), "=")
		r := smi(t, d, args...)
		want(t, r, 0, r.stdout, "")
		file := read(t, d.Path("devices", id, "status"))
		if got := dropFirstLine(r.stdout); got != dropFirstLine(file) {
			t.Errorf("moreh-smi %q printed\n%s\ndevices/%s/status holds\n%s", args, got, id, file)
		}
		other := map[string]string{"2026": "2027", "2027": "2026"}[id]
		if strings.Contains(dropFirstLine(r.stdout), " "+other+"  |") {
			t.Errorf("moreh-smi %q shows device %s too:\n%s", args, other, r.stdout)
		}
	}
}

func TestList(t *testing.T) {
	d := start(t)
	want(t, smi(t, d, "device", "--list"), 0, listFor(t, "Medium.128GB"), "")
	addDevice(t, d, "Large.256GB")
	addDevice(t, d, "12xLarge.6144GB")
	want(t, smi(t, d, "device", "--list"), 0, listFor(t, "12xLarge.6144GB"), "")
	wantDone(t, smi(t, d, "device", "--switch", "2026"), "Switch current device success.\n")
	want(t, smi(t, d, "device", "list"), 0, listFor(t, "Large.256GB"), "")
	wantDevices(t, d, "2026", "2027")
}

func TestToken(t *testing.T) {
	d := start(t)
	addDevice(t, d, "Small.64GB")
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".moreh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".moreh", "token"), []byte("hometoken42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		env    []string
		secret string
	}{
		{"from MOREH_SDA_TOKEN", []string{"MOREH_SDA_TOKEN=sk-abcdef0123"}, "sk-a****"},
		{"MOREH_SDA_TOKEN before home", []string{"MOREH_SDA_TOKEN=envtoken", "HOME=" + home}, "envt****"},
		{"from ~/.moreh/token", []string{"HOME=" + home}, "home****"},
		{"short token shows nothing", []string{"MOREH_SDA_TOKEN=abc"}, "****"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{{"-t"}, {"--token"}} {
				r := shim(t, d.Mount, "", tc.env, "moreh-smi", args...)
				want(t, r, 0, "Token: default\nSecret: "+tc.secret+"\nDevices: 1 of 3\n", "")
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		if _, err := os.Stat("/etc/moreh/token"); err == nil {
			t.Skip("/etc/moreh/token exists on this machine")
		}
		want(t, smi(t, d, "-t"), 0, "Token: default\nSecret: (none)\nDevices: 1 of 3\n", "")
	})
}

func TestVersion(t *testing.T) {
	d := start(t)
	var client, server string
	for _, line := range strings.Split(read(t, d.Path("version")), "\n") {
		if v, ok := strings.CutPrefix(line, "client "); ok {
			client = v
		}
		if v, ok := strings.CutPrefix(line, "server "); ok {
			server = v
		}
	}
	if client == "" || server == "" {
		t.Fatalf("version file lacks client or server: %q", read(t, d.Path("version")))
	}
	want(t, smi(t, d, "-v"), 0, "Client Version: "+client+"\nServer Version: "+server+"\n", "")
	want(t, smi(t, d, "--version"), 0, "Client Version: "+client+"\nServer Version: "+server+"\n", "")
	want(t, smi(t, d, "-s"), 0, "Server Version: "+server+"\n", "")

	// A tree whose client and server differ tells the two lines apart.
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "models"), []byte(read(t, d.Path("models"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "version"), []byte("moreh-smi 9.9\nclient 1.1\nserver 2.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, shim(t, root, "", nil, "moreh-smi", "-v"), 0, "Client Version: 1.1\nServer Version: 2.2\n", "")
	want(t, shim(t, root, "", nil, "moreh-smi", "-s"), 0, "Server Version: 2.2\n", "")
}

const switched = `The KT AI Accelerator model is successfully switched to  "%s".` + "\n"

func switchedTo(model string) string { return strings.Replace(switched, "%s", model, 1) }

func TestSwitchModelWithArgument(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		model string
	}{
		{[]string{"-M", "3"}, "Large.256GB"},
		{[]string{"-M", "xlarge"}, "xLarge.512GB"},
		{[]string{"--model", "1.5xLarge.768GB"}, "1.5xLarge.768GB"},
		{[]string{"-M11"}, "24xLarge.12288GB"},
		{[]string{"--model=small"}, "Small.64GB"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			d := start(t)
			addDevice(t, d, "Small.64GB")
			id := addDevice(t, d, "Medium.128GB")
			want(t, shim(t, d.Mount, "", nil, "moreh-switch-model", tc.args...), 0, switchedTo(tc.model), "")
			wantModel(t, d, id, tc.model)
			wantModel(t, d, "2026", "Small.64GB")
		})
	}
}

func TestSwitchModelFailures(t *testing.T) {
	d := start(t)
	none := shim(t, d.Mount, "", nil, "moreh-switch-model", "-M", "3")
	want(t, none, 1, "", "Switch model failed. (There is no current device: create one with moreh-smi device --add.)\n")
	wantDevices(t, d)

	id := addDevice(t, d, "Medium.128GB")
	for _, tc := range []struct {
		arg, stderr string
	}{
		{"99", "Switch model failed. (There is no model number 99: choose 1-12.)\n"},
		{"foo", `Switch model failed. (Unknown model "foo": the models file lists them (e.g. Large.256GB).)` + "\n"},
	} {
		want(t, shim(t, d.Mount, "", nil, "moreh-switch-model", "-M", tc.arg), 1, "", tc.stderr)
	}
	wantModel(t, d, id, "Medium.128GB")
}

func TestSwitchModelMenu(t *testing.T) {
	d := start(t)
	id := addDevice(t, d, "Small.64GB")
	r := shim(t, d.Mount, "0\nlarge\n3\n", nil, "moreh-switch-model")
	want(t, r, 0, menuFor(t, "Small.64GB")+prompt+prompt+switchedTo("Large.256GB"), "")
	wantModel(t, d, id, "Large.256GB")

	want(t, shim(t, d.Mount, "q\n", nil, "moreh-switch-model"), 0, menuFor(t, "Large.256GB"), "")
	want(t, shim(t, d.Mount, "", nil, "moreh-switch-model"), 1, menuFor(t, "Large.256GB")+"\n",
		"Switch model failed. (No selection was made.)\n")
	wantModel(t, d, id, "Large.256GB")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	nowhere := filepath.Join(t.TempDir(), "nowhere")
	for _, tc := range []struct {
		name string
		args []string
		form string // a form the help must explain
	}{
		{"moreh-smi", []string{"--help"}, "moreh-smi device --add [N|MODEL]"},
		{"moreh-smi", []string{"-h"}, "moreh-smi device --rm --all"},
		{"moreh-switch-model", []string{"--help"}, "moreh-switch-model -M N"},
		{"moreh-switch-model", []string{"-h"}, "moreh-switch-model -M MODEL"},
	} {
		// Help needs no tree.
		r := shim(t, nowhere, "", nil, tc.name, tc.args...)
		want(t, r, 0, r.stdout, "")
		if !strings.HasPrefix(r.stdout, "Usage: "+tc.name+" ") || !strings.Contains(r.stdout, tc.form) {
			t.Errorf("%s %q help lacks its usage line or %q:\n%s", tc.name, tc.args, tc.form, r.stdout)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	d := start(t)
	addDevice(t, d, "Small.64GB")
	for _, tc := range []struct {
		name  string
		args  []string
		first string // the first line of stderr
	}{
		{"moreh-smi", []string{"--bogus"}, "moreh-smi: unknown option '--bogus'."},
		{"moreh-smi", []string{"bogus"}, "moreh-smi: unknown command 'bogus'."},
		{"moreh-smi", []string{"device"}, "moreh-smi: device: say what to do: --add, --rm, --switch or --list."},
		{"moreh-smi", []string{"device", "--frob"}, "moreh-smi: device: unknown command '--frob'."},
		{"moreh-smi", []string{"device", "--switch", "2026", "2027"}, "moreh-smi: device --switch takes one device ID at most."},
		{"moreh-smi", []string{"device", "--switch", "--to"}, "moreh-smi: device --switch: unknown option '--to'."},
		{"moreh-smi", []string{"device", "--rm", "2026", "2027"}, "moreh-smi: device --rm takes one device ID at most."},
		{"moreh-smi", []string{"device", "--rm", "--al"}, "moreh-smi: device --rm: unknown option '--al'."},
		{"moreh-smi", []string{"device", "--add", "1", "2"}, "moreh-smi: device --add takes one model at most."},
		{"moreh-smi", []string{"device", "--list", "x"}, "moreh-smi: device --list takes no argument."},
		{"moreh-smi", []string{"-i"}, "moreh-smi: expected one device ID, got 0: nothing."},
		{"moreh-smi", []string{"-v", "x"}, "moreh-smi: -v takes no argument."},
		{"moreh-switch-model", []string{"--bogus"}, "moreh-switch-model: unknown option '--bogus'."},
		{"moreh-switch-model", []string{"-M"}, "moreh-switch-model: -M takes one model number or name."},
		{"moreh-switch-model", []string{"3"}, "moreh-switch-model: unexpected argument '3'."},
	} {
		r := shim(t, d.Mount, "", nil, tc.name, tc.args...)
		want(t, r, 2, "", tc.first+"\nRun '"+tc.name+" --help' for usage.\n")
	}
	wantDevices(t, d, "2026")
	wantCurrent(t, d, "2026")
	wantModel(t, d, "2026", "Small.64GB")
}

// Without a tree (nothing mounted, or the daemon gone), each shim says that
// morehd is not running and how to start it; moreh-smi exits 9, nvidia-smi's
// "driver not loaded".
func TestNoTree(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t)
	d.Stop() // the mount point is left as an empty directory
	for _, root := range []string{filepath.Join(t.TempDir(), "nowhere"), d.Mount} {
		msg := notRunning(root)
		want(t, shim(t, root, "", nil, "moreh-smi"), 9, "", msg)
		want(t, shim(t, root, "", nil, "moreh-smi", "device", "--add", "3"), 9, "", msg)
		want(t, shim(t, root, "", nil, "moreh-smi", "-i", "2026"), 9, "", msg)
		want(t, shim(t, root, "", nil, "moreh-smi", "--query-gpu=index"), 9, "", msg)
		want(t, shim(t, root, "", nil, "moreh-switch-model", "-M", "3"), 1, "", msg)
	}
}

// A killed daemon leaves a dead mount (ENOTCONN): the same sentence.
func TestDeadMount(t *testing.T) {
	t.Parallel()
	d := morehdtest.Start(t)
	d.Kill() // Stop, in Cleanup, detaches the mount
	if _, err := os.Stat(d.Path("models")); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of a killed daemon's models: %v, want ENOTCONN", err)
	}
	msg := notRunning(d.Mount)
	want(t, shim(t, d.Mount, "", nil, "moreh-smi"), 9, "", msg)
	want(t, shim(t, d.Mount, "", nil, "moreh-smi", "--query-gpu=index"), 9, "", msg)
	want(t, shim(t, d.Mount, "", nil, "moreh-switch-model", "-M", "3"), 1, "", msg)
	want(t, shim(t, d.Mount, "", nil, "moreh-run", "true"), 1, "", msg)
}

// notRunning is what a shim says when no tree answers at root.
func notRunning(root string) string {
	return "moreh: morehd is not running (no moreh tree at " + root + "): start it with: sudo systemctl start morehd (or: sudo morehd --mount " + root + ")\n"
}

// The default model is the tree's: the line of models marked "default" is
// what the menu shows as current on a token without devices.
func TestDefaultModelFromModels(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	models := "1\tSmall.64GB\t1\t65520\n2\tMedium.128GB\t2\t131040\n3\tLarge.256GB\t4\t262080\tdefault\n"
	if err := os.WriteFile(filepath.Join(root, "models"), []byte(models), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	want(t, shim(t, root, "", nil, "moreh-smi", "device", "--list"), 0,
		"Current KT AI Accelerator: Large.256GB\n\n1. Small.64GB\n2. Medium.128GB\n3. Large.256GB*\n", "")
	want(t, shim(t, root, "q\n", nil, "moreh-smi", "device", "--add"), 0,
		"Current KT AI Accelerator: Large.256GB\n\n1. Small.64GB\n2. Medium.128GB\n3. Large.256GB*\n\nSelection (1-3, q, Q): ", "")
}
