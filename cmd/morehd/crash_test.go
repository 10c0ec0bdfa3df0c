package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// envInt reads a positive count from the environment, or gives def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// envDuration reads a duration from the environment, or gives def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a duration such as 10s", name, s)
	}
	return d
}

// openToOthers lets other users reach the mount: the temp dirs above it
// are 0700, and a worker acting as a token's user must traverse them.
func openToOthers(t *testing.T, mount string) {
	t.Helper()
	for dir := filepath.Dir(mount); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// helper is a process a job can hold: `sleep` running as a token's user.
type helper struct {
	cmd  *exec.Cmd
	pid  int           // the process a job holds it by: an orphaner's background child once it left
	tree bool          // a shell with a background child, in a process group of its own
	done chan struct{} // closed once it has exited and been reaped

	// An orphaner is `bash -c 'read; sleep 3600 &'` (a process group of its
	// own): told to, it leaves a background child and exits, so that its job
	// is held by a process that was never attached.
	orphan   io.WriteCloser // its stdin; nil for other helpers
	childPID string         // the file where it writes its child's pid
	left     bool           // it has left its child behind: pid is the child's
}

func (h *helper) alive() bool {
	if h.left {
		return pidAlive(h.pid)
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

func (h *helper) kill() {
	if h.tree || h.orphan != nil {
		syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL) // its background child too
	}
	h.cmd.Process.Kill()
	<-h.done
	for deadline := time.Now().Add(5 * time.Second); h.left && pidAlive(h.pid) && time.Now().Before(deadline); {
		<-time.After(time.Millisecond) // the child is init's to reap: polled with a deadline
	}
}

// leave makes an orphaner fork its background child and exit: from now on
// the child alone holds its job. It returns false if it could not; an
// orphaner that a reset had already killed (by a signal) has no child to
// leave, and is not an error.
func (h *helper) leave() (bool, error) {
	if h.orphan == nil || h.left {
		return false, nil
	}
	h.orphan.Close() // read returns: bash forks sleep, writes its pid, exits
	<-h.done
	b, err := os.ReadFile(h.childPID)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if ws, ok := h.cmd.ProcessState.Sys().(syscall.WaitStatus); (err != nil || perr != nil) && ok && ws.Signaled() {
		return false, nil
	}
	if err != nil || perr != nil {
		return false, fmt.Errorf("an orphaner (%s) left no child: %v %v", h.cmd.ProcessState, err, perr)
	}
	h.pid, h.left = pid, true
	return true, nil
}

// helpers starts and, at the end of the test, kills helper processes.
type helpers struct {
	mu  sync.Mutex
	all []*helper
}

func newHelpers(t *testing.T) *helpers {
	hs := &helpers{}
	t.Cleanup(func() {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		for _, h := range hs.all {
			h.kill()
		}
	})
	return hs
}

func (hs *helpers) start(t *testing.T, uid int) *helper {
	return hs.startCmd(t, uid, exec.Command("sleep", "3600"), false)
}

// startTree starts a shell whose background child outlives nothing it is
// told: a job that holds it holds both, however the shell is moved.
func (hs *helpers) startTree(t *testing.T) *helper {
	cmd := exec.Command("bash", "-c", "sleep 3600 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return hs.startCmd(t, 0, cmd, true)
}

// startOrphaner starts, as uid, a shell that leaves a background child
// and exits once told to (helper.leave).
func (hs *helpers) startOrphaner(t *testing.T, uid int) *helper {
	dir, err := os.MkdirTemp("", "moreh-orphaner-")
	if err != nil {
		t.Errorf("start an orphaner: %v", err)
		return nil
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777) // uid writes its child's pid there
	file := filepath.Join(dir, "child")
	cmd := exec.Command("bash", "-c", `read -r _; sleep 3600 >/dev/null 2>&1 </dev/null & echo $! > "$1"`, "orphaner", file)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Errorf("start an orphaner: %v", err)
		return nil
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kill ends the child with it
	h := hs.startCmd(t, uid, cmd, false)
	if h != nil {
		h.orphan, h.childPID = in, file
	}
	return h
}

func (hs *helpers) startCmd(t *testing.T, uid int, cmd *exec.Cmd, tree bool) *helper {
	cmd.Dir = "/"
	if uid != 0 {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	}
	if err := cmd.Start(); err != nil {
		t.Errorf("start a helper process: %v", err) // not Fatal: workers call this too
		return nil
	}
	h := &helper{cmd: cmd, pid: cmd.Process.Pid, tree: tree, done: make(chan struct{})}
	go func() { cmd.Wait(); close(h.done) }()
	hs.mu.Lock()
	hs.all = append(hs.all, h)
	hs.mu.Unlock()
	return h
}

// pidAlive reports whether pid runs and is not a zombie, as the reaper sees it.
func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// devSnap is one device as its files show it.
type devSnap struct {
	Model string
	Procs []int    // sorted
	GPUs  []string // UUIDs of the gpus file
}

// tokenSnap is one token as its files show it.
type tokenSnap struct {
	Devices   map[uint64]devSnap
	Current   uint64 // 0 when current is empty
	Max, Used int
}

// poolGPU is one line of the pool file.
type poolGPU struct {
	Index, Units int
	Device       uint64 // 0 when free
}

// treeSnap is the whole tree as root reads it through the files.
type treeSnap struct {
	Tokens  map[string]tokenSnap
	Pool    []poolGPU
	Waiting map[uint64]bool // devices whose job waits in the queue
}

// snapshot reads every token, device and the pool through the mount. It
// fails, rather than guesses, on any read that fails: callers poll.
func snapshot(d *morehdtest.Daemon) (treeSnap, error) {
	s := treeSnap{Tokens: map[string]tokenSnap{}, Waiting: map[uint64]bool{}}
	queue, err := os.ReadFile(d.Path("queue"))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(queue), "\n"), "\n") {
		if f := strings.Fields(line); len(f) == 7 {
			id, _ := strconv.ParseUint(f[3], 10, 64)
			s.Waiting[id] = true
		}
	}
	names, err := readDirNames(d.Path("tokens"))
	if err != nil {
		return s, err
	}
	for _, name := range names {
		tok := tokenSnap{Devices: map[uint64]devSnap{}}
		dir := d.Path("tokens", name)
		ids, err := readDirNames(filepath.Join(dir, "devices"))
		if err != nil {
			return s, err
		}
		for _, idName := range ids {
			id, err := strconv.ParseUint(idName, 10, 64)
			if err != nil {
				return s, fmt.Errorf("devices of %s lists %q", name, idName)
			}
			dev, err := readDevice(filepath.Join(dir, "devices", idName))
			if err != nil {
				return s, err
			}
			tok.Devices[id] = dev
		}
		cur, err := os.ReadFile(filepath.Join(dir, "current"))
		if err != nil {
			return s, err
		}
		if c := strings.TrimSuffix(string(cur), "\n"); c != "" {
			if tok.Current, err = strconv.ParseUint(c, 10, 64); err != nil {
				return s, fmt.Errorf("current of %s = %q", name, cur)
			}
		}
		limit, err := os.ReadFile(filepath.Join(dir, "limit"))
		if err != nil {
			return s, err
		}
		if _, err := fmt.Sscanf(string(limit), "max %d\nused %d\n", &tok.Max, &tok.Used); err != nil {
			return s, fmt.Errorf("limit of %s = %q: %v", name, limit, err)
		}
		s.Tokens[name] = tok
	}
	pool, err := os.ReadFile(d.Path("pool"))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(pool), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			return s, fmt.Errorf("pool line %q", line)
		}
		var g poolGPU
		g.Index, _ = strconv.Atoi(f[0])
		g.Units, _ = strconv.Atoi(f[1])
		if f[2] != "-" {
			g.Device, _ = strconv.ParseUint(f[2], 10, 64)
		}
		s.Pool = append(s.Pool, g)
	}
	return s, nil
}

