package store

import (
	"sync"
	"time"
)

// Binding is throttled per uid: after a rejected secret, the uid's next
// attempts are refused (KindKeyRejected: EKEYREJECTED) without a look at the store
// until a delay has passed, which doubles with each further rejected
// secret, from bindDelayMin to bindDelayMax. A bound secret clears it.
// Root is never throttled: it can read every secret anyway. The
// state lives in this daemon's memory: a restart forgets it, and so does
// another node of a cluster.
const (
	bindDelayMin = 100 * time.Millisecond
	bindDelayMax = time.Minute
)

// bindThrottle is the throttle of every uid's binding attempts.
type bindThrottle struct {
	mu    sync.Mutex
	byUID map[int]*uidThrottle
}

type uidThrottle struct {
	delay time.Duration // the current delay; doubles on each checked rejection
	until time.Time     // attempts before this are refused unchecked
}

// admit reports whether uid's attempt at now may be checked, and if not,
// how long the uid still has to wait.
func (b *bindThrottle) admit(uid int, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.byUID[uid]
	if uid == 0 || u == nil || !now.Before(u.until) {
		return true, 0
	}
	return false, u.until.Sub(now)
}

// rejected records a checked attempt of uid that failed at now.
func (b *bindThrottle) rejected(uid int, now time.Time) {
	if uid == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byUID == nil {
		b.byUID = map[int]*uidThrottle{}
	}
	for id, u := range b.byUID { // forget uids that stayed quiet for a while
		if now.Sub(u.until) > 2*bindDelayMax {
			delete(b.byUID, id)
		}
	}
	u := b.byUID[uid]
	if u == nil {
		u = &uidThrottle{}
		b.byUID[uid] = u
	}
	u.delay = min(max(2*u.delay, bindDelayMin), bindDelayMax)
	u.until = now.Add(u.delay)
}

// bound clears uid's throttle after a secret that bound.
func (b *bindThrottle) bound(uid int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.byUID, uid)
}
