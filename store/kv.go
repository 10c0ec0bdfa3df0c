package store

import "context"

// Engine is the transactional key-value store under the registry. bbolt
// implements it now; an etcd backend slots in behind the same two calls.
type Engine interface {
	// Update runs fn in one read-write transaction; fn's error aborts it.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in one read-only transaction over a consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	Close() error
	// ServerVersion names the engine's server, for the version file.
	ServerVersion(ctx context.Context) (string, error)
}

// Tx is one transaction. Buckets are flat namespaces of byte-string keys.
type Tx interface {
	Get(bucket, key []byte) []byte
	Put(bucket, key, value []byte) error
	// PutEphemeral is Put for a key that lives only as long as this node's
	// daemon: on etcd it is bound to the node's lease; bbolt keeps it.
	PutEphemeral(bucket, key, value []byte) error
	Delete(bucket, key []byte) error
	// ForEachPrefix calls fn for every key in bucket starting with prefix,
	// in byte order, stopping at fn's first error.
	ForEachPrefix(bucket, prefix []byte, fn func(key, value []byte) error) error
}
