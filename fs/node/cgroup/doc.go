// Package cgroup is the kernel mechanics of a job: a cgroup v2 directory per
// job, its processes, its figures, the inotify watch that reports when it
// empties, and the BPF device program that decides which device nodes it may
// open.
//
// Layout: the daemon owns one directory (a Manager), which holds no process
// itself (cgroup v2's "no internal processes" rule); each job is the leaf
// <dir>/job-<id>. Job ids are unique across devices, so the device a job runs
// on is not part of the path, and moving a process to another device's job
// is one write to that job's cgroup.procs, which the kernel makes atomic.
//
// A job's life: Create, SetDevices (deny every GPU node while it waits) before
// the first AddProc so no process of it ever runs unconfined, Watcher.Watch,
// SetDevices again once GPUs are bound, Signal/Kill to reset, and Remove after
// the Watcher reports it empty. Open, List and HasDevices serve a restarted
// daemon: the cgroups and their device programs are the kernel's, and outlive it.
//
// This package is a leaf: it imports no other moreh package and knows nothing
// of stores, devices or GPUs beyond device numbers. Policy (which job, which
// GPUs, when to reset) lives with the caller.
package cgroup
