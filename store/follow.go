package store

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// changeWatcher is an engine that other writers share (etcd): it reports
// the keys they change, so that nothing needs to poll.
type changeWatcher interface {
	// watchChanges sends, batch by batch, the bucket and key of each changed
	// key, until ctx ends; a nil batch means "re-read everything" (the
	// watch was restarted and may have missed changes).
	watchChanges(ctx context.Context) <-chan []changedKey
}

type changedKey struct{ bucket, key string }

// FollowOthers keeps what the registry remembers of tokens (owners, whether
// any has a secret) current with changes other nodes commit, from the
// engine's watch, until ctx ends. An engine no one else writes (bbolt)
// needs none: it returns at once.
func (r *Registry) FollowOthers(ctx context.Context) {
	w, ok := r.raw.(changeWatcher)
	if !ok {
		return
	}
	for batch := range w.watchChanges(ctx) {
		r.remoteChanges.Add(1)
		r.changes.notify(r.changedElsewhere(ctx, batch))
		var names []string
		everything := batch == nil
		for _, c := range batch {
			switch c.bucket {
			case string(bucketTokens):
				names = append(names, c.key)
			case string(bucketSecrets):
				everything = true // the count of tokens with a secret may have changed
			}
		}
		if everything {
			r.RefreshTokens(ctx)
		} else if len(names) > 0 {
			r.refreshOwners(ctx, names...)
		}
	}
}

// RemoteChanges counts the batches of other writers' changes seen so far:
// while it stands still, what this node last read of jobs and the pool holds.
func (r *Registry) RemoteChanges() uint64 { return r.remoteChanges.Load() }

func (e *etcdEngine) watchChanges(ctx context.Context) <-chan []changedKey {
	out := make(chan []changedKey, 1)
	go func() {
		defer close(out)
		for attempt := 0; ctx.Err() == nil; attempt++ {
			for resp := range e.cli.Watch(clientv3.WithRequireLeader(ctx), e.prefix, clientv3.WithPrefix()) {
				if resp.Err() != nil {
					break
				}
				var batch []changedKey
				for _, ev := range resp.Events {
					bucket, key, ok := strings.Cut(strings.TrimPrefix(string(ev.Kv.Key), e.prefix), "/")
					if ok {
						batch = append(batch, changedKey{bucket, key})
					}
				}
				if len(batch) > 0 && !send(ctx, out, batch) {
					return
				}
				attempt = 0
			}
			// The watch ended (no leader, compaction): changes may be lost.
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(2*time.Second, time.Duration(attempt+1)*100*time.Millisecond)):
			}
			if !send(ctx, out, nil) {
				return
			}
		}
	}()
	return out
}

func send(ctx context.Context, out chan<- []changedKey, batch []changedKey) bool {
	select {
	case out <- batch:
		return true
	case <-ctx.Done():
		return false
	}
}
