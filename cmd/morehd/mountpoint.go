package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moreh-io/moreh/fs/node/cgroup"
)

// prepareMountpoint creates dir if missing and clears the stale mount a
// killed daemon leaves behind ("transport endpoint is not connected"). It
// refuses a dir that is not a directory or that a live morehd serves, and a
// machine without /dev/fuse, each with one sentence that names the fix.
func prepareMountpoint(dir string, log *slog.Logger) error {
	// statfs always asks the server; stat may be answered from the root's
	// cached attributes even after the daemon died.
	err := statfsWithin(dir, mountpointAnswerWait)
	if errors.Is(err, errMountHung) {
		return fmt.Errorf("the mountpoint %s does not answer within %v: the daemon serving it is stopped or hung; end it (kill -CONT, or kill -KILL its pid) or detach the mount (umount -l %s), then start again%s", dir, mountpointAnswerWait, dir, abortHint(dir))
	}
	if errors.Is(err, syscall.ENOTCONN) {
		log.Warn("clearing a stale mount", "mount", dir)
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("clear the stale mount on %s: %w (try: umount -l %s)", dir, err, dir)
		}
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create the mountpoint %s: %v (give --mount a directory that can be created)", dir, pathCause(err))
		}
	case err != nil:
		return fmt.Errorf("the mountpoint %s cannot be used: %v (give --mount a directory)", dir, pathCause(err))
	case !fi.IsDir():
		return fmt.Errorf("the mountpoint %s is not a directory: remove it, or give --mount a directory", dir)
	case servedByMorehd(dir):
		return fmt.Errorf("%s is already mounted by another morehd: stop it (or umount %s), or give --mount another directory", dir, dir)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("cannot mount %s: /dev/fuse is missing: load the fuse module (modprobe fuse), or give this container the device (--device /dev/fuse)", dir)
	}
	return nil
}

// pathCause is the cause of a *PathError without the path it repeats.
func pathCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// servedByMorehd reports whether the topmost mount on dir is a moreh tree
// (that answers: a stale one fails statfs with ENOTCONN and is cleared first).
// Mounting over it would hide it and leave two daemons unmounting each
// other's trees.
func servedByMorehd(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	m, ok := topMount(abs)
	return ok && m.FSType == "fuse.moreh"
}

// topMount is the mount on abs that is on top (later lines of mountinfo are
// mounted over earlier ones).
func topMount(abs string) (cgroup.Mount, bool) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cgroup.Mount{}, false
	}
	return cgroup.MountOn(info, abs)
}

// abortHint names the file that aborts the FUSE connection of the mount on
// dir: the way out when a killed daemon cannot exit (a thread of it waits in
// the kernel for a directory that a request it will never answer holds).
func abortHint(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	m, ok := topMount(abs)
	_, minor, cut := strings.Cut(m.Dev, ":")
	if !ok || !cut || !strings.HasPrefix(m.FSType, "fuse") {
		return ""
	}
	return fmt.Sprintf("; if its daemon was killed and does not exit, abort the connection: echo 1 > /sys/fs/fuse/connections/%s/abort", minor)
}

// stopGrace is how long stopping waits for processes that still hold the
// lazily detached mount (an open file, a shell whose cwd is inside) before
// it closes the connection under them.
const stopGrace = time.Second

// unmount detaches the mount, lazily if a process still has it open, and
// returns once the tree is served no more: a shell whose cwd is inside
// never keeps the daemon from stopping. done closes when the server ends.
func unmount(server *fuse.Server, dir string, log *slog.Logger, done <-chan struct{}) {
	var st syscall.Stat_t
	statErr := syscall.Stat(dir, &st) // the connection's device, before the path leaves it
	if err := server.Unmount(); err == nil {
		<-done
		return
	}
	log.Warn("the mount is busy; detaching it", "mount", dir)
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		log.Error("detach failed", "mount", dir, "err", err)
	}
	select {
	case <-done:
		return
	case <-time.After(stopGrace):
	}
	// Still held open: abort the connection through fusectl, so that the
	// holders see ENOTCONN and the server's loops end. Without fusectl the
	// exit of this process closes the connection all the same.
	if statErr == nil {
		dev := uint64(st.Dev)
		major := (dev>>8)&0xfff | (dev>>32)&^0xfff
		minor := dev&0xff | (dev>>12)&^0xff
		abort := filepath.Join("/sys/fs/fuse/connections", strconv.FormatUint(major<<20|minor, 10), "abort")
		if err := os.WriteFile(abort, []byte("1"), 0); err == nil {
			log.Warn("closed the connection of the still-open mount", "mount", dir)
		}
	}
	select {
	case <-done:
	case <-time.After(stopGrace):
		log.Warn("the mount is still held; exiting anyway", "mount", dir)
	}
}

// signalReady tells whoever started the daemon that the mount answers: on
// --ready-fd, and to systemd when NOTIFY_SOCKET is set.
func signalReady(fd int, log *slog.Logger) {
	if fd >= 0 {
		f := os.NewFile(uintptr(fd), "ready-fd")
		if _, err := f.WriteString("ready\n"); err != nil {
			log.Warn("ready-fd", "fd", fd, "err", err)
		}
		f.Close()
	}
	if sock := os.Getenv("NOTIFY_SOCKET"); sock != "" {
		conn, err := net.Dial("unixgram", sock)
		if err == nil {
			conn.Write([]byte("READY=1"))
			conn.Close()
		}
	}
}