func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

func readDevice(dir string) (devSnap, error) {
	var dev devSnap
	model, err := os.ReadFile(filepath.Join(dir, "model"))
	if err != nil {
		return dev, err
	}
	dev.Model = strings.TrimSuffix(string(model), "\n")
	procs, err := os.ReadFile(filepath.Join(dir, "procs"))
	if err != nil {
		return dev, err
	}
	for _, f := range strings.Fields(string(procs)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return dev, fmt.Errorf("%s/procs = %q", dir, procs)
		}
		dev.Procs = append(dev.Procs, pid)
	}
	sort.Ints(dev.Procs)
	gpus, err := os.ReadFile(filepath.Join(dir, "gpus"))
	if err != nil {
		return dev, err
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(gpus), "\n"), "\n") {
		if f := strings.Split(line, "\t"); len(f) >= 2 {
			dev.GPUs = append(dev.GPUs, f[1])
		}
	}
	return dev, nil
}

// violations lists every invariant of DESIGN.md that s breaks: each token
// at or under its limit, ids unique, current naming one of the token's
// devices or empty, a job's GPUs bound all or nothing and to that device
// alone, and no GPU bound to a device without a live process.
func (s treeSnap) violations(alive func(pid int) bool) []string {
	var v []string
	owner := map[uint64]string{}
	gpuOwner := map[string]uint64{}
	bound := map[uint64]int{} // device → GPUs the pool shows bound to it
	for _, g := range s.Pool {
		if g.Device != 0 {
			bound[g.Device]++
		}
	}
	for _, name := range sortedKeys(s.Tokens) {
		tok := s.Tokens[name]
		if tok.Used != len(tok.Devices) || tok.Used > tok.Max {
			v = append(v, fmt.Sprintf("token %s: limit says max %d used %d; it lists %d devices", name, tok.Max, tok.Used, len(tok.Devices)))
		}
		if _, ok := tok.Devices[tok.Current]; tok.Current != 0 && !ok {
			v = append(v, fmt.Sprintf("token %s: current %d is none of its devices %v", name, tok.Current, sortedKeys(tok.Devices)))
		}
		for _, id := range sortedKeys(tok.Devices) {
			dev := tok.Devices[id]
			if other, dup := owner[id]; dup {
				v = append(v, fmt.Sprintf("device %d belongs to both %s and %s", id, other, name))
			}
			owner[id] = name
			m, ok := store.LookupModel(dev.Model)
			if !ok || m.Name != dev.Model {
				v = append(v, fmt.Sprintf("device %d: model %q is not a canonical model name", id, dev.Model))
			}
			for _, uuid := range dev.GPUs {
				if other, dup := gpuOwner[uuid]; dup {
					v = append(v, fmt.Sprintf("GPU %s is bound to devices %d and %d", uuid, other, id))
				}
				gpuOwner[uuid] = id
			}
			liveProcs := 0
			for _, pid := range dev.Procs {
				if alive(pid) {
					liveProcs++
				}
			}
			switch {
			case len(dev.GPUs) > 0 && liveProcs == 0:
				v = append(v, fmt.Sprintf("device %d holds GPUs %v with no live process (procs %v)", id, dev.GPUs, dev.Procs))
			case len(dev.GPUs) > 0 && len(dev.GPUs) != m.Units:
				v = append(v, fmt.Sprintf("device %d (%s, %d units) holds %d GPUs: binding is all or nothing", id, dev.Model, m.Units, len(dev.GPUs)))
			case len(dev.Procs) > 0 && len(dev.GPUs) == 0 && !s.Waiting[id]:
				v = append(v, fmt.Sprintf("device %d runs procs %v but holds no GPU", id, dev.Procs))
			}
			if bound[id] != len(dev.GPUs) {
				v = append(v, fmt.Sprintf("device %d lists %d GPUs; the pool shows %d bound to it", id, len(dev.GPUs), bound[id]))
			}
		}
	}
	for _, g := range s.Pool {
		if _, ok := owner[g.Device]; g.Device != 0 && !ok {
			v = append(v, fmt.Sprintf("pool GPU %d is bound to device %d, which no token has", g.Index, g.Device))
		}
	}
	return v
}

