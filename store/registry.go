package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
)

// Options are the registry's settings from the daemon's flags.
type Options struct {
	FirstID      uint64 // the first device id handed out; default 2026
	MaxDevices   int    // the default token's device limit; default 5
	DefaultToken string // the token every caller is bound to; default "default"
	Key          []byte // the node key that token secrets derive from (LoadKey)
	KeyNew       bool   // Key was made just now (its file was missing): with tokens, Open refuses it
	SharedSecret string // --token-file: the default token's secret, and every caller bound to it
	Node         string // this machine's name in the pool; default "local"
	HistoryKeep  int    // ended jobs kept per token; default 1000
}

// Registry holds tokens and their devices and enforces every rule on them.
// Each operation is one transaction of the Engine.
type Registry struct {
	eng    Engine
	opts   Options
	Errors *ErrorLog
	now    func() time.Time

	secretTokens  atomic.Int64                                // tokens with a secret: when 0 every caller shares the default token
	raw           Engine                                      // eng unwrapped, for what only some engines do (watch, sessions)
	changes       changeHook                                  // OnChange
	owners        owners                                      // each token's Owner, to tell the tree which changed
	figures       atomic.Pointer[func(job uint64) JobFigures] // OnJobFigures
	remoteChanges atomic.Uint64                               // FollowOthers's batches
	commits       atomic.Uint64                               // this registry's commits
	remoteHook    atomic.Pointer[func(RemoteChange)]          // OnRemoteChange
	binds         bindThrottle                                // who may try a secret again, and when
	noHold        bool                                        // tests only: the queue's head holds nothing (plan)
	jobsChanged   changeBroadcast                             // jobs, the queue or devices changed, here or on another node
}

// Open prepares the registry on eng: the default token exists with the
// configured limit, and the next device id is at least FirstID.
func Open(ctx context.Context, eng Engine, opts Options) (*Registry, error) {
	if opts.FirstID == 0 {
		opts.FirstID = 2026
	}
	if opts.MaxDevices == 0 {
		opts.MaxDevices = 5
	}
	if opts.DefaultToken == "" {
		opts.DefaultToken = "default"
	}
	if opts.Node == "" {
		opts.Node = "local"
	}
	if opts.HistoryKeep == 0 {
		opts.HistoryKeep = 1000
	}
	r := &Registry{raw: eng, opts: opts, Errors: NewErrorLog(), now: time.Now}
	// Commits wake the queue's waiters and tell OnChange what they wrote.
	r.eng = trackingEngine{Engine: eng, hook: &r.changes, waiters: &r.jobsChanged, commits: &r.commits}
	err := eng.Update(ctx, func(tx Tx) error {
		if err := checkSchema(tx); err != nil {
			return err
		}
		if err := checkTokenKey(tx, opts); err != nil {
			return err
		}
		if fromU64(tx.Get(bucketMeta, keyNextDeviceID)) < opts.FirstID {
			if err := tx.Put(bucketMeta, keyNextDeviceID, u64(opts.FirstID)); err != nil {
				return err
			}
		}
		var t Token
		found, err := getJSON(tx, bucketTokens, []byte(opts.DefaultToken), &t)
		if err != nil {
			return err
		}
		if !found {
			t = Token{Name: opts.DefaultToken}
			if t.Number, err = nextTokenNumber(tx); err != nil {
				return err
			}
		}
		t.MaxDevices = opts.MaxDevices
		if opts.SharedSecret != "" {
			if err := setSecretHash(tx, &t, hashSecret(opts.SharedSecret)); err != nil {
				return err
			}
		}
		return putJSON(tx, bucketTokens, []byte(t.Name), t)
	})
	if err != nil {
		return nil, ioError(err)
	}
	return r, r.RefreshTokens(ctx)
}

// checkSchema stamps a new store with this binary's schema version and
// refuses one that a newer binary wrote.
func checkSchema(tx Tx) error {
	switch v := fromU64(tx.Get(bucketMeta, keySchema)); {
	case v > schemaVersion:
		return errorf(KindIO, "The state was written by a newer morehd (schema %d; this one reads up to %d): run that version, or a newer one.", v, schemaVersion)
	case v < schemaVersion:
		return tx.Put(bucketMeta, keySchema, u64(schemaVersion))
	}
	return nil
}

// Node is this machine's name in the pool.
func (r *Registry) Node() string { return r.opts.Node }

// ServerVersion is the store server's version, or "" when the daemon is its
// own server (bbolt).
func (r *Registry) ServerVersion(ctx context.Context) (string, error) {
	return r.eng.ServerVersion(ctx)
}

// DefaultMaxDevices is the device limit a new token starts with.
func (r *Registry) DefaultMaxDevices() int { return r.opts.MaxDevices }

