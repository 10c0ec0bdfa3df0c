package fs

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// rejectLog coalesces the log lines of rejected secrets written to
// /moreh/token: a uid's first rejection is logged at once, and the ones
// that follow within the window are summed up in one line when it ends
// ("N rejected secrets from uid U in the last minute"), never a line each.
type rejectLog struct {
	log    *slog.Logger
	window time.Duration

	mu     sync.Mutex
	byUID  map[int]int // rejections since the uid's window opened, beyond the first
	timers map[int]*time.Timer
	closed bool
}

func newRejectLog(log *slog.Logger, window time.Duration) *rejectLog {
	if window <= 0 {
		window = time.Minute
	}
	return &rejectLog{log: log, window: window, byUID: map[int]int{}, timers: map[int]*time.Timer{}}
}

// add counts one rejected secret of uid; why is the registry's reason.
func (l *rejectLog) add(uid int, why error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if n, open := l.byUID[uid]; open {
		l.byUID[uid] = n + 1
		return
	}
	l.byUID[uid] = 0
	l.log.Warn("token rejected", "uid", uid, "err", why)
	l.timers[uid] = time.AfterFunc(l.window, func() { l.flush(uid) })
}

// flush ends uid's window with its summary line, if anything followed.
func (l *rejectLog) flush(uid int) {
	l.mu.Lock()
	n, closed := l.byUID[uid], l.closed
	delete(l.byUID, uid)
	delete(l.timers, uid)
	l.mu.Unlock()
	if n > 0 && !closed {
		l.log.Warn(fmt.Sprintf("%d rejected secrets from uid %d in the last %s", n, uid, windowName(l.window)), "uid", uid, "count", n)
	}
}

// close stops the windows when the tree is served no more: their counts
// are dropped, so that no line comes after the daemon's last.
func (l *rejectLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, timer := range l.timers {
		timer.Stop()
	}
}

// windowName says "minute" for the default window, else the duration.
func windowName(d time.Duration) string {
	if d == time.Minute {
		return "minute"
	}
	return d.String()
}