func sortedKeys[K uint64 | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// crashModels are what the crash workers mkdir and write to model: every
// size that fits the 4-unit pool, one that never fits, short forms and one
// unknown name.
var crashModels = []string{"Small.64GB", "small", "Medium.128GB", "Large.256GB", "large", "xLarge.512GB", "Bogus.1GB"}

// crashDev is what a worker knows of one of its token's devices.
type crashDev struct {
	model    string
	lastUsed uint64    // the token's use count when it last became current
	helpers  []*helper // attached processes: a job runs while any is attached
}

// crashOp is one operation; a worker keeps the one the kill interrupted.
type crashOp struct {
	kind    string // mkdir, rmdir, switch, model, attach, reset
	id      uint64
	model   string
	helper  *helper
	floor   uint64 // the largest id seen anywhere before it started
	refused bool   // the rules refuse it: it cannot commit
}

func (op crashOp) String() string {
	return fmt.Sprintf("%s id=%d model=%q", op.kind, op.id, op.model)
}

// crashToken is one token and the worker that alone changes it, so that the
// worker's model of it is exact: each success is known, and at most one
// operation (the one in flight at the kill) is uncertain.
type crashToken struct {
	name string
	uid  int
	dir  string // tokens/<name> in the mount
	max  int

	devs    map[uint64]*crashDev
	current uint64
	uses    uint64
	spare   []*helper

	uncertain *crashOp // in flight when the daemon died: committed or not
	createdID *crashOp // a create that succeeded before its id could be read
	failures  []string
}

// crashRun is what all workers share.
type crashRun struct {
	mu       sync.Mutex
	seen     map[uint64]string // every id ever observed → its token
	removed  map[uint64]bool   // ids whose rmdir succeeded: never to return
	maxSeen  atomic.Uint64
	killed   atomic.Bool // set just before the SIGKILL
	ops, oks atomic.Int64
	odd      atomic.Int64 // unexpected errnos after the kill, counted as interrupted
	orphaned atomic.Int64 // jobs left held by a background child alone (up, or while the daemon was down)

	inFlight, committed int // operations interrupted by a kill, and how many of them had committed
}

func (r *crashRun) see(id uint64, token string) {
	r.mu.Lock()
	r.seen[id] = token
	r.mu.Unlock()
	for {
		old := r.maxSeen.Load()
		if id <= old || r.maxSeen.CompareAndSwap(old, id) {
			return
		}
	}
}

// dead reports whether err is the daemon's death as the kernel tells it.
func dead(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// writeCmd is `echo value > path` in raw syscalls: open(O_TRUNC), one
// write(2), close. A write that returned success is a committed command.
func writeCmd(path, value string) error {
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	n, err := syscall.Write(fd, []byte(value))
	if err == nil && n != len(value) {
		return fmt.Errorf("short write %d of %d", n, len(value))
	}
	return err
}

func errnoName(err error) string {
	var errno syscall.Errno
	if err == nil {
		return "success"
	}
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s(%d)", errno.Error(), int(errno))
	}
	return err.Error()
}

// hasJob: a job runs on a device while a live helper is attached; during a
// round helpers die only by a reset, which ends the job in the same command.
func (d *crashDev) hasJob() bool { return len(d.helpers) > 0 }

// fallback is the device that becomes current when the current one goes:
// the most recently used one left, or none.
func (tok *crashToken) fallback() uint64 {
	var best uint64
	var bestUse uint64
	for id, d := range tok.devs {
		if best == 0 || d.lastUsed > bestUse {
			best, bestUse = id, d.lastUsed
		}
	}
	return best
}

// apply records a committed operation in the worker's model.
func (tok *crashToken) apply(op crashOp) {
	switch op.kind {
	case "mkdir":
		m, _ := store.LookupModel(op.model)
		tok.uses++
		tok.devs[op.id] = &crashDev{model: m.Name, lastUsed: tok.uses}
		tok.current = op.id
	case "rmdir":
		delete(tok.devs, op.id)
		if tok.current == op.id {
			tok.current = tok.fallback()
		}
	case "switch":
		tok.uses++
		tok.devs[op.id].lastUsed = tok.uses
		tok.current = op.id
	case "model":
		m, _ := store.LookupModel(op.model)
		tok.devs[op.id].model = m.Name
	case "attach":
		tok.devs[op.id].helpers = append(tok.devs[op.id].helpers, op.helper)
	case "reset":
		tok.devs[op.id].helpers = nil // SIGTERMed by the daemon before it answered
	}
}

func (tok *crashToken) randomID(rng *rand.Rand) (uint64, bool) {
	if len(tok.devs) == 0 {
		return 0, false
	}
	ids := sortedKeys(tok.devs)
	return ids[rng.Intn(len(ids))], true
}

// step does one random operation as the token's user and checks its errno
// against the rules; it returns false once the daemon is gone.
func (tok *crashToken) step(run *crashRun, rng *rand.Rand) bool {
	dev := func(id uint64, file string) string {
		return filepath.Join(tok.dir, "devices", strconv.FormatUint(id, 10), file)
	}
	var op crashOp
	var err error
	var want []syscall.Errno // nil: success; more than one: any of them
	switch k := rng.Intn(100); {
	case k < 25:
		op = crashOp{kind: "mkdir", model: crashModels[rng.Intn(len(crashModels))], floor: run.maxSeen.Load()}
		switch _, valid := store.LookupModel(op.model); {
		case !valid:
			want = []syscall.Errno{syscall.EINVAL}
		case len(tok.devs) >= tok.max:
			want = []syscall.Errno{syscall.EDQUOT}
		}
		err = syscall.Mkdir(filepath.Join(tok.dir, "devices", op.model), 0o755)
	case k < 40:
		id, ok := tok.randomID(rng)
		if !ok || rng.Intn(10) == 0 {
			id = 1 + run.maxSeen.Load() + uint64(rng.Intn(1000)) // never handed out yet
		}
		op = crashOp{kind: "rmdir", id: id}
		switch d := tok.devs[id]; {
		case d == nil:
			want = []syscall.Errno{syscall.ENOENT}
		case d.hasJob():
			want = []syscall.Errno{syscall.EBUSY}
		}
		err = syscall.Rmdir(filepath.Join(tok.dir, "devices", strconv.FormatUint(id, 10)))
	case k < 60:
		id, ok := tok.randomID(rng)
		value := strconv.FormatUint(id, 10) + "\n"
		switch {
		case !ok || rng.Intn(12) == 0:
			id = 1 + run.maxSeen.Load() + uint64(rng.Intn(1000))
			value = strconv.FormatUint(id, 10)
			want = []syscall.Errno{syscall.ENOENT}
		case rng.Intn(12) == 0:
			value = "x" + value
			want = []syscall.Errno{syscall.EINVAL}
		}
		op = crashOp{kind: "switch", id: id}
		err = writeCmd(filepath.Join(tok.dir, "current"), value)
	case k < 75:
		id, ok := tok.randomID(rng)
		if !ok {
			return true
		}
		op = crashOp{kind: "model", id: id, model: crashModels[rng.Intn(len(crashModels))]}
		if _, valid := store.LookupModel(op.model); !valid {
			want = []syscall.Errno{syscall.EINVAL}
		} else if tok.devs[id].hasJob() {
			want = []syscall.Errno{syscall.EBUSY}
		}
		err = writeCmd(dev(id, "model"), op.model+"\n")
	case k < 90:
		id, ok := tok.randomID(rng)
		if !ok || len(tok.spare) == 0 {
			return true
		}
		h := tok.spare[len(tok.spare)-1]
		tok.spare = tok.spare[:len(tok.spare)-1]
		op = crashOp{kind: "attach", id: id, helper: h}

		m, _ := store.LookupModel(tok.devs[id].model)
		switch {
		case tok.devs[id].hasJob():
		case m.Units > 4: // the pool is 4 units
			want = []syscall.Errno{syscall.ENOSPC}
		default:
			want = []syscall.Errno{0, syscall.EAGAIN} // other tokens may hold the GPUs
		}
		err = writeCmd(dev(id, "procs"), strconv.Itoa(h.pid)+"\n")
	default:
		id, ok := tok.randomID(rng)
		if !ok {
			return true
		}
		op = crashOp{kind: "reset", id: id}
		if !tok.devs[id].hasJob() {
			want = []syscall.Errno{syscall.ESRCH}
		}
		err = writeCmd(dev(id, "reset"), "1\n")
	}
	run.ops.Add(1)
	op.refused = want != nil && !slices.Contains(want, 0)

	if err != nil && (dead(err) || run.killed.Load() && !slices.Contains(want, errnoOf(err))) {
		// In flight at the kill: it may or may not have committed.
		if !run.killed.Load() {
			tok.failures = append(tok.failures, fmt.Sprintf("%v: %s while the daemon was not killed", op, errnoName(err)))
		} else if !dead(err) {
			run.odd.Add(1)
		}
		tok.uncertain = &op
		return false
	}
	switch {
	case err == nil && (want == nil || slices.Contains(want, 0)):
		run.oks.Add(1)
	case err != nil && slices.Contains(want, errnoOf(err)):
		if op.kind == "attach" {
			tok.spare = append(tok.spare, op.helper)
		}
		return true
	default:
		tok.failures = append(tok.failures, fmt.Sprintf("%v: got %s, want %v", op, errnoName(err), want))
		if err != nil {
			if op.kind == "attach" {
				tok.spare = append(tok.spare, op.helper)
			}
			return true
		}
	}
	// A success: committed in one transaction before the answer came.
	if op.kind == "mkdir" {
		cur, err := os.ReadFile(filepath.Join(tok.dir, "current"))
		if err != nil {
			if !dead(err) {
				tok.failures = append(tok.failures, fmt.Sprintf("read current after %v: %v", op, err))
			}
			tok.createdID = &op // created; its id is learned after the restart
			return false
		}
		id, perr := strconv.ParseUint(strings.TrimSpace(string(cur)), 10, 64)
		if perr != nil {
			tok.failures = append(tok.failures, fmt.Sprintf("current after %v = %q", op, cur))
			return false
		}
		op.id = id
		if id <= op.floor {
			tok.failures = append(tok.failures, fmt.Sprintf("%v: new id %d is not above %d, an id seen before it", op, id, op.floor))
		}
		run.mu.Lock()
		if owner, reused := run.seen[id]; reused {
			tok.failures = append(tok.failures, fmt.Sprintf("%v: id %d was handed out before (to %s)", op, id, owner))
		}
		run.mu.Unlock()
		run.see(id, tok.name)
	}
	if op.kind == "rmdir" {
		run.mu.Lock()
		run.removed[op.id] = true
		run.mu.Unlock()
	}
	tok.apply(op)
	if op.kind == "attach" && op.helper.orphan != nil && rng.Intn(2) == 0 {
		switch left, err := op.helper.leave(); {
		case err != nil:
			tok.failures = append(tok.failures, fmt.Sprintf("%v: %v", op, err))
		case left:
			run.orphaned.Add(1)
		}
	}
	return true
}

func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	errors.As(err, &errno)
	return errno
}

