package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// fuseSuperMagic is statfs's f_type of a FUSE mount.
const fuseSuperMagic = 0x65735546

// notifySystemd runs the daemon's side of Type=notify once the mount is
// ready (READY=1 itself goes with --ready-fd, in signalReady): when systemd
// set a watchdog (WATCHDOG_USEC), a goroutine sends WATCHDOG=1 every half
// interval while the tree answers a statfs, a round trip through the FUSE
// server's loop, so a hung daemon misses its pings and is restarted. When
// stopping ends (a signal), it sends STOPPING=1 and stops pinging. The
// returned func sends STOPPING=1 if that has not happened and joins the
// goroutine; call it as the daemon stops:
//
//	defer notifySystemd(ctx, cfg.mount, log)()
//
// Without NOTIFY_SOCKET every notification is a no-op.
func notifySystemd(stopping context.Context, mount string, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(stopping)
	var wg sync.WaitGroup
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog", "err", err)
	}
	if interval > 0 {
		log.Info("systemd watchdog", "interval", interval)
		wg.Add(1)
		go func() {
			defer wg.Done()
			watchdog(ctx, interval/2, func(timeout time.Duration) error { return fuseAnswersWithin(mount, timeout) },
				func(state string) { daemon.SdNotify(false, state) }, log)
		}()
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if _, err := daemon.SdNotify(false, daemon.SdNotifyStopping); err != nil {
				log.Warn("systemd notify", "state", daemon.SdNotifyStopping, "err", err)
			}
		})
	}
	wg.Add(1)
	go func() { defer wg.Done(); <-ctx.Done(); stop() }() // ends with ctx: cancel below
	return func() {
		cancel()
		stop()
		wg.Wait()
	}
}

// watchdog calls notify("WATCHDOG=1") every period while alive answers
// within the period, until ctx ends. A check that does not answer is not
// waited for again: the next ping waits for it to return, then for a fresh
// one to succeed.
func watchdog(ctx context.Context, period time.Duration, alive func(timeout time.Duration) error, notify func(string), log *slog.Logger) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	var pending chan error // the check under way, if it outlived its tick
	for {
		if pending == nil {
			pending = make(chan error, 1)
			go func(done chan<- error) { done <- alive(period) }(pending)
		}
		select {
		case <-ctx.Done():
			return
		case err := <-pending:
			pending = nil
			if err != nil {
				log.Warn("watchdog: the tree does not answer; no ping", "err", err)
			} else {
				notify(daemon.SdNotifyWatchdog)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		case <-tick.C:
			log.Warn("watchdog: the tree did not answer within the period; no ping", "period", period)
		}
	}
}

// fuseAnswersWithin asks the FUSE server for statfs of mount: an error if it
// fails, answers for another filesystem, or takes longer than timeout (the
// call itself may go on; it ends when the connection does).
func fuseAnswersWithin(mount string, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		var st syscall.Statfs_t
		err := syscall.Statfs(mount, &st)
		if err == nil && st.Type != fuseSuperMagic {
			err = fmt.Errorf("%s is not a FUSE mount (f_type %#x)", mount, st.Type)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("statfs %s: no answer within %v", mount, timeout)
	}
}
