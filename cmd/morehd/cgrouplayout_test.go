package main

import (
	"errors"
	"testing"

	"github.com/moreh-io/moreh/fs/node/cgroup"
)

// Mount tables as /proc/self/mountinfo shows them on the kinds of host.
const (
	hybridMounts = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
28 26 0:26 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
31 26 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
`
	unifiedMounts = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	v1OnlyMounts = `26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
31 26 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
32 26 0:30 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,devices
`
	readOnlyMounts = `26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw
`
)

// TestCgroupLayout: the default --cgroup-root on each kind of host, from
// its mount table and the daemon's /proc/self/cgroup: moreh under the
// daemon's own cgroup where systemd delegated it (the daemon moving into
// the leaf "daemon"), else moreh under the unified hierarchy's root.
func TestCgroupLayout(t *testing.T) {
	unit := "/system.slice/morehd.service"
	for _, tc := range []struct {
		name, mounts, self string
		delegated          string // the one directory systemd delegated
		want               cgroupLayout
		wantErr            error // errors.Is; nil: none
		wantErrText        string
	}{
		{name: "hybrid, run by hand", mounts: hybridMounts, self: "12:memory:/user.slice\n1:name=systemd:/user.slice\n0::/\n",
			want: cgroupLayout{root: "/sys/fs/cgroup/unified", dir: "/sys/fs/cgroup/unified/moreh"}},
		{name: "hybrid, systemd unit with Delegate=yes", mounts: hybridMounts, self: "1:name=systemd:" + unit + "\n0::" + unit + "\n",
			delegated: "/sys/fs/cgroup/unified" + unit,
			want: cgroupLayout{root: "/sys/fs/cgroup/unified", dir: "/sys/fs/cgroup/unified" + unit + "/moreh",
				daemonLeaf: "/sys/fs/cgroup/unified" + unit + "/daemon"}},
		{name: "unified, systemd unit with Delegate=yes", mounts: unifiedMounts, self: "0::" + unit + "\n",
			delegated: "/sys/fs/cgroup" + unit,
			want:      cgroupLayout{root: "/sys/fs/cgroup", dir: "/sys/fs/cgroup" + unit + "/moreh", daemonLeaf: "/sys/fs/cgroup" + unit + "/daemon"}},
		{name: "unified, systemd unit without Delegate", mounts: unifiedMounts, self: "0::" + unit + "\n",
			want: cgroupLayout{root: "/sys/fs/cgroup", dir: "/sys/fs/cgroup/moreh"}},
		{name: "unified, in a user's session", mounts: unifiedMounts, self: "0::/user.slice/user-0.slice/session-3.scope\n",
			want: cgroupLayout{root: "/sys/fs/cgroup", dir: "/sys/fs/cgroup/moreh"}},
		{name: "unified, /proc/self/cgroup unreadable", mounts: unifiedMounts, self: "",
			want: cgroupLayout{root: "/sys/fs/cgroup", dir: "/sys/fs/cgroup/moreh"}},
		{name: "unified, a container's root", mounts: unifiedMounts, self: "0::/\n",
			want: cgroupLayout{root: "/sys/fs/cgroup", dir: "/sys/fs/cgroup/moreh"}},
		{name: "no cgroup2", mounts: v1OnlyMounts, self: "4:memory:/\n", wantErr: cgroup.ErrNoCgroup2},
		{name: "cgroup2 read-only", mounts: readOnlyMounts, self: "0::/\n", wantErrText: "the cgroup v2 hierarchy at /sys/fs/cgroup is mounted read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findCgroupLayout([]byte(tc.mounts), []byte(tc.self), func(dir string) bool { return dir == tc.delegated })
			switch {
			case tc.wantErr != nil || tc.wantErrText != "":
				if err == nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) || tc.wantErrText != "" && err.Error() != tc.wantErrText {
					t.Errorf("findCgroupLayout = %+v, %v; want the error %v%s", got, err, tc.wantErr, tc.wantErrText)
				}
			case err != nil || got != tc.want:
				t.Errorf("findCgroupLayout = %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}
