package store

import "sort"

// WaitReason says what a waiting job waits for.
type WaitReason string

const (
	WaitPool   WaitReason = "pool"   // not enough free GPUs (or they are held for the queue's head)
	WaitDevice WaitReason = "device" // its device runs another job (exclusive devices)
	WaitQuota  WaitReason = "quota"  // its token's running jobs hold its max_units
	// WaitPoolSize: the whole pool has fewer units than its model (it shrank
	// since the job queued): it holds nothing and waits for GPUs to be added.
	WaitPoolSize WaitReason = "pool-size"
)

// Wait is why one job waits, and where.
type Wait struct {
	Position int        // 1 for the first in the queue
	Reason   WaitReason //
	Blocker  uint64     // WaitDevice: the job that holds the device
	Units    int        // the units its model needs
	Held     int        // WaitQuota: the units its token's running jobs hold
	MaxUnits int        // WaitQuota: the token's quota
	Pool     int        // WaitPoolSize: the units of the whole pool
}

// waiter is a queued job as the scheduler sees it, in queue order.
type waiter struct {
	job      Job
	units    int    // its device's model's
	maxUnits int    // its token's quota; 0: none
	busy     uint64 // the job that runs on its device now, 0 when none
}

// plan is the scheduler's rule, decided on a snapshot: the queue's jobs in
// order (priority, then arrival) start while their GPUs are free, their
// device is idle and their token's quota allows; the first that waits for
// GPUs (the head) holds what it needs of the free GPUs, so that a later job
// starts only on GPUs beyond those and the head is never overtaken. A job
// larger than the whole pool (it shrank since) can start on nothing: it
// holds nothing, or it would stop every job behind it for good. With
// hold false (only for the test that shows why it exists) nothing is held.
// held is each token's units in running jobs; pool marks GPUs bound to a
// job. It returns the GPUs of each job that starts and why the others wait.
func plan(pool []PoolEntry, queue []waiter, held map[string]int, hold bool) (starts map[uint64][]string, waits map[uint64]Wait) {
	starts, waits = map[uint64][]string{}, map[uint64]Wait{}
	free := make([]PoolEntry, 0, len(pool))
	freeUnits, poolUnits := 0, 0
	for _, g := range pool {
		if g.Units > 0 {
			poolUnits += g.Units
		}
		if g.Job == 0 && g.Units > 0 {
			free = append(free, g)
			freeUnits += g.Units
		}
	}
	held = cloneCounts(held)
	busy := map[uint64]uint64{} // device → the job that runs there or is ahead in the queue
	reserved := 0               // units held for the head
	headSeen := false
	for i, w := range queue {
		d := w.job.Device
		if w.busy != 0 && busy[d] == 0 {
			busy[d] = w.busy
		}
		wait := Wait{Position: i + 1, Units: w.units}
		switch {
		case w.units > poolUnits:
			wait.Reason, wait.Pool = WaitPoolSize, poolUnits
		case busy[d] != 0:
			wait.Reason, wait.Blocker = WaitDevice, busy[d]
		case w.maxUnits > 0 && held[w.job.Token]+w.units > w.maxUnits:
			wait.Reason, wait.Held, wait.MaxUnits = WaitQuota, held[w.job.Token], w.maxUnits
		case freeUnits-reserved >= w.units:
			gpus, got := placeGPUs(free, w.units, w.job.Node)
			starts[w.job.ID] = gpus
			free = withoutGPUs(free, gpus)
			freeUnits -= got
			held[w.job.Token] += w.units
			busy[d] = w.job.ID
			continue
		default:
			wait.Reason = WaitPool
			if hold && !headSeen {
				reserved = min(freeUnits, w.units)
			}
			headSeen = true
		}
		if busy[d] == 0 {
			busy[d] = w.job.ID // a later job of this device waits behind this one
		}
		waits[w.job.ID] = wait
	}
	return starts, waits
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// withoutGPUs is free less the GPUs named.
func withoutGPUs(free []PoolEntry, gpus []string) []PoolEntry {
	taken := map[string]bool{}
	for _, uuid := range gpus {
		taken[uuid] = true
	}
	out := free[:0:0]
	for _, g := range free {
		if !taken[g.UUID] {
			out = append(out, g)
		}
	}
	return out
}

// placeGPUs picks free GPUs worth units: from local (the node where the
// job's processes run) when they fit there, else from as few nodes as
// possible, local first, then those with the most free units. free holds
// enough.
func placeGPUs(free []PoolEntry, units int, local string) (picked []string, got int) {
	byNode := map[string][]PoolEntry{} // node → free GPUs, in index order
	freeUnits := map[string]int{}
	var nodes []string
	for _, g := range free {
		if _, seen := byNode[g.Node]; !seen {
			nodes = append(nodes, g.Node)
		}
		byNode[g.Node] = append(byNode[g.Node], g)
		freeUnits[g.Node] += g.Units
	}
	sort.SliceStable(nodes, func(i, j int) bool {
		if (nodes[i] == local) != (nodes[j] == local) {
			return nodes[i] == local
		}
		return freeUnits[nodes[i]] > freeUnits[nodes[j]]
	})
	best := "" // one node that suffices alone: local, else the fullest that does
	for _, node := range nodes {
		fits := freeUnits[node] >= units
		if fits && (best == "" || node == local || best != local && freeUnits[node] < freeUnits[best]) {
			best = node
		}
	}
	if best != "" {
		nodes = []string{best}
	}
	for _, node := range nodes {
		for _, g := range byNode[node] {
			if got >= units {
				return picked, got
			}
			picked = append(picked, g.UUID)
			got += g.Units
		}
	}
	return picked, got
}
