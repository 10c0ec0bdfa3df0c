package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// jobPrefix names a job's leaf directory: <dir>/job-<id>.
const jobPrefix = "job-"

// wantControllers are enabled for the jobs where the hierarchy allows:
// memory and cpu for the figures, pids so a fork bomb stays a job's problem.
var wantControllers = []string{"memory", "cpu", "pids"}

// Manager is the cgroup subtree the daemon owns; its jobs are its leaves.
type Manager struct {
	dir         string
	controllers []string
	kept        keptFiles // the subtree's cpu.stat, read every sample
}

// New opens dir as the daemon's subtree, creating it if missing, and enables
// for its jobs whichever of memory, cpu and pids the parent chain allows.
// Controllers it cannot enable are not an error: Controllers says which are on.
func New(dir string) (*Manager, error) {
	dir = filepath.Clean(dir)
	if err := checkCgroup2(nearestExisting(dir)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the cgroup subtree %s: %w", dir, err)
	}
	if err := unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK); err != nil {
		return nil, fmt.Errorf("the cgroup subtree %s is not writable (delegate it to the daemon): %w", dir, err)
	}
	m := &Manager{dir: dir}
	m.controllers = enableControllers(dir)
	return m, nil
}

// Dir is the subtree's directory.
func (m *Manager) Dir() string { return m.dir }

// Controllers lists the controllers each job's cgroup gets, sorted.
func (m *Manager) Controllers() []string { return append([]string(nil), m.controllers...) }

// CPUUsec is the CPU time every job's processes used together, ever, in
// microseconds: the subtree's cpu.stat, which counts its removed jobs too,
// so it only grows, and stands still while no process of a job runs.
func (m *Manager) CPUUsec() (uint64, error) {
	v, ok, err := m.kept.readKeyed(filepath.Join(m.dir, "cpu.stat"), "usage_usec")
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of the jobs: %w", err)
	}
	if !ok {
		return 0, fmt.Errorf("read the CPU time of the jobs: no usage_usec in %s/cpu.stat", m.dir)
	}
	return v, nil
}

// Create makes the cgroup of a new job; it fails with os.ErrExist when one is there.
func (m *Manager) Create(jobID uint64) (*Group, error) {
	g := m.group(jobID)
	if err := os.Mkdir(g.path, 0o755); err != nil {
		return nil, fmt.Errorf("create the cgroup of job %d: %w", jobID, err)
	}
	return g, nil
}

// Open returns the existing cgroup of a job (a restart finds its jobs this way);
// it fails with os.ErrNotExist when there is none.
func (m *Manager) Open(jobID uint64) (*Group, error) {
	g := m.group(jobID)
	if err := checkCgroup2(g.path); err != nil {
		return nil, fmt.Errorf("open the cgroup of job %d: %w", jobID, err)
	}
	return g, nil
}

// List returns the ids of the jobs whose cgroups exist, in order.
func (m *Manager) List() ([]uint64, error) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("list the job cgroups of %s: %w", m.dir, err)
	}
	var ids []uint64
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), jobPrefix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(e.Name(), jobPrefix), 10, 64)
		if err != nil || e.Name() != jobPrefix+strconv.FormatUint(id, 10) {
			continue // not one of ours: leave it alone
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

func (m *Manager) group(jobID uint64) *Group {
	return &Group{id: jobID, path: filepath.Join(m.dir, jobPrefix+strconv.FormatUint(jobID, 10))}
}

// checkCgroup2 says whether path is a directory of a cgroup v2 hierarchy.
func checkCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%s is not in a cgroup v2 hierarchy (filesystem type %#x)", path, st.Type)
	}
	return nil
}

func nearestExisting(path string) string {
	for {
		if _, err := os.Stat(path); err == nil || path == "/" || path == "." {
			return path
		}
		path = filepath.Dir(path)
	}
}

// enableControllers writes +c to subtree_control from the hierarchy's root down
// to dir, one controller at a time so one refusal does not block the others,
// and returns the controllers dir's children get.
func enableControllers(dir string) []string {
	chain := []string{dir}
	for p := filepath.Dir(dir); p != "/" && checkCgroup2(p) == nil; p = filepath.Dir(p) {
		chain = append([]string{p}, chain...)
	}
	for _, c := range chain {
		avail := fields(readString(filepath.Join(c, "cgroup.controllers")))
		on := fields(readString(filepath.Join(c, "cgroup.subtree_control")))
		for _, want := range wantControllers {
			if contains(avail, want) && !contains(on, want) {
				// EBUSY: c holds processes (no internal processes); ENOENT/EINVAL: not available. Either way: not on.
				_ = os.WriteFile(filepath.Join(c, "cgroup.subtree_control"), []byte("+"+want), 0)
			}
		}
	}
	on := fields(readString(filepath.Join(dir, "cgroup.subtree_control")))
	sort.Strings(on)
	return on
}

func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func fields(s string) []string { return strings.Fields(s) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isNotExist is os.IsNotExist for the wrapped errors this package returns.
func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
