package store

import (
	"encoding/json"
	"time"
)

// Token is one holder of devices: a user or a team.
type Token struct {
	Name       string `json:"name"`
	Number     uint64 `json:"number"`              // stable small integer, for inode numbers
	MaxDevices int    `json:"max_devices"`         // the device limit
	Current    uint64 `json:"current"`             // current device id, 0 when none
	UseCount   uint64 `json:"use_count"`           // bumped each time a device becomes current
	SecretHash []byte `json:"secret_hash"`         // sha256 of the secret; empty for the open default token
	Nonce      []byte `json:"nonce"`               // with the node key, derives the secret (see secrets.go)
	UIDs       []int  `json:"uids"`                // the users bound to it
	UnitMillis uint64 `json:"unit_millis"`         // GPU units × milliseconds its ended jobs held
	Priority   int    `json:"priority,omitempty"`  // queue order: higher first (MinPriority…MaxPriority)
	Shared     bool   `json:"shared,omitempty"`    // a process attached to a busy device joins its job rather than wait
	MaxUnits   int    `json:"max_units,omitempty"` // the most GPU units its running jobs hold at once; 0: no quota
	// IdleJobTimeout overrides --idle-job-timeout for its jobs: 0 keeps the
	// daemon's, IdleNever turns the reset off.
	IdleJobTimeout time.Duration `json:"idle_job_timeout,omitempty"`
}

// Device is one virtual accelerator of a token.
type Device struct {
	ID       uint64    `json:"id"`
	Token    string    `json:"token"`
	Model    string    `json:"model"`
	Created  time.Time `json:"created"`
	LastUsed uint64    `json:"last_used"` // the token's UseCount when it last became current
	Job      uint64    `json:"job"`       // the running job's id, 0 when none
	Idle     time.Time `json:"idle"`      // since when no job has run (creation or last job's end)
}

// PoolGPU is one physical GPU of the shared pool.
type PoolGPU struct {
	UUID      string `json:"uuid"`
	Node      string `json:"node"`  // the machine that has it
	Index     int    `json:"index"` // its index on that machine
	Name      string `json:"name"`
	Units     int    `json:"units"` // 64 GB units it provides
	MemoryMiB uint64 `json:"memory_mib"`
}

// Proc is a process of a job. Start (clock ticks after boot) tells a live
// process from a later one that reused its pid.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Job is what runs on a device: its processes and the GPUs bound to it.
type Job struct {
	ID      uint64    `json:"id"`
	Token   string    `json:"token"`
	Device  uint64    `json:"device"`
	Node    string    `json:"node"` // where its processes run
	Procs   []Proc    `json:"procs"`
	GPUs    []string  `json:"gpus"` // UUIDs, bound for as long as the job runs
	Started time.Time `json:"started"`
	Ending  EndReason `json:"ending,omitempty"` // why it is being stopped (a reset under way), for its history
	// Waiting says the job is in the queue: it holds no GPU, and its
	// processes may open none, until the scheduler starts it.
	Waiting  bool      `json:"waiting,omitempty"`
	Queued   time.Time `json:"queued,omitzero"`    // when it began to wait; zero when it started at once
	Priority int       `json:"priority,omitempty"` // its token's priority when it was queued: its place
	Units    int       `json:"units,omitempty"`    // the units of its model when it started: what its quota counts
}

// ModelInfo returns the catalogue entry of the device's model.
func (d Device) ModelInfo() Model {
	m, _ := LookupModel(d.Model)
	return m
}

// borrower is a Tx that can lend a value without copying it, for as long as
// the transaction runs and the value is only read.
type borrower interface {
	borrow(bucket, key []byte) []byte
}

func getJSON(tx Tx, bucket, key []byte, v any) (bool, error) {
	var raw []byte
	if b, ok := tx.(borrower); ok {
		raw = b.borrow(bucket, key) // decoding keeps nothing of raw
	} else {
		raw = tx.Get(bucket, key)
	}
	if raw == nil {
		return false, nil
	}
	return true, decodeJSON(bucket, key, raw, v)
}

// decodeJSON decodes a record read from bucket under key into v, which
// points to a zero value: the record types are decoded once per content.
func decodeJSON(bucket, key, raw []byte, v any) error {
	switch v := v.(type) {
	case *Device:
		return deviceMemo.decode(bucket, key, raw, v)
	case *Token:
		return tokenMemo.decode(bucket, key, raw, v)
	case *Job:
		return jobMemo.decode(bucket, key, raw, v)
	case *PoolGPU:
		return poolGPUMemo.decode(bucket, key, raw, v)
	}
	return unmarshalJSON(bucket, key, raw, v)
}

// unmarshalJSON decodes raw, naming the record when it is damaged.
func unmarshalJSON(bucket, key, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return errorf(KindIO, "The state store holds a damaged record %s/%x: %v", bucket, key, err)
	}
	return nil
}

func putJSON(tx Tx, bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	primeWritten(raw, v) // the next read of it, in this transaction or after, decodes nothing
	return tx.Put(bucket, key, raw)
}