// expected is what a token's files must show: its devices with their
// models and live attached processes, and current.
type expected struct {
	devs    map[uint64]devSnap
	current uint64
}

// expect renders the worker's model as the files would show it now.
func (tok *crashToken) expect() expected {
	e := expected{devs: map[uint64]devSnap{}, current: tok.current}
	for id, d := range tok.devs {
		var procs []int
		for _, h := range d.helpers {
			if h.alive() {
				procs = append(procs, h.pid)
			}
		}
		sort.Ints(procs)
		e.devs[id] = devSnap{Model: d.model, Procs: procs}
	}
	return e
}

// matches compares a token's files with an expectation (GPUs are checked
// by the invariants).
func (e expected) matches(s tokenSnap) bool {
	if s.Current != e.current || len(s.Devices) != len(e.devs) {
		return false
	}
	for id, want := range e.devs {
		got, ok := s.Devices[id]
		if !ok || got.Model != want.Model || !slices.Equal(got.Procs, want.Procs) {
			return false
		}
	}
	return true
}

// outcomes lists the states the token may be in after the restart, each
// with the operation that leads there from the model: nothing, or the one
// in flight at the kill (it committed or it did not).
func (tok *crashToken) outcomes(s tokenSnap) []struct {
	e  expected
	op *crashOp
} {
	var out []struct {
		e  expected
		op *crashOp
	}
	add := func(op *crashOp) {
		saved := tok.clone()
		if op != nil {
			tok.apply(*op)
		}
		out = append(out, struct {
			e  expected
			op *crashOp
		}{tok.expect(), op})
		tok.restore(saved)
	}
	// A create whose id was not learned: the one new id the files list.
	pendingCreate := func(op crashOp) *crashOp {
		for id := range s.Devices {
			if _, known := tok.devs[id]; !known {
				op.id = id
				return &op
			}
		}
		return nil
	}
	switch u := tok.uncertain; {
	case tok.createdID != nil: // it committed: only its id is to be found
		if op := pendingCreate(*tok.createdID); op != nil {
			add(op)
		}
	case u == nil || u.refused:
		add(nil)
	case u.kind == "mkdir":
		add(nil)
		if op := pendingCreate(*u); op != nil {
			add(op)
		}
	default:
		add(nil)
		add(u)
	}
	return out
}