// defaultToken is the token of callers with no binding of their own.
func (r *Registry) defaultToken() string { return r.opts.DefaultToken }

// nextTokenNumber hands out token numbers 1, 2, … inside tx.
func nextTokenNumber(tx Tx) (uint64, error) {
	n := fromU64(tx.Get(bucketMeta, keyNextTokenID)) + 1
	return n, tx.Put(bucketMeta, keyNextTokenID, u64(n))
}

// TokenView is one consistent snapshot of a token and its devices.
type TokenView struct {
	Token   Token
	Devices []Device       // by id
	Jobs    map[uint64]Job // running jobs by device id
}

// currentDevice returns the token's current device, if it has one.
func (v TokenView) currentDevice() (Device, bool) {
	for _, d := range v.Devices {
		if d.ID == v.Token.Current {
			return d, true
		}
	}
	return Device{}, false
}

// View returns a snapshot of token.
func (r *Registry) View(ctx context.Context, token string) (TokenView, error) {
	var v TokenView
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		v, err = loadView(tx, token)
		return err
	})
	return v, ioError(err)
}

// Token returns one token's record, without its devices.
func (r *Registry) Token(ctx context.Context, name string) (Token, error) {
	var t Token
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		t, err = loadToken(tx, name)
		return err
	})
	return t, ioError(err)
}

// Tokens lists every token by name.
func (r *Registry) Tokens(ctx context.Context) ([]Token, error) {
	var ts []Token
	err := r.eng.View(ctx, func(tx Tx) error {
		return tx.ForEachPrefix(bucketTokens, nil, func(k, v []byte) error {
			var t Token
			err := decodeJSON(bucketTokens, k, v, &t)
			ts = append(ts, t)
			return err
		})
	})
	return ts, ioError(err)
}

// Device returns one device of token.
func (r *Registry) Device(ctx context.Context, token string, id uint64) (Device, error) {
	var d Device
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		d, err = loadDevice(tx, token, id)
		return err
	})
	return d, ioError(err)
}

// CreateDevice adds a device of model to token with the next id and makes it
// current. It fails with KindQuota at the token's limit.
func (r *Registry) CreateDevice(ctx context.Context, token, model string) (Device, error) {
	m, ok := LookupModel(model)
	if !ok {
		return Device{}, unknownModel(model)
	}
	var d Device
	err := r.eng.Update(ctx, func(tx Tx) error {
		v, err := loadView(tx, token)
		if err != nil {
			return err
		}
		if len(v.Devices) >= v.Token.MaxDevices {
			return errorf(KindQuota, "Maximum number of devices (%d) reached.", v.Token.MaxDevices)
		}
		id := fromU64(tx.Get(bucketMeta, keyNextDeviceID))
		if id >= MaxDeviceID {
			// The counter never wraps: a wrapped id would be 0, or one handed out before.
			return errorf(KindExhausted, "Every device id up to %d has been handed out, and ids are never reused: start a new state file (a new --db) to create devices.", uint64(MaxDeviceID-1))
		}
		if err := tx.Put(bucketMeta, keyNextDeviceID, u64(id+1)); err != nil {
			return err
		}
		now := r.now().UTC()
		d = Device{ID: id, Token: token, Model: m.Name, Created: now, Idle: now}
		if err := tx.Put(bucketTokenDevices, tokenDeviceKey(token, id), nil); err != nil {
			return err
		}
		return makeCurrent(tx, &v.Token, &d)
	})
	return d, ioError(err)
}

// MaxDeviceID bounds device ids: the last id handed out is MaxDeviceID-1,
// and creation then fails with KindExhausted rather than wrap. 2^48 leaves
// the tree room to number every device's files apart (fs/root.go deviceIno).
const MaxDeviceID = 1 << 48

// MaxFirstID is the largest --first-id: at least 2^47 ids stay before
// MaxDeviceID, so the counter cannot run out in practice.
const MaxFirstID = 1 << 47

// RemoveDevice deletes a device of token. When it was current, the most
// recently used remaining device becomes current, or none. A device with a
// running job is KindBusy.
func (r *Registry) RemoveDevice(ctx context.Context, token string, id uint64) error {
	return ioError(r.eng.Update(ctx, func(tx Tx) error { return removeDevice(tx, token, id) }))
}

