package store

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// EtcdConfig says how to reach the etcd cluster that several morehd share.
type EtcdConfig struct {
	Endpoints []string
	TLS       *tls.Config   // nil for plain connections
	Prefix    string        // key prefix; default "/moreh/"
	LeaseTTL  time.Duration // how long a dead node's GPUs stay in the pool; default 10s
	Timeout   time.Duration // per request; default 5s
}

// etcdEngine is the Engine of a pool that spans machines. Writers commit
// optimistically against one version key (see Update), so every rule holds
// across nodes as with bbolt's one writer, at one proposal a write.
type etcdEngine struct {
	cli       *clientv3.Client
	sessionMu sync.Mutex
	session   *concurrency.Session // this node's lease: ephemeral keys die with it
	ttl       time.Duration
	changes   chan SessionChange // keepSession's news, read by the runtime
	stop      chan struct{}      // closed by Close
	kept      chan struct{}      // closed when keepSession returns
	local     sync.Mutex         // one writer of this node at a time
	prefix    string
	timeout   time.Duration
	closed    sync.Once
}

var _ Engine = (*etcdEngine)(nil)

// OpenEtcd connects to etcd and starts this node's lease.
// It starts when any configured member answers; the client fails over.
func OpenEtcd(ctx context.Context, cfg EtcdConfig) (Engine, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "/moreh/"
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, TLS: cfg.TLS, DialTimeout: cfg.Timeout,
		Logger: zap.NewNop(), // failures reach the daemon's log as errors of the calls
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := anyMemberAnswers(ctx, cli, cfg.Endpoints); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd at %v does not answer: %w", cfg.Endpoints, err)
	}
	// A cluster that just lost a member may be electing a leader: be patient.
	session, err := newSession(cli, cfg.LeaseTTL, 3*cfg.Timeout)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd: grant this node's lease: %w", err)
	}
	e := &etcdEngine{cli: cli, session: session, ttl: cfg.LeaseTTL, prefix: cfg.Prefix, timeout: cfg.Timeout,
		changes: make(chan SessionChange, 4), stop: make(chan struct{}), kept: make(chan struct{})}
	go e.keepSession()
	return e, nil
}

// anyMemberAnswers asks every endpoint at once and returns when the first
// answers, or with the last failure when none does before ctx ends.
func anyMemberAnswers(ctx context.Context, cli *clientv3.Client, endpoints []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan error, len(endpoints))
	for _, ep := range endpoints {
		go func() {
			_, err := cli.Status(ctx, ep)
			answers <- err
		}()
	}
	var last error
	for range endpoints {
		if last = <-answers; last == nil {
			return nil
		}
	}
	return last
}

func (e *etcdEngine) key(bucket, key []byte) string {
	return e.prefix + string(bucket) + "/" + string(key)
}

// Update runs fn optimistically, as etcd's STM does: its reads are at one
// revision, and its writes commit in one transaction (one raft proposal)
// only if no other write committed since: every write also bumps the
// version key, which the transaction compares. On a conflict fn runs again
// on fresh reads, until ctx's deadline.
func (e *etcdEngine) Update(ctx context.Context, fn func(Tx) error) error {
	e.local.Lock() // this node's writers do not conflict with each other
	defer e.local.Unlock()
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	version := e.prefix + "version"
	for attempt := 0; ; attempt++ {
		tx := &etcdTx{e: e, ctx: ctx, writes: map[string]*clientv3.Op{}}
		resp, err := tx.get(version) // fixes the revision of every read
		if err != nil {
			return err
		}
		var seen int64
		if len(resp.Kvs) > 0 {
			seen = resp.Kvs[0].ModRevision
		}
		if err := tx.result(fn(tx)); err != nil {
			return err
		}
		if len(tx.order) == 0 {
			return nil
		}
		ops := make([]clientv3.Op, 0, len(tx.order)+1)
		for _, k := range tx.order {
			ops = append(ops, *tx.writes[k])
		}
		ops = append(ops, clientv3.OpPut(version, ""))
		commit, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(version), "=", seen)).Then(ops...).Commit()
		if err != nil {
			return explainTxnError(err, len(ops))
		}
		if commit.Succeeded {
			return nil
		}
		if err := backoff(ctx, attempt); err != nil {
			return fmt.Errorf("etcd: another node's writes kept winning: %w", err)
		}
	}
}