type crashSaved struct {
	devs    map[uint64]crashDev
	current uint64
	uses    uint64
}

func (tok *crashToken) clone() crashSaved {
	s := crashSaved{devs: map[uint64]crashDev{}, current: tok.current, uses: tok.uses}
	for id, d := range tok.devs {
		c := *d
		c.helpers = slices.Clone(d.helpers)
		s.devs[id] = c
	}
	return s
}

func (tok *crashToken) restore(s crashSaved) {
	tok.devs = map[uint64]*crashDev{}
	for id, d := range s.devs {
		c := d
		tok.devs[id] = &c
	}
	tok.current, tok.uses = s.current, s.uses
}

// TestCrashRecovery: one worker per token creates, removes, switches,
// changes models and attaches processes (some of which leave a background
// child and exit, at once or while the daemon is down) as fast as it can, while the
// daemon is SIGKILLed at a random moment and restarted, round after round.
// After every restart the invariants hold and every operation that
// returned success is still there; at the end the bbolt file itself is
// checked. MOREH_CRASH_ROUNDS sets the rounds (default 50).
func TestCrashRecovery(t *testing.T) {
	rounds := envInt(t, "MOREH_CRASH_ROUNDS", 50)
	workers := envInt(t, "MOREH_CRASH_WORKERS", 4)
	seed := time.Now().UnixNano()
	if s := os.Getenv("MOREH_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (MOREH_CRASH_SEED repeats the kill moments and operations), %d rounds, %d workers", seed, rounds, workers)
	rng := rand.New(rand.NewSource(seed))
	began := time.Now()

	d := morehdtest.Start(t, "--gpus", "sim:4x64GB", "--max-devices", "5")
	openToOthers(t, d.Mount)
	hs := newHelpers(t)
	run := &crashRun{seen: map[uint64]string{}, removed: map[uint64]bool{}}
	var toks []*crashToken
	for i := range workers {
		name := "w" + strconv.Itoa(i)
		if err := os.Mkdir(d.Path("admin", "tokens", name), 0o700); err != nil {
			t.Fatal(err)
		}
		secret, err := os.ReadFile(d.Path("admin", "tokens", name, "secret"))
		if err != nil {
			t.Fatal(err)
		}
		// Shared: a second helper joins the device's job, as the model has it (devices are exclusive otherwise).
		if err := os.WriteFile(d.Path("admin", "tokens", name, "shared"), []byte("1\n"), 0); err != nil {
			t.Fatal(err)
		}
		tok := &crashToken{name: name, uid: 41000 + i, dir: d.Path("tokens", name), max: 5, devs: map[uint64]*crashDev{}}
		if err := asUser(tok.uid, func() error { return writeCmd(d.Path("token"), string(secret)) }); err != nil {
			t.Fatalf("bind uid %d to %s: %v", tok.uid, name, err)
		}
		toks = append(toks, tok)
	}

	kills := 0
	for round := 1; round <= rounds; round++ {
		for _, tok := range toks {
			for len(tok.spare) < 2 {
				var h *helper
				if rng.Intn(3) == 0 {
					h = hs.startOrphaner(t, tok.uid) // its job is held by a child it leaves
				} else {
					h = hs.start(t, tok.uid)
				}
				if h == nil {
					t.FailNow()
				}
				tok.spare = append(tok.spare, h)
			}
			tok.uncertain, tok.createdID = nil, nil
		}
		run.killed.Store(false)
		var wg sync.WaitGroup
		for i, tok := range toks {
			wg.Add(1)
			go func(seed int64) {
				defer wg.Done()
				runtime.LockOSThread() // never unlocked: the thread, and its fsuid, end with the goroutine
				syscall.Setfsgid(tok.uid)
				syscall.Setfsuid(tok.uid)
				rng := rand.New(rand.NewSource(seed))
				for !run.killed.Load() && tok.step(run, rng) {
				}
			}(seed + int64(round*workers+i))
		}
		<-time.After(time.Duration(20+rng.Intn(131)) * time.Millisecond) // a random moment of the work
		run.killed.Store(true)
		d.Kill()
		kills++
		wg.Wait()
		// While the daemon is down some jobs end: their processes exit; in
		// others the attached shell leaves a background child and exits.
		for _, tok := range toks {
			for _, dev := range tok.devs {
				if len(dev.helpers) > 0 && rng.Intn(3) == 0 {
					for _, h := range dev.helpers {
						h.kill()
					}
					continue
				}
				for _, h := range dev.helpers {
					if h.orphan != nil && !h.left && rng.Intn(2) == 0 {
						left, err := h.leave()
						if err != nil {
							t.Fatal(err)
						}
						if left {
							run.orphaned.Add(1)
						}
					}
				}
			}
		}
		d.Restart()
		verifyCrashRound(t, d, run, toks, round)
		if t.Failed() {
			t.Fatalf("round %d failed (seed %d); the daemon's errors:\n%s", round, seed, linesWith(d.Log(), "level=ERROR", 10))
		}
	}

	// The end: every job's processes exit, the GPUs all go back to the pool,
	// the daemon stops cleanly, and the bbolt file is checked directly.
	for _, tok := range toks {
		for _, dev := range tok.devs {
			for _, h := range dev.helpers {
				h.kill()
			}
		}
	}
	morehdtest.Eventually(t, 5*time.Second, "every GPU is back in the pool once every job's processes exit", func() bool {
		s, err := snapshot(d)
		if err != nil {
			return false
		}
		for _, g := range s.Pool {
			if g.Device != 0 {
				return false
			}
		}
		return true
	})
	d.Stop()
	checkBoltFile(t, d.DB, run, toks)

	summary := fmt.Sprintf("crash: %d rounds, %d operations (%d succeeded, %d cut by a kill of which %d had committed), %d kills, %d ids handed out, %d jobs held by a background child alone, invariants held, %v",
		rounds, run.ops.Load(), run.oks.Load(), run.inFlight, run.committed, kills, len(run.seen), run.orphaned.Load(), time.Since(began).Round(100*time.Millisecond))
	if t.Failed() {
		summary = strings.Replace(summary, "invariants held", "INVARIANTS BROKEN", 1)
	}
	t.Log(summary)
	fmt.Println(summary)
	if n := run.odd.Load(); n > 0 {
		t.Logf("%d operations failed at the kill with an errno other than ENOTCONN/ECONNABORTED (counted as interrupted)", n)
	}
}

