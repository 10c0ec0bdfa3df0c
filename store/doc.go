// Package store is the registry: tokens, devices, the current device, jobs,
// GPU bindings and every rule about them (limits, ids, the fallback of
// current, all-or-nothing binding, who may see which token), each operation
// one transaction of an Engine (bbolt on one machine, etcd for a cluster).
// Every bucket and key name is in schema.go.
//
// It knows nothing of hardware (no gpu import), of FUSE or errnos (failures
// are Kinds that the tree maps), or of processes beyond the ProcessTable its
// reaper is handed.
package store
