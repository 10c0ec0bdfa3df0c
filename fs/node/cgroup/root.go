package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/self/mountinfo, the fields this package needs.
type Mount struct {
	Dev        string // the filesystem's major:minor (a FUSE mount's minor names its connection)
	Root       string // the mounted subtree of the filesystem ("/" unless bind- or namespace-mounted)
	MountPoint string
	FSType     string
	Options    []string // per-mount options ("rw", "nosuid", ...)
}

// ErrNoCgroup2 says the machine has no cgroup v2 (unified) hierarchy mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 (unified) hierarchy is mounted")

// FindRoot returns the mount point of the cgroup v2 hierarchy, checked writable:
// /sys/fs/cgroup on a systemd host, /sys/fs/cgroup/unified on a hybrid one.
func FindRoot() (string, error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	m, err := FindCgroup2(info)
	if err != nil {
		return "", err
	}
	if hasOption(m.Options, "ro") {
		return "", fmt.Errorf("the cgroup v2 hierarchy at %s is mounted read-only", m.MountPoint)
	}
	if err := unix.Access(m.MountPoint, unix.W_OK); err != nil {
		return "", fmt.Errorf("the cgroup v2 hierarchy at %s is not writable: %w", m.MountPoint, err)
	}
	return m.MountPoint, nil
}

// FindCgroup2 returns the first cgroup2 mount in mountinfo's text.
func FindCgroup2(mountinfo []byte) (Mount, error) {
	mounts, err := ParseMountinfo(mountinfo)
	if err != nil {
		return Mount{}, err
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			return m, nil
		}
	}
	return Mount{}, ErrNoCgroup2
}

// MountOn returns the mount on top at dir in mountinfo's text (later lines
// are mounted over earlier ones).
func MountOn(mountinfo []byte, dir string) (Mount, bool) {
	mounts, err := ParseMountinfo(mountinfo)
	if err != nil {
		return Mount{}, false
	}
	for _, m := range slices.Backward(mounts) {
		if m.MountPoint == dir {
			return m, true
		}
	}
	return Mount{}, false
}

// ParseMountinfo reads the format of proc(5)'s /proc/<pid>/mountinfo:
// "id parent major:minor root mountpoint options [optional...] - fstype source superoptions".
func ParseMountinfo(data []byte) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, " ") // the kernel's separator; other whitespace is part of a field
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+1 >= len(f) || hasEmpty(f[:6]) || f[sep+1] == "" {
			return nil, fmt.Errorf("mountinfo line %d: %q is not id parent dev root mountpoint options ... - fstype ...", n, line)
		}
		mounts = append(mounts, Mount{
			Dev:        f[2],
			Root:       unescapeOctal(f[3]),
			MountPoint: unescapeOctal(f[4]),
			FSType:     unescapeOctal(f[sep+1]),
			Options:    strings.Split(f[5], ","),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return mounts, nil
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline and backslash.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			if s[i+1] <= '3' { // \400 and above do not fit a byte: keep them as written
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

func hasEmpty(fields []string) bool {
	for _, f := range fields {
		if f == "" {
			return true
		}
	}
	return false
}