// asUser runs fn on a thread whose filesystem uid and gid are uid's, so the
// daemon sees uid as the caller.
func asUser(uid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		syscall.Setfsgid(uid)
		syscall.Setfsuid(uid)
		errc <- fn()
	}()
	return <-errc
}

// verifyCrashRound waits for the restarted daemon's first reap and checks
// that each token shows one of the states its worker's operations allow,
// and that the invariants hold; then it brings the models up to date.
func verifyCrashRound(t *testing.T, d *morehdtest.Daemon, run *crashRun, toks []*crashToken, round int) {
	t.Helper()
	for _, tok := range toks {
		for _, f := range tok.failures {
			t.Errorf("round %d, token %s: %s", round, tok.name, f)
		}
		tok.failures = nil
	}
	deadline := time.Now().Add(5 * time.Second)
	var s treeSnap
	var err error
	var chosen map[string]*crashOp
	poll := time.NewTicker(20 * time.Millisecond) // a poll with a deadline: the first reap has no event to wait on
	defer poll.Stop()
	for {
		s, err = snapshot(d)
		if err == nil {
			chosen = map[string]*crashOp{}
			for _, tok := range toks {
				for _, o := range tok.outcomes(s.Tokens[tok.name]) {
					if o.e.matches(s.Tokens[tok.name]) {
						chosen[tok.name] = o.op
						if o.op == nil {
							chosen[tok.name] = &crashOp{kind: "none"}
						}
						break
					}
				}
			}
			if len(chosen) == len(toks) && len(s.violations(pidAlive)) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("round %d: the tree cannot be read after the restart: %v", round, err)
			}
			for _, tok := range toks {
				if chosen[tok.name] == nil {
					var outs []string
					for _, o := range tok.outcomes(s.Tokens[tok.name]) {
						outs = append(outs, fmt.Sprintf("%+v (after %v)", o.e, o.op))
					}
					t.Errorf("round %d, token %s: the files show %+v; the operations that returned success allow only:\n%s\n(uncertain: %v, created with unknown id: %v)",
						round, tok.name, s.Tokens[tok.name], strings.Join(outs, "\n"), tok.uncertain, tok.createdID)
				}
			}
			for _, v := range s.violations(pidAlive) {
				t.Errorf("round %d: %s", round, v)
			}
			t.Logf("daemon log:\n%s", d.Log())
			return
		}
		<-poll.C
	}

	// Ids: unique (checked above), never one that was removed, and each new
	// one above every id seen before its create began.
	run.mu.Lock()
	defer run.mu.Unlock()
	for _, tok := range toks {
		for id := range s.Tokens[tok.name].Devices {
			if run.removed[id] {
				t.Errorf("round %d: id %d, removed before, is back (token %s)", round, id, tok.name)
			}
			if owner, ok := run.seen[id]; ok && owner != tok.name {
				t.Errorf("round %d: id %d of token %s was %s's", round, id, tok.name, owner)
			}
		}
		op := chosen[tok.name]
		if tok.uncertain != nil || tok.createdID != nil {
			run.inFlight++
			if op.kind != "none" {
				run.committed++
			}
		}
		if op.kind == "mkdir" {
			if _, ok := run.seen[op.id]; ok || op.id <= op.floor {
				t.Errorf("round %d: the create that the kill interrupted made id %d: seen before, or not above %d", round, op.id, op.floor)
			}
		}
		if op.kind != "none" {
			tok.apply(*op)
		}
		if op.kind == "mkdir" {
			run.seen[op.id] = tok.name
			if op.id > run.maxSeen.Load() {
				run.maxSeen.Store(op.id)
			}
		}
		if op.kind == "rmdir" {
			run.removed[op.id] = true
		}
		// Helpers: those attached in the files stay; the rest are spare if alive.
		if op.kind != "attach" && tok.uncertain != nil && tok.uncertain.helper != nil && tok.uncertain.helper.alive() {
			tok.spare = append(tok.spare, tok.uncertain.helper)
		}
		for _, dev := range tok.devs {
			dev.helpers = slices.DeleteFunc(dev.helpers, func(h *helper) bool { return !h.alive() })
		}
	}
}