// backoff waits a little longer after each lost race, with jitter, so that
// nodes racing for the same write spread out.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(1+rand.IntN(1<<min(attempt, 6))) * time.Millisecond
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// explainTxnError names the server flag behind a transaction too large for it.
func explainTxnError(err error, ops int) error {
	if strings.Contains(err.Error(), "too many operations in txn request") {
		return fmt.Errorf("etcd: commit of %d operations: %w (raise the etcd server's --max-txn-ops to at least %d)", ops, err, ops)
	}
	return fmt.Errorf("etcd: commit: %w", err)
}

func (e *etcdEngine) View(ctx context.Context, fn func(Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	tx := &etcdTx{e: e, ctx: ctx, readOnly: true}
	return tx.result(fn(tx))
}

// result prefers a failed read to what fn made of it: a Get that could not
// reach etcd looks like a missing key to fn.
func (t *etcdTx) result(err error) error {
	if t.failed != nil {
		return t.failed
	}
	return err
}

func (e *etcdEngine) Close() error {
	var err error
	e.closed.Do(func() {
		close(e.stop)
		<-e.kept
		e.currentSession().Close() // revokes the lease: this node's GPUs leave at once
		err = e.cli.Close()
	})
	return err
}

// ServerVersion is the etcd cluster's version.
func (e *etcdEngine) ServerVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	for _, ep := range e.cli.Endpoints() {
		if st, err := e.cli.Status(ctx, ep); err == nil {
			return "etcd " + st.Version, nil
		}
	}
	return "", errors.New("etcd: no endpoint answers")
}

// etcdTx reads at one revision (fixed by its first read) and buffers its
// writes until Update commits them in one transaction.
type etcdTx struct {
	e        *etcdEngine
	ctx      context.Context
	readOnly bool
	rev      int64
	writes   map[string]*clientv3.Op // key → put or delete; nil-valued Op.ValueBytes for deletes
	order    []string
	deleted  map[string]bool
	values   map[string][]byte
	failed   error
}

func (t *etcdTx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.e.cli.Get(t.ctx, key, opts...)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

// Get returns nil when etcd cannot be read: the next write or the commit
// reports the failure.
func (t *etcdTx) Get(bucket, key []byte) []byte {
	k := t.e.key(bucket, key)
	if v, ok := t.values[k]; ok {
		return bytes.Clone(v)
	}
	if t.deleted[k] {
		return nil
	}
	resp, err := t.get(k)
	if err != nil {
		t.failed = err
		return nil
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0].Value
}

func (t *etcdTx) write(k string, op clientv3.Op, value []byte, del bool) error {
	if t.failed != nil {
		return t.failed
	}
	if t.readOnly {
		return errors.New("store: write in a read-only transaction")
	}
	if t.values == nil {
		t.values, t.deleted = map[string][]byte{}, map[string]bool{}
	}
	if _, seen := t.writes[k]; !seen {
		t.order = append(t.order, k)
	}
	t.writes[k] = &op
	if del {
		delete(t.values, k)
		t.deleted[k] = true
	} else {
		t.values[k] = bytes.Clone(value)
		delete(t.deleted, k)
	}
	return nil
}

func (t *etcdTx) Put(bucket, key, value []byte) error {
	k := t.e.key(bucket, key)
	return t.write(k, clientv3.OpPut(k, string(value)), value, false)
}

func (t *etcdTx) PutEphemeral(bucket, key, value []byte) error {
	k := t.e.key(bucket, key)
	return t.write(k, clientv3.OpPut(k, string(value), clientv3.WithLease(t.e.currentSession().Lease())), value, false)
}

func (t *etcdTx) Delete(bucket, key []byte) error {
	k := t.e.key(bucket, key)
	return t.write(k, clientv3.OpDelete(k), nil, true)
}

// ForEachPrefix merges the stored keys with this transaction's own writes.
func (t *etcdTx) ForEachPrefix(bucket, prefix []byte, fn func(k, v []byte) error) error {
	if t.failed != nil {
		return t.failed
	}
	base := t.e.key(bucket, nil)
	full := base + string(prefix)
	resp, err := t.get(full, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	merged := map[string][]byte{}
	for _, kv := range resp.Kvs {
		merged[string(kv.Key)] = kv.Value
	}
	for k, v := range t.values {
		if len(k) >= len(full) && k[:len(full)] == full {
			merged[k] = v
		}
	}
	for k := range t.deleted {
		delete(merged, k)
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k[len(base):]), bytes.Clone(merged[k])); err != nil {
			return err
		}
	}
	return nil
}
