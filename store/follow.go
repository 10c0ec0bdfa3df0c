package store

import (
	"context"
	"slices"
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
		var devices []uint64
		everything, jobs := batch == nil, false
		for _, c := range batch {
			switch c.bucket {
			case string(bucketTokens):
				names = append(names, c.key)
			case string(bucketSecrets):
				everything = true // the count of tokens with a secret may have changed
			case string(bucketDevices):
				if len(c.key) == 8 {
					devices = append(devices, fromU64([]byte(c.key)))
				}
			case string(bucketTokenDevices): // a device made or removed: the token's list changed
				if token, _, ok := strings.Cut(c.key, "\x00"); ok {
					names = append(names, token)
				}
			}
			switch c.bucket {
			case string(bucketJobs), string(bucketQueue), string(bucketDevices), string(bucketTokens), string(bucketGPUs):
				jobs = true
			}
		}
		if jobs || batch == nil {
			r.jobsChanged.fire() // another node's end, start or queueing: waiters look again
		}
		if everything {
			r.RefreshTokens(ctx)
		} else if len(names) > 0 {
			r.refreshOwners(ctx, names...)
		}
		if hook := r.remoteHook.Load(); hook != nil && (everything || len(names) > 0 || len(devices) > 0) {
			slices.Sort(names)
			(*hook)(RemoteChange{Tokens: slices.Compact(names), Devices: devices, Everything: batch == nil})
		}
	}
}

// RemoteChange is what one batch of other nodes' commits changed: the
// tokens whose record or device list changed and the devices whose record
// did; Everything after the watch restarted (changes may have been missed).
type RemoteChange struct {
	Tokens     []string
	Devices    []uint64
	Everything bool
}

// OnRemoteChange sets fn to be called, from FollowOthers, after each batch
// of other nodes' commits that touched tokens or devices (and after the
// registry's own memory of owners follows it), never under its locks: what
// the tree caches of them is to be dropped.
func (r *Registry) OnRemoteChange(fn func(RemoteChange)) { r.remoteHook.Store(&fn) }

// RemoteChanges counts the batches of other writers' changes seen so far:
// while it stands still, what this node last read of jobs and the pool holds.
func (r *Registry) RemoteChanges() uint64 { return r.remoteChanges.Load() }

// SoleWriter reports whether this registry's commits are the only ones its
// store sees (bbolt), so that every change is known here when it commits.
func (r *Registry) SoleWriter() bool {
	_, shared := r.raw.(changeWatcher)
	return !shared
}

// Generation changes with every commit of this registry, before the commit
// returns, and with every batch of other writers' changes the watch brings:
// what was read at one generation holds while it stands still.
func (r *Registry) Generation() uint64 { return r.commits.Load() + r.remoteChanges.Load() }

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
