package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltEngine is the single-machine Engine: one bbolt file.
type boltEngine struct {
	db    *bolt.DB
	watch *stateWatch // the path still names db (boltwatch.go)

	mu         sync.Mutex
	queue      []*boltCall // transactions waiting for the next commit
	committing bool        // a caller is committing a batch
	closeOnce  sync.Once
}

// boltCall is one Update waiting in the queue.
type boltCall struct {
	fn   func(Tx) error
	done chan error    // its result
	lead chan struct{} // closed when it is to commit the next batch
}

var _ Engine = (*boltEngine)(nil)

// OpenBolt opens (creating if needed) the bbolt file at path with every
// bucket of the schema. A file locked by another process fails after lockWait.
func OpenBolt(path string, lockWait time.Duration) (Engine, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create the state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	watch, err := newStateWatch(path)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &boltEngine{db: db, watch: watch}, nil
}

// Update runs fn in a read-write transaction. Concurrent callers share
// commits, and so the fsyncs: a caller that finds no commit running commits
// every fn queued by then in one bbolt transaction; calls that queue
// meanwhile wait, and the first of them commits the next batch. A lone caller
// commits at once. fn may run more than once (see commit), as with bbolt's
// own Batch: every fn in this package resets what it returns.
func (e *boltEngine) Update(_ context.Context, fn func(Tx) error) error {
	// ctx is not consulted: a local commit cannot hang, and a signal that
	// interrupts the caller (a Go program's preemption, a shell's SIGCHLD)
	// must not fail a command that would have taken microseconds.
	c := &boltCall{fn: fn, done: make(chan error, 1), lead: make(chan struct{})}
	e.mu.Lock()
	e.queue = append(e.queue, c)
	if e.committing {
		e.mu.Unlock()
		select {
		case err := <-c.done:
			return err
		case <-c.lead:
		}
		e.mu.Lock()
	}
	e.committing = true
	batch := e.queue
	e.queue = nil
	e.mu.Unlock()

	e.commit(batch)

	e.mu.Lock()
	if len(e.queue) > 0 {
		close(e.queue[0].lead)
	} else {
		e.committing = false
	}
	e.mu.Unlock()
	return <-c.done
}

// commit runs batch in one transaction and answers each call. When a fn
// fails, the transaction is rolled back: that fn runs again alone, so that
// its error is its own, and the others run again together.
func (e *boltEngine) commit(batch []*boltCall) {
	if err := e.watch.check(); err != nil {
		for _, c := range batch {
			c.done <- err
		}
		return
	}
	for len(batch) > 0 {
		failed := -1
		err := e.db.Update(func(tx *bolt.Tx) error {
			for i, c := range batch {
				if err := c.run(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 || len(batch) == 1 {
			for _, c := range batch {
				c.done <- err
			}
			return
		}
		c := batch[failed]
		c.done <- e.db.Update(c.run)
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

// run calls fn, its panic becoming its error, so that one bad transaction
// cannot stall the callers queued behind it.
func (c *boltCall) run(tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: a transaction panicked: %v", p)
		}
	}()
	return c.fn(newBoltTx(tx))
}

func (e *boltEngine) View(_ context.Context, fn func(Tx) error) error {
	return e.db.View(func(tx *bolt.Tx) error { return fn(newBoltTx(tx)) })
}

func (e *boltEngine) Close() error {
	e.closeOnce.Do(e.watch.close)
	return e.db.Close()
}

// ServerVersion is empty: with bbolt the daemon itself is the server.
func (e *boltEngine) ServerVersion(context.Context) (string, error) { return "", nil }

type boltTx struct {
	tx *bolt.Tx
	// open holds the buckets used so far, in allBuckets' order: in a
	// read-only transaction bbolt opens a bucket anew at each use, and
	// allocates a cursor at each Get.
	open []boltBucket
}

// boltBucket is a bucket of a transaction, with the cursor its Gets share.
type boltBucket struct {
	b    *bolt.Bucket
	seek *bolt.Cursor // only in read-only transactions: a write moves what it points to
}

func newBoltTx(tx *bolt.Tx) boltTx {
	return boltTx{tx: tx, open: make([]boltBucket, len(allBuckets))}
}

func (t boltTx) bucket(name []byte) *boltBucket {
	i := slices.IndexFunc(allBuckets, func(b []byte) bool { return bytes.Equal(b, name) })
	if i >= 0 && t.open[i].b != nil {
		return &t.open[i]
	}
	b := t.tx.Bucket(name)
	if b == nil {
		// Buckets are created at open; a missing one is a programming error.
		panic(fmt.Sprintf("store: unknown bucket %q", name))
	}
	if i < 0 {
		return &boltBucket{b: b}
	}
	t.open[i].b = b
	return &t.open[i]
}

// borrow returns the value of key as bbolt holds it: valid only until the
// transaction ends, and never to be changed.
func (t boltTx) borrow(bucket, key []byte) []byte {
	b := t.bucket(bucket)
	if t.tx.Writable() {
		return b.b.Get(key)
	}
	if b.seek == nil {
		b.seek = b.b.Cursor()
	}
	k, v := b.seek.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

func (t boltTx) Get(bucket, key []byte) []byte {
	v := t.borrow(bucket, key)
	if v == nil {
		return nil
	}
	// bbolt's slices die with the transaction; callers may keep theirs.
	return bytes.Clone(v)
}

func (t boltTx) Put(bucket, key, value []byte) error { return t.bucket(bucket).b.Put(key, value) }

func (t boltTx) PutEphemeral(bucket, key, value []byte) error { return t.Put(bucket, key, value) }

func (t boltTx) Delete(bucket, key []byte) error { return t.bucket(bucket).b.Delete(key) }

func (t boltTx) ForEachPrefix(bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := t.bucket(bucket).b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(bytes.Clone(k), bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}