// checkBoltFile opens the stopped daemon's bbolt file read-only and checks
// it page by page and record by record against the invariants and the
// workers' models.
func checkBoltFile(t *testing.T, path string, run *crashRun, toks []*crashToken) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		bucket := func(name string) *bolt.Bucket {
			b := tx.Bucket([]byte(name))
			if b == nil {
				t.Fatalf("bucket %s is missing", name)
			}
			return b
		}
		next := binary.BigEndian.Uint64(bucket("meta").Get([]byte("next_device_id")))
		if max := run.maxSeen.Load(); next <= max {
			t.Errorf("next_device_id %d is not above %d, the largest id handed out", next, max)
		}
		tokens := map[string]store.Token{}
		bucket("tokens").ForEach(func(k, v []byte) error {
			var tok store.Token
			if err := json.Unmarshal(v, &tok); err != nil {
				t.Errorf("token %s: %v", k, err)
			}
			tokens[string(k)] = tok
			return nil
		})
		devices := map[uint64]store.Device{}
		bucket("devices").ForEach(func(k, v []byte) error {
			var dev store.Device
			if err := json.Unmarshal(v, &dev); err != nil {
				t.Errorf("device %x: %v", k, err)
			}
			devices[binary.BigEndian.Uint64(k)] = dev
			if dev.ID != binary.BigEndian.Uint64(k) || dev.ID >= next {
				t.Errorf("device record %x holds id %d (next id %d)", k, dev.ID, next)
			}
			return nil
		})
		byToken := map[string][]uint64{}
		bucket("token_devices").ForEach(func(k, _ []byte) error {
			name, idBytes, ok := strings.Cut(string(k), "\x00")
			if !ok || len(idBytes) != 8 {
				t.Errorf("index key %q", k)
				return nil
			}
			id := binary.BigEndian.Uint64([]byte(idBytes))
			if devices[id].Token != name {
				t.Errorf("index names device %d of %s; the device record says %q", id, name, devices[id].Token)
			}
			byToken[name] = append(byToken[name], id)
			return nil
		})
		indexed := 0
		for name, tok := range tokens {
			ids := byToken[name]
			indexed += len(ids)
			if len(ids) > tok.MaxDevices {
				t.Errorf("token %s holds %d devices, limit %d", name, len(ids), tok.MaxDevices)
			}
			if tok.Current != 0 && !slices.Contains(ids, tok.Current) {
				t.Errorf("token %s: current %d is none of %v", name, tok.Current, ids)
			}
		}
		if indexed != len(devices) {
			t.Errorf("%d device records, %d in the token index", len(devices), indexed)
		}
		if n := bucket("bindings").Stats().KeyN; n != 0 {
			t.Errorf("%d GPUs are still bound after every job's processes exited", n)
		}
		if n := bucket("jobs").Stats().KeyN; n != 0 {
			t.Errorf("%d jobs remain after every job's processes exited", n)
		}
		for id, dev := range devices {
			if dev.Job != 0 {
				t.Errorf("device %d still names job %d", id, dev.Job)
			}
		}
		// The workers' models, after the last restart, are the file exactly.
		for _, tok := range toks {
			ids := byToken[tok.name]
			slices.Sort(ids)
			if want := sortedKeys(tok.devs); !slices.Equal(ids, want) {
				t.Errorf("token %s holds %v in the file; its worker's successes leave %v", tok.name, ids, want)
			}
			for id, d := range tok.devs {
				if devices[id].Model != d.model {
					t.Errorf("device %d: model %q in the file, %q by the worker's successes", id, devices[id].Model, d.model)
				}
			}
			if tokens[tok.name].Current != tok.current {
				t.Errorf("token %s: current %d in the file, %d by the worker's successes", tok.name, tokens[tok.name].Current, tok.current)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
