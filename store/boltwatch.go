package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The state file is watched: when its path no longer names the open
// database (the file was unlinked, replaced or moved while the daemon ran),
// every later write fails with KindIO, and a sentence, rather than go on
// into a file that nobody will open again. The path is checked before each
// commit and once a second, so that the daemon can say so even while
// nothing is written (Lost).

// stateWatchEvery is how often the state file's path is checked between writes.
const stateWatchEvery = time.Second

// stateWatch compares the path of the open database with the file itself.
type stateWatch struct {
	path     string
	dev, ino uint64

	mu   sync.Mutex
	err  error         // set once the path stops naming the database; never cleared
	lost chan struct{} // closed when err is set
	stop chan struct{} // closed by close: the watcher ends
	done chan struct{} // closed when the watcher has ended
}

func newStateWatch(path string) (*stateWatch, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("stat the state file: %w", err)
	}
	w := &stateWatch{path: path, dev: uint64(st.Dev), ino: st.Ino, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *stateWatch) run() {
	defer close(w.done)
	tick := time.NewTicker(stateWatchEvery)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
			if w.check() != nil {
				return
			}
		}
	}
}

// check returns the failure of every write once the path no longer names
// the open database.
func (w *stateWatch) check() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	var st syscall.Stat_t
	err := syscall.Stat(w.path, &st)
	var what string
	switch {
	case err == nil && uint64(st.Dev) == w.dev && st.Ino == w.ino:
		return nil
	case err == nil:
		what = "replaced by another file"
	case os.IsNotExist(err):
		what = "removed or moved away"
	default:
		return nil // cannot tell (a permission change): the file itself is still written
	}
	w.err = &Error{Kind: KindIO, Msg: fmt.Sprintf("The state file %s was %s while morehd ran: nothing more is written to it, since no restart would open it. %s", w.path, what, w.recovery())}
	close(w.lost)
	return w.err
}

// recovery says how to get the open database back.
func (w *stateWatch) recovery() string {
	if fd := w.openFD(); fd != "" {
		return fmt.Sprintf("To keep every change: cp %s %s.recovered while morehd still runs, stop morehd, move %s.recovered to %s and start it again.", fd, w.path, w.path, w.path)
	}
	return fmt.Sprintf("Stop morehd, put the state file back at %s, and start it again.", w.path)
}

// openFD finds this process's descriptor of the open database, through
// which its content can still be copied.
func (w *stateWatch) openFD() string {
	dir := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		var st syscall.Stat_t
		p := filepath.Join(dir, e.Name())
		if syscall.Stat(p, &st) == nil && uint64(st.Dev) == w.dev && st.Ino == w.ino {
			return p
		}
	}
	return ""
}

func (w *stateWatch) close() {
	close(w.stop)
	<-w.done
}

// Watched is an Engine whose state can go away under it (bbolt's file).
type Watched interface {
	// Lost is closed once the state can no longer be written; LostErr
	// then says why and how to recover.
	Lost() <-chan struct{}
	LostErr() error
}

var _ Watched = (*boltEngine)(nil)

func (e *boltEngine) Lost() <-chan struct{} { return e.watch.lost }

func (e *boltEngine) LostErr() error {
	e.watch.mu.Lock()
	defer e.watch.mu.Unlock()
	return e.watch.err
}