func removeDevice(tx Tx, token string, id uint64) error {
	v, err := loadView(tx, token)
	if err != nil {
		return err
	}
	d, err := loadDevice(tx, token, id)
	if err != nil {
		return err
	}
	if d.Job != 0 {
		return errorf(KindBusy, "Device %d is running job %d: stop it first (moreh-smi -r).", id, d.Job)
	}
	if waited, err := waitedDevices(tx); err != nil || waited[id] {
		if err == nil {
			err = errorf(KindBusy, "A job waits in the queue for device %d: stop its processes first.", id)
		}
		return err
	}
	if err := tx.Delete(bucketDevices, u64(id)); err != nil {
		return err
	}
	if err := tx.Delete(bucketTokenDevices, tokenDeviceKey(token, id)); err != nil {
		return err
	}
	if v.Token.Current != id {
		return nil
	}
	v.Token.Current = 0
	var last *Device
	for i := range v.Devices {
		d := &v.Devices[i]
		if d.ID != id && (last == nil || d.LastUsed > last.LastUsed) {
			last = d
		}
	}
	if last != nil {
		v.Token.Current = last.ID
	}
	return putJSON(tx, bucketTokens, []byte(token), v.Token)
}

// Switch makes device id the token's current device.
func (r *Registry) Switch(ctx context.Context, token string, id uint64) error {
	err := r.eng.Update(ctx, func(tx Tx) error {
		t, err := loadToken(tx, token)
		if err != nil {
			return err
		}
		d, err := loadDevice(tx, token, id)
		if err != nil {
			return err
		}
		return makeCurrent(tx, &t, &d)
	})
	return ioError(err)
}

// SetModel changes the model of device id.
func (r *Registry) SetModel(ctx context.Context, token string, id uint64, model string) (Device, error) {
	m, ok := LookupModel(model)
	if !ok {
		return Device{}, unknownModel(model)
	}
	var d Device
	err := r.eng.Update(ctx, func(tx Tx) error {
		var err error
		if d, err = loadDevice(tx, token, id); err != nil {
			return err
		}
		if d.Job != 0 {
			return errorf(KindBusy, "The model cannot be switched while the KT AI Accelerator is in use.")
		}
		if waited, err := waitedDevices(tx); err != nil || waited[id] {
			if err == nil {
				err = errorf(KindBusy, "The model cannot be switched while a job waits for the KT AI Accelerator.")
			}
			return err
		}
		d.Model = m.Name
		return putJSON(tx, bucketDevices, u64(id), d)
	})
	return d, ioError(err)
}

// ParseDeviceID reads a device id as written to current or given to rmdir.
func ParseDeviceID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 || s[0] == '0' { // one spelling per id, as readdir lists it
		return 0, errorf(KindInvalid, "%s is not a device id: write a number such as 2026.", quoteInput(s))
	}
	return id, nil
}

func unknownModel(name string) error {
	return errorf(KindInvalid, "Unknown model %s: the models file lists them (e.g. Large.256GB).", quoteInput(name))
}

// quoteInput shows a user's input safely in one line, cut to a readable length.
func quoteInput(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

// makeCurrent marks d as the token's current, most recently used device and
// stores both.
func makeCurrent(tx Tx, t *Token, d *Device) error {
	t.UseCount++
	t.Current = d.ID
	d.LastUsed = t.UseCount
	if err := putJSON(tx, bucketDevices, u64(d.ID), d); err != nil {
		return err
	}
	return putJSON(tx, bucketTokens, []byte(t.Name), t)
}

func loadToken(tx Tx, name string) (Token, error) {
	var t Token
	found, err := getJSON(tx, bucketTokens, []byte(name), &t)
	if err == nil && !found {
		err = errorf(KindNotFound, "Token %s does not exist.", quoteInput(name))
	}
	return t, err
}

// loadDevice returns device id if it belongs to token; another token's
// device is reported exactly like a missing one.
func loadDevice(tx Tx, token string, id uint64) (Device, error) {
	var d Device
	found, err := getJSON(tx, bucketDevices, u64(id), &d)
	if err != nil {
		return d, err
	}
	if !found || d.Token != token {
		return Device{}, errorf(KindNotFound, "Device %d does not exist.", id)
	}
	return d, nil
}

func loadView(tx Tx, token string) (TokenView, error) {
	t, err := loadToken(tx, token)
	if err != nil {
		return TokenView{}, err
	}
	v := TokenView{Token: t}
	prefix := tokenDevicePrefix(token)
	err = tx.ForEachPrefix(bucketTokenDevices, prefix, func(k, _ []byte) error {
		d, err := loadDevice(tx, token, fromU64(k[len(prefix):]))
		if err != nil {
			return fmt.Errorf("index names a missing device: %w", err)
		}
		v.Devices = append(v.Devices, d)
		if d.Job == 0 {
			return nil
		}
		j, err := loadJob(tx, d.Job)
		if v.Jobs == nil {
			v.Jobs = map[uint64]Job{}
		}
		v.Jobs[d.ID] = j
		return err
	})
	sort.Slice(v.Devices, func(i, j int) bool { return v.Devices[i].ID < v.Devices[j].ID })
	return v, err
}
