package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// prepareMountpoint creates dir if missing and clears the stale mount a
// killed daemon leaves behind ("transport endpoint is not connected").
func prepareMountpoint(dir string, log *slog.Logger) error {
	_, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		log.Warn("clearing a stale mount", "mount", dir)
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("clear the stale mount on %s: %w (try: umount -l %s)", dir, err, dir)
		}
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create the mountpoint %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	return nil
}

// unmount detaches the mount, lazily if a process still has it open so that
// stopping never hangs on a shell whose cwd is inside.
func unmount(server *fuse.Server, dir string, log *slog.Logger) {
	if err := server.Unmount(); err != nil {
		log.Warn("unmount busy; detaching", "mount", dir, "err", err)
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			log.Error("detach failed", "mount", dir, "err", err)
		}
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
