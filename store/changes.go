package store

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
)

// Changes are what a commit changed of what the tree lets the kernel keep
// (a token's current and limit, a device's model, GPUs and entry): the
// tokens and devices it wrote, from this node's commits and, through the
// engine's watch, from other nodes'.
type Changes struct {
	Tokens  []string    // tokens whose record or set of devices changed
	Devices []DeviceRef // devices whose record or job changed
	All     bool        // the watch restarted: anything may have changed

	waiters bool // it wrote what waiting jobs depend on: jobs, the queue, devices, tokens, GPUs
}

// DeviceRef names a device and its token.
type DeviceRef struct {
	Token   string
	ID      uint64
	Removed bool // the commit deleted it
}

// OnChange sets fn to be called with what each commit changed, after it
// commits and before the call that made it returns; never under the
// registry's locks.
func (r *Registry) OnChange(fn func(Changes)) {
	r.changes.mu.Lock()
	r.changes.hook = fn
	r.changes.mu.Unlock()
}

type changeHook struct {
	mu   sync.Mutex
	hook func(Changes)
}

func (h *changeHook) notify(c Changes) {
	if len(c.Tokens) == 0 && len(c.Devices) == 0 && !c.All {
		return
	}
	h.mu.Lock()
	fn := h.hook
	h.mu.Unlock()
	if fn != nil {
		fn(c)
	}
}

// trackingEngine records, per committed transaction, the tokens and
// devices it wrote, and tells the hook; a commit that may start or end a
// waiting job wakes the queue's waiters.
type trackingEngine struct {
	Engine
	hook    *changeHook
	waiters *changeBroadcast
	commits *atomic.Uint64 // counted before Update returns: Generation
}

func (e trackingEngine) Update(ctx context.Context, fn func(Tx) error) error {
	var c Changes
	err := e.Engine.Update(ctx, func(tx Tx) error {
		c = Changes{} // an engine may run fn again (etcd's retries)
		return fn(&trackingTx{Tx: tx, c: &c})
	})
	if err == nil {
		e.commits.Add(1)
		if c.waiters {
			e.waiters.fire()
		}
		e.hook.notify(c)
	}
	return err
}

// trackingTx is a Tx that notes what is written.
type trackingTx struct {
	Tx
	c *Changes
}

func (t *trackingTx) Put(bucket, key, value []byte) error {
	t.note(bucket, key, value, false)
	return t.Tx.Put(bucket, key, value)
}

func (t *trackingTx) PutEphemeral(bucket, key, value []byte) error {
	t.note(bucket, key, value, false)
	return t.Tx.PutEphemeral(bucket, key, value)
}

func (t *trackingTx) Delete(bucket, key []byte) error {
	t.note(bucket, key, t.Tx.Get(bucket, key), true)
	return t.Tx.Delete(bucket, key)
}

// borrow keeps getJSON's no-copy read of the engine's transaction.
func (t *trackingTx) borrow(bucket, key []byte) []byte {
	if b, ok := t.Tx.(borrower); ok {
		return b.borrow(bucket, key)
	}
	return t.Tx.Get(bucket, key)
}

func (t *trackingTx) note(bucket, key, value []byte, removed bool) {
	t.c.note(string(bucket), key, value, removed)
}

// note adds one written key; value is what it holds (or held, when
// removed), nil when unknown.
func (c *Changes) note(bucket string, key, value []byte, removed bool) {
	switch bucket {
	case string(bucketJobs), string(bucketQueue), string(bucketDevices), string(bucketTokens), string(bucketGPUs):
		c.waiters = true
	}
	switch bucket {
	case string(bucketTokens):
		c.addToken(string(key))
	case string(bucketTokenDevices):
		if name, _, ok := bytes.Cut(key, []byte{0}); ok {
			c.addToken(string(name))
		}
	case string(bucketDevices), string(bucketJobs):
		var ref struct {
			ID     uint64 `json:"id"`
			Token  string `json:"token"`
			Device uint64 `json:"device"` // a job's
		}
		if value == nil || json.Unmarshal(value, &ref) != nil {
			c.All = bucket == string(bucketDevices) // a device we cannot name
			return
		}
		d := DeviceRef{Token: ref.Token, ID: ref.ID, Removed: removed}
		if bucket == string(bucketJobs) {
			d = DeviceRef{Token: ref.Token, ID: ref.Device}
		}
		if !slices.Contains(c.Devices, d) {
			c.Devices = append(c.Devices, d)
		}
	}
}

func (c *Changes) addToken(name string) {
	if !slices.Contains(c.Tokens, name) {
		c.Tokens = append(c.Tokens, name)
	}
}

// changedElsewhere turns another node's changed keys into Changes; a device
// or job it deleted is read from nowhere, so it counts as All.
func (r *Registry) changedElsewhere(ctx context.Context, batch []changedKey) Changes {
	if batch == nil {
		return Changes{All: true}
	}
	var c Changes
	_ = r.eng.View(ctx, func(tx Tx) error {
		for _, k := range batch {
			var value []byte
			if k.bucket == string(bucketDevices) || k.bucket == string(bucketJobs) {
				if value = tx.Get([]byte(k.bucket), []byte(k.key)); value == nil {
					c.All = true
					continue
				}
			}
			c.note(k.bucket, []byte(k.key), value, false)
		}
		return nil
	})
	return c
}
