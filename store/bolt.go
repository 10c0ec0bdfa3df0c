package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltEngine is the single-machine Engine: one bbolt file.
type boltEngine struct {
	db *bolt.DB
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
	return &boltEngine{db: db}, nil
}

func (e *boltEngine) Update(fn func(Tx) error) error {
	return e.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (e *boltEngine) View(fn func(Tx) error) error {
	return e.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (e *boltEngine) Close() error { return e.db.Close() }

// ServerVersion is empty: with bbolt the daemon itself is the server.
func (e *boltEngine) ServerVersion() (string, error) { return "", nil }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(name []byte) *bolt.Bucket {
	b := t.tx.Bucket(name)
	if b == nil {
		// Buckets are created at open; a missing one is a programming error.
		panic(fmt.Sprintf("store: unknown bucket %q", name))
	}
	return b
}

func (t boltTx) Get(bucket, key []byte) []byte {
	v := t.bucket(bucket).Get(key)
	if v == nil {
		return nil
	}
	// bbolt's slices die with the transaction; callers may keep theirs.
	return bytes.Clone(v)
}

func (t boltTx) Put(bucket, key, value []byte) error { return t.bucket(bucket).Put(key, value) }

func (t boltTx) PutEphemeral(bucket, key, value []byte) error { return t.Put(bucket, key, value) }

func (t boltTx) Delete(bucket, key []byte) error { return t.bucket(bucket).Delete(key) }

func (t boltTx) ForEachPrefix(bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := t.bucket(bucket).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(bytes.Clone(k), bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}
