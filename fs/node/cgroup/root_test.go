package cgroup

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const hybridHost = `23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const systemdHost = `22 26 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
26 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
27 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

func TestFindCgroup2(t *testing.T) {
	for _, tc := range []struct {
		name, info string
		want       Mount
		err        error
	}{
		{"hybrid", hybridHost, Mount{Dev: "0:38", Root: "/", MountPoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Options: []string{"rw", "relatime"}}, nil},
		{"systemd", systemdHost, Mount{Dev: "0:26", Root: "/", MountPoint: "/sys/fs/cgroup", FSType: "cgroup2", Options: []string{"rw", "nosuid", "nodev", "noexec", "relatime"}}, nil},
		{"no cgroup2", "26 1 259:2 / / rw - ext4 /dev/sda rw\n32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", Mount{}, ErrNoCgroup2},
		{"empty", "", Mount{}, ErrNoCgroup2},
		{"escaped space and backslash", `50 26 0:40 /a\134b /mnt/my\040cgroups ro,relatime - cgroup2 cgroup2 rw` + "\n",
			Mount{Dev: "0:40", Root: `/a\b`, MountPoint: "/mnt/my cgroups", FSType: "cgroup2", Options: []string{"ro", "relatime"}}, nil},
		{"escaped tab, newline, and a backslash that is no escape", `50 26 0:40 / /m\011n\012o\p\9 rw - cgroup2 none rw` + "\n",
			Mount{Dev: "0:40", Root: "/", MountPoint: "/m\tn\no\\p\\9", FSType: "cgroup2", Options: []string{"rw"}}, nil},
		{"optional fields before the separator", "27 22 0:26 / /cg rw shared:4 master:1 - cgroup2 cgroup2 rw\n",
			Mount{Dev: "0:26", Root: "/", MountPoint: "/cg", FSType: "cgroup2", Options: []string{"rw"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FindCgroup2([]byte(tc.info))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("FindCgroup2 = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseMountinfoRejectsBrokenLines(t *testing.T) {
	for _, line := range []string{
		"26 1 259:2 / / rw ext4 /dev/sda rw", // no separator
		"26 1 259:2 / / rw -",                // nothing after it
		"26 1 259:2 /",                       // too short
	} {
		if _, err := ParseMountinfo([]byte(line + "\n")); err == nil {
			t.Errorf("ParseMountinfo(%q) = nil error, want one", line)
		}
	}
}

func TestFindRootIsCgroup2(t *testing.T) {
	root, err := FindRoot()
	if err != nil {
		t.Skipf("no writable cgroup v2 hierarchy: %v", err)
	}
	if err := checkCgroup2(root); err != nil {
		t.Fatalf("FindRoot = %s: %v", root, err)
	}
	if err := Supported(); err != nil {
		t.Errorf("Supported() = %v on a machine with a writable cgroup v2 at %s", err, root)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte(hybridHost))
	f.Add([]byte(systemdHost))
	f.Add([]byte("\r\v\u0085"))
	f.Add([]byte(`50 26 0:40 /a\134b /mnt/my\040cgroups ro - cgroup2 cgroup2 rw`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any path the kernel escapes comes back as it was.
		path := "/" + string(data)
		line := "1 0 0:1 / " + escapeOctal(path) + " rw - cgroup2 cgroup2 rw\n"
		if m, err := FindCgroup2([]byte(line)); err != nil || m.MountPoint != path {
			t.Fatalf("mount point %q escaped as %q parsed as %q, %v", path, line, m.MountPoint, err)
		}
		mounts, err := ParseMountinfo(data)
		if err != nil {
			return
		}
		for _, m := range mounts {
			if m.FSType == "" || m.MountPoint == "" || len(m.Options) == 0 {
				t.Fatalf("parsed %+v from %q: an empty field", m, data)
			}
		}
		if m, err := FindCgroup2(data); err == nil && m.FSType != "cgroup2" {
			t.Fatalf("FindCgroup2 returned a %s mount", m.FSType)
		}
	})
}

// escapeOctal is the kernel's mangle(): space, tab, newline and backslash as \ooo.
func escapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
