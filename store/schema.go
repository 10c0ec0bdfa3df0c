package store

import "encoding/binary"

// Every bucket and key name of the store, in one place.
var (
	bucketMeta         = []byte("meta")          // keyNextDeviceID, keyNextTokenID
	bucketTokens       = []byte("tokens")        // token name → tokenRecord (JSON)
	bucketDevices      = []byte("devices")       // u64(device id) → deviceRecord (JSON)
	bucketTokenDevices = []byte("token_devices") // token name, 0, u64(device id) → empty: index by token
	bucketGPUs         = []byte("gpus")          // GPU UUID → gpuRecord (JSON): the pool
	bucketBindings     = []byte("bindings")      // GPU UUID → u64(job id): who holds each GPU
	bucketJobs         = []byte("jobs")          // u64(job id) → Job (JSON)
	bucketUIDs         = []byte("uids")          // u64(uid) → token name: who is bound to which token
	bucketSecrets      = []byte("secrets")       // sha256(secret) → token name
	bucketHistory      = []byte("history")       // token name, 0, u64(job id) → HistoryEntry (JSON): ended jobs
	bucketQueue        = []byte("queue")         // queueKey(priority, job id) → u64(job id): waiting jobs, in order

	keyNextDeviceID = []byte("next_device_id") // u64: the next id to hand out; ids are never reused
	keyNextTokenID  = []byte("next_token_id")  // u64: the next token number (used for inode numbers)
	keyNextJobID    = []byte("next_job_id")    // u64: the next job id
	keySchema       = []byte("schema_version") // u64: the layout of what is stored (schemaVersion)

	keyTokenKeyCheck = []byte("token_key_check") // HMAC(token key, "moreh key check"): which key the secrets derive from (keycheck.go)

	allBuckets = [][]byte{bucketMeta, bucketTokens, bucketDevices, bucketTokenDevices, bucketGPUs, bucketBindings, bucketJobs, bucketUIDs, bucketSecrets, bucketHistory, bucketQueue}
)

// schemaVersion is the layout this binary reads and writes; a store written
// by a newer one is refused at open rather than misread.
const schemaVersion = 2 // 2: the queue, and jobs that wait in it

// u64 encodes n big-endian so that byte order is numeric order.
func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

// fromU64 decodes u64; a missing or short value reads as 0.
func fromU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// tokenDevicePrefix is the index prefix of all of one token's devices.
func tokenDevicePrefix(token string) []byte {
	return append([]byte(token), 0)
}

func tokenDeviceKey(token string, id uint64) []byte {
	return append(tokenDevicePrefix(token), u64(id)...)
}

// queueKey orders waiting jobs by priority, higher first, then by arrival
// (job ids only grow): one byte 99-priority, then the id, big-endian.
func queueKey(priority int, job uint64) []byte {
	return append([]byte{byte(MaxPriority - priority)}, u64(job)...)
}
