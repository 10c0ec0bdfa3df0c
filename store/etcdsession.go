package store

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// SessionChange is news of the node's place in a shared store: its lease
// (and with it the node's GPUs in the pool) lapsed, or a new one holds again.
type SessionChange int

const (
	SessionLost    SessionChange = iota + 1 // the lease lapsed: this node's GPUs left the pool
	SessionRenewed                          // a new lease holds: the node must register its GPUs again
)

// sessionKeeper is implemented by engines whose node can lose its place.
type sessionKeeper interface {
	sessionChanges() <-chan SessionChange
}

// SessionChanges reports the engine's session changes; nil (never ready)
// for an engine without sessions (bbolt).
func (r *Registry) SessionChanges() <-chan SessionChange {
	if k, ok := r.raw.(sessionKeeper); ok {
		return k.sessionChanges()
	}
	return nil
}

// newSession grants a lease within timeout and keeps it alive for as long
// as the client lives (a session's keep-alive runs on the context it was
// made with, so the grant has its own).
func newSession(cli *clientv3.Client, ttl, timeout time.Duration) (*concurrency.Session, error) {
	ctx, cancel := context.WithTimeout(cli.Ctx(), timeout)
	defer cancel()
	lease, err := cli.Grant(ctx, int64(ttl.Seconds()))
	if err != nil {
		return nil, err
	}
	return concurrency.NewSession(cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(ttl.Seconds())))
}

func (e *etcdEngine) currentSession() *concurrency.Session {
	e.sessionMu.Lock()
	defer e.sessionMu.Unlock()
	return e.session
}

func (e *etcdEngine) sessionChanges() <-chan SessionChange { return e.changes }

// keepSession replaces a lapsed session as soon as etcd grants a new lease,
// and says so on e.changes, until the engine closes.
func (e *etcdEngine) keepSession() {
	defer close(e.kept)
	for {
		select {
		case <-e.stop:
			return
		case <-e.currentSession().Done():
		}
		e.report(SessionLost)
		for attempt := 0; ; attempt++ {
			s, err := newSession(e.cli, e.ttl, e.timeout)
			if err == nil {
				e.sessionMu.Lock()
				e.session = s
				e.sessionMu.Unlock()
				e.report(SessionRenewed)
				break
			}
			select {
			case <-e.stop:
				return
			case <-time.After(min(e.ttl/4, time.Duration(100<<min(attempt, 4))*time.Millisecond)):
			}
		}
	}
}

// report hands c to the runtime; changes are few, and the channel's room
// keeps a slow reader from stopping renewal.
func (e *etcdEngine) report(c SessionChange) {
	select {
	case e.changes <- c:
	case <-e.stop:
	}
}
