package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moreh-io/moreh/fs/node/cgroup"
)

// noCgroups is the --cgroup-root that asks for the /proc supervision.
const noCgroups = "none"

// openContainment returns the cgroup subtree jobs live in, and whether BPF
// device programs load, or a nil Manager and the reason jobs are
// supervised through /proc instead (background children can escape).
func openContainment(flag string, log *slog.Logger) (m *cgroup.Manager, noDevices bool, reason error) {
	if flag == noCgroups {
		return nil, false, errors.New("--cgroup-root none")
	}
	err := cgroup.Supported()
	switch {
	case errors.Is(err, cgroup.ErrNoDevicePrograms):
		noDevices = true
		log.Warn("jobs are cgroups without device isolation", "reason", err)
	case err != nil && flag == "":
		return nil, false, err
	}
	dir := flag
	if dir == "" {
		if dir, err = defaultCgroupDir(log); err != nil {
			return nil, false, err
		}
	}
	m, err = cgroup.New(dir)
	if err != nil {
		return nil, false, err
	}
	if err := lockSubtree(dir); err != nil {
		return nil, false, err
	}
	return m, noDevices, nil
}

// lockSubtree takes the subtree for this daemon for as long as it runs: a
// daemon kills the cgroups its store does not know, so two must never
// share one. The lock goes with the process.
func lockSubtree(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lock the cgroup subtree %s: %w", dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("another morehd owns the cgroup subtree %s: give this one its own --cgroup-root", dir)
		}
		return fmt.Errorf("lock the cgroup subtree %s: %w", dir, err)
	}
	return nil // fd stays open: the lock lasts the daemon's life
}

// defaultCgroupDir is the subtree "moreh" of the daemon's own cgroup where
// systemd delegated it (Delegate=yes marks it with the trusted.delegate or
// user.delegate attribute; the daemon then moves itself into the leaf
// "daemon" so that the subtree may enable controllers), else "moreh" under
// the cgroup v2 hierarchy's root (/sys/fs/cgroup, /sys/fs/cgroup/unified).
func defaultCgroupDir(log *slog.Logger) (string, error) {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	self, _ := os.ReadFile("/proc/self/cgroup") // unreadable: as if in the root
	l, err := findCgroupLayout(mountinfo, self, delegated)
	if err != nil {
		return "", err
	}
	if err := unix.Access(l.root, unix.W_OK); err != nil {
		return "", fmt.Errorf("the cgroup v2 hierarchy at %s is not writable: %w", l.root, err)
	}
	if l.daemonLeaf == "" {
		return l.dir, nil
	}
	if err := os.Mkdir(l.daemonLeaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("move the daemon within its delegated cgroup %s: %w", filepath.Dir(l.daemonLeaf), err)
	}
	if err := os.WriteFile(filepath.Join(l.daemonLeaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		log.Warn("staying in the delegated cgroup: jobs get no controllers", "cgroup", filepath.Dir(l.daemonLeaf), "err", err)
	}
	return l.dir, nil
}

// cgroupLayout is where the jobs' subtree goes by default.
type cgroupLayout struct {
	root       string // the cgroup v2 mount point
	dir        string // the jobs' subtree (--cgroup-root)
	daemonLeaf string // where the daemon moves itself first; "" when it stays
}

// findCgroupLayout reads the cgroup v2 mount from mountinfo and the
// daemon's cgroup from /proc/self/cgroup's text (its "0::" line); isDelegated
// says whether systemd delegated a cgroup directory to the daemon.
func findCgroupLayout(mountinfo, selfCgroup []byte, isDelegated func(dir string) bool) (cgroupLayout, error) {
	m, err := cgroup.FindCgroup2(mountinfo)
	if err != nil {
		return cgroupLayout{}, err
	}
	if slices.Contains(m.Options, "ro") {
		return cgroupLayout{}, fmt.Errorf("the cgroup v2 hierarchy at %s is mounted read-only", m.MountPoint)
	}
	l := cgroupLayout{root: m.MountPoint, dir: filepath.Join(m.MountPoint, "moreh")}
	own, ok := ownCgroup(m.MountPoint, selfCgroup)
	if ok && isDelegated(own) {
		l.dir, l.daemonLeaf = filepath.Join(own, "moreh"), filepath.Join(own, "daemon")
	}
	return l, nil
}

// ownCgroup is the daemon's cgroup v2 directory under root, from
// /proc/self/cgroup's text, when it is not the root.
func ownCgroup(root string, selfCgroup []byte) (string, bool) {
	for line := range strings.Lines(string(selfCgroup)) {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok && path != "/" && strings.HasPrefix(path, "/") {
			return filepath.Join(root, path), true
		}
	}
	return "", false
}

// delegated says whether systemd marked the cgroup as delegated to its service.
func delegated(dir string) bool {
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		if _, err := unix.Getxattr(dir, attr, nil); err == nil {
			return true
		}
	}
	return false
}
