package cgroup

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watcher reports, on the kernel's inotify event, each watched job whose
// cgroup became empty. One goroutine reads the inotify fd through Go's
// netpoller (no polling); another hands the reports to Empty's reader, so a
// slow reader never stalls the kernel's queue.
type Watcher struct {
	fd    int      // the inotify fd for add and rm (File.Fd would make it blocking)
	file  *os.File // the same fd, read through the netpoller
	empty chan uint64
	done  chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	byWD    map[int32]*watch
	byJob   map[uint64]*watch
	pending []uint64            // jobs found empty, in order, not yet handed over
	queued  map[uint64]struct{} // the members of pending
	wake    chan struct{}       // capacity 1: pending grew
}

// ErrWatcherClosed answers Watch after Close.
var ErrWatcherClosed = errors.New("the cgroup watcher is closed")

type watch struct {
	group *Group
	wd    int32
}

// NewWatcher starts a watcher; Close stops it.
func NewWatcher() (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("start watching job cgroups: inotify: %w", err)
	}
	w := &Watcher{
		fd:     fd,
		file:   os.NewFile(uintptr(fd), "inotify"),
		empty:  make(chan uint64),
		done:   make(chan struct{}),
		byWD:   map[int32]*watch{},
		byJob:  map[uint64]*watch{},
		queued: map[uint64]struct{}{},
		wake:   make(chan struct{}, 1),
	}
	w.wg.Add(2)
	go w.read()
	go w.deliver()
	return w, nil
}

// Empty delivers the id of a watched job each time an event finds its cgroup
// empty. Events the kernel merges (a job refilled and emptied again before the
// watcher reads) still give one report; a report may repeat, so the reader
// acts on the job's state, not on the count.
func (w *Watcher) Empty() <-chan uint64 { return w.empty }

// Watch reports g on Empty when it empties. A job already empty when Watch
// looks (its processes exited before the watch) is reported at once; watching
// a watched job looks again.
func (w *Watcher) Watch(g *Group) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrWatcherClosed
	}
	if wt, ok := w.byJob[g.id]; ok {
		w.check(wt)
		return nil
	}
	wd, err := unix.InotifyAddWatch(w.fd, g.file("cgroup.events"), unix.IN_MODIFY)
	if err != nil {
		return fmt.Errorf("watch job %d: %w", g.id, err)
	}
	wt := &watch{group: g, wd: int32(wd)}
	w.byWD[wt.wd] = wt
	w.byJob[g.id] = wt
	w.check(wt) // an exit before the watch raised no event to wait for
	return nil
}

// Unwatch stops reporting the job; a report already queued may still arrive.
func (w *Watcher) Unwatch(jobID uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.byJob[jobID]
	if !ok || w.closed {
		return nil
	}
	delete(w.byJob, jobID)
	delete(w.byWD, wt.wd)
	if _, err := unix.InotifyRmWatch(w.fd, uint32(wt.wd)); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unwatch job %d: %w", jobID, err) // EINVAL: the cgroup was removed, and the watch with it
	}
	return nil
}

// Close stops the watcher and waits for its goroutines.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.done)
	err := w.file.Close() // wakes the reader's Read
	w.wg.Wait()
	return err
}

// check queues the job when its cgroup reads empty; w.mu is held.
func (w *Watcher) check(wt *watch) {
	populated, err := wt.group.Populated()
	switch {
	case isNotExist(err):
		// removed: rmdir succeeds only on an empty cgroup, so it is empty
	case err != nil, populated:
		return // a failed read is never taken for an exit: a live job must not be released
	}
	if _, ok := w.queued[wt.group.id]; !ok {
		w.queued[wt.group.id] = struct{}{}
		w.pending = append(w.pending, wt.group.id)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// read turns inotify events into checks until Close.
func (w *Watcher) read() {
	defer w.wg.Done()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return // closed; any other error leaves nothing to read either
		}
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			wt, ok := w.byWD[ev.Wd]
			if !ok {
				continue
			}
			if ev.Mask&unix.IN_IGNORED != 0 { // the cgroup was removed
				delete(w.byWD, ev.Wd)
				if w.byJob[wt.group.id] == wt {
					delete(w.byJob, wt.group.id)
				}
				continue
			}
			w.check(wt)
		}
		w.mu.Unlock()
	}
}

// deliver hands queued reports to Empty's reader until Close.
func (w *Watcher) deliver() {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		var id uint64
		have := len(w.pending) > 0
		if have {
			id = w.pending[0]
		}
		w.mu.Unlock()
		if !have {
			select {
			case <-w.wake:
				continue
			case <-w.done:
				return
			}
		}
		w.mu.Lock()
		if len(w.pending) > 0 && w.pending[0] == id { // TakePending may have taken it meanwhile
			w.pending = w.pending[1:]
			delete(w.queued, id)
		}
		w.mu.Unlock()
		select {
		case w.empty <- id: // taken off the queue before: an event meanwhile queues it again
		case <-w.done:
			return
		}
	}
}

// TakePending returns, and removes from the queue, every report not yet
// delivered on Empty: a reader that got one takes the others at once, so
// that jobs that ended together are released together.
func (w *Watcher) TakePending() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.pending
	w.pending = nil
	clear(w.queued)
	return ids
}
