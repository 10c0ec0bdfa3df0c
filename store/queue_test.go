package store

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moreh-io/moreh/store/etcdtest"
)

// simPool is n one-unit GPUs of node "local".
func simPool(n int) []PoolEntry {
	pool := make([]PoolEntry, n)
	for i := range pool {
		pool[i] = PoolEntry{PoolGPU: PoolGPU{UUID: fmt.Sprintf("GPU-%d", i), Node: "local", Index: i, Units: 1}}
	}
	return pool
}

// TestPlanHoldsForTheHead is the starvation test of the rule itself: a pool
// of 4, small 1-GPU jobs ending and arriving back to back, a 4-GPU job
// queued among them. With the head's hold the big job starts once the
// small jobs running when it came have ended (three ends); without the
// hold the small jobs take every freed GPU and it never starts.
func TestPlanHoldsForTheHead(t *testing.T) {
	for _, hold := range []bool{true, false} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			pool := simPool(4)
			var running []uint64 // small jobs, oldest first
			next := uint64(1)
			for i := range 3 {
				pool[i].Job = next
				running = append(running, next)
				next++
			}
			big := waiter{job: Job{ID: next, Token: "t", Device: 100, Node: "local", Waiting: true}, units: 4}
			next++
			queue := []waiter{big}
			startedAt := -1
			for round := 0; round < 20 && startedAt < 0; round++ {
				// A small job arrives behind the big one; then the queue is planned.
				queue = append(queue, waiter{job: Job{ID: next, Token: "t", Device: 1000 + next, Node: "local", Waiting: true}, units: 1})
				next++
				starts, waits := plan(pool, queue, map[string]int{"t": len(running)}, hold)
				var left []waiter
				for _, w := range queue {
					gpus, ok := starts[w.job.ID]
					if !ok {
						left = append(left, w)
						continue
					}
					if w.job.ID == big.job.ID {
						startedAt = round
					} else {
						running = append(running, w.job.ID)
					}
					for i := range pool {
						for _, uuid := range gpus {
							if pool[i].UUID == uuid {
								pool[i].Job = w.job.ID
							}
						}
					}
				}
				if startedAt < 0 && waits[big.job.ID].Reason != WaitPool {
					t.Fatalf("round %d: the big job waits for %q, want the pool", round, waits[big.job.ID].Reason)
				}
				queue = left
				// The oldest small job ends.
				if len(running) > 0 {
					for i := range pool {
						if pool[i].Job == running[0] {
							pool[i].Job = 0
						}
					}
					running = running[1:]
				}
			}
			switch {
			case hold && (startedAt < 0 || startedAt > 3):
				t.Errorf("with the hold the 4-GPU job started in round %d, want by round 3 (the three running jobs' ends)", startedAt)
			case !hold && startedAt >= 0:
				t.Errorf("without the hold the 4-GPU job started in round %d: the test would not show starvation", startedAt)
			}
			if hold && len(queue) == 0 {
				t.Errorf("the small jobs that came after the big one did not wait behind it")
			}
		})
	}
}

// queueRegistry is a registry with a pool of n one-unit GPUs of its node.
func queueRegistry(t *testing.T, n int, opts Options) (*Registry, string) {
	t.Helper()
	opts.Key = []byte("a queue test key, thirty-two b!!")
	reg, path := openTestRegistry(t, opts)
	if _, err := reg.SetPool(t.Context(), queuePool(reg, n)); err != nil {
		t.Fatal(err)
	}
	return reg, path
}

// queuePool is a pool of n one-unit GPUs of reg's node.
func queuePool(reg *Registry, n int) []PoolGPU {
	gpus := make([]PoolGPU, n)
	for i := range gpus {
		gpus[i] = PoolGPU{UUID: fmt.Sprintf("%s-GPU-%d", reg.Node(), i), Index: i, Units: 1, MemoryMiB: UnitMiB}
	}
	return gpus
}

func attachNew(t *testing.T, reg *Registry, token, model string, pid int) Job {
	t.Helper()
	d, err := reg.CreateDevice(t.Context(), token, model)
	if err != nil {
		t.Fatal(err)
	}
	j, err := reg.Attach(t.Context(), token, d.ID, Proc{PID: pid, Start: uint64(pid)})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func jobState(t *testing.T, reg *Registry, id uint64) (Job, Wait) {
	t.Helper()
	j, w, err := reg.JobState(t.Context(), id)
	if err != nil {
		t.Fatalf("JobState(%d): %v", id, err)
	}
	return j, w
}

// TestPriorityOrder: a priority-10 job that came later starts before a
// waiting priority-0 one, and the queue lists it first.
func TestPriorityOrder(t *testing.T) {
	reg, _ := queueRegistry(t, 1, Options{})
	ctx := t.Context()
	if _, _, err := reg.CreateToken(ctx, "urgent", 5); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetPriority(ctx, "urgent", 10); err != nil {
		t.Fatal(err)
	}
	running := attachNew(t, reg, "default", "Small.64GB", 100)
	low := attachNew(t, reg, "default", "Small.64GB", 101)
	high := attachNew(t, reg, "urgent", "Small.64GB", 102)
	if running.Waiting || !low.Waiting || !high.Waiting {
		t.Fatalf("waiting = %v, %v, %v; want only the first running", running.Waiting, low.Waiting, high.Waiting)
	}
	q, err := reg.Queue(ctx)
	if err != nil || len(q) != 2 || q[0].Job.ID != high.ID || q[0].Wait.Position != 1 || q[1].Job.ID != low.ID || q[1].Wait.Position != 2 {
		t.Fatalf("queue = %+v, %v; want the priority-10 job first", q, err)
	}
	if err := reg.EndJob(ctx, running.ID, EndExit); err != nil {
		t.Fatal(err)
	}
	if j, _ := jobState(t, reg, high.ID); j.Waiting || len(j.GPUs) != 1 {
		t.Errorf("the priority-10 job = %+v after the GPU freed, want it running", j)
	}
	if j, w := jobState(t, reg, low.ID); !j.Waiting || w.Position != 1 || w.Reason != WaitPool {
		t.Errorf("the priority-0 job = %+v %+v, want it first in the queue, waiting for GPUs", j, w)
	}
}

// TestUnitQuota: with max_units 4 a second Large job waits for the quota,
// not the pool, and starts when the first ends; a model larger than the
// quota is refused at once.
func TestUnitQuota(t *testing.T) {
	reg, _ := queueRegistry(t, 8, Options{})
	ctx := t.Context()
	if err := reg.SetMaxUnits(ctx, "default", 4); err != nil {
		t.Fatal(err)
	}
	first := attachNew(t, reg, "default", "Large.256GB", 200)
	second := attachNew(t, reg, "default", "Large.256GB", 201)
	if first.Waiting || !second.Waiting {
		t.Fatalf("waiting = %v, %v; want the second only", first.Waiting, second.Waiting)
	}
	if _, w := jobState(t, reg, second.ID); w.Reason != WaitQuota || w.Held != 4 || w.MaxUnits != 4 || w.Units != 4 {
		t.Errorf("the second job waits for %+v, want the quota (4 of 4 held)", w)
	}
	d, err := reg.CreateDevice(ctx, "default", "xLarge.512GB")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Attach(ctx, "default", d.ID, Proc{PID: 202, Start: 202}); KindOf(err) != KindQuota {
		t.Errorf("an 8-unit job under a 4-unit quota = %v, want KindQuota", err)
	}
	if err := reg.EndJob(ctx, first.ID, EndExit); err != nil {
		t.Fatal(err)
	}
	if j, _ := jobState(t, reg, second.ID); j.Waiting || len(j.GPUs) != 4 {
		t.Errorf("the second job = %+v after the first ended, want it running on 4 GPUs", j)
	}
}

// TestQuotaUnderConcurrentAttachers: 16 attachers at once on a token with
// 6 devices at most and 4 units of quota, on a pool of 16: no more than 6
// devices exist, running jobs never hold more than 4 units, and as jobs
// end the waiting ones start until every job has run.
func TestQuotaUnderConcurrentAttachers(t *testing.T) {
	reg, _ := queueRegistry(t, 16, Options{MaxDevices: 6})
	ctx := t.Context()
	if err := reg.SetMaxUnits(ctx, "default", 4); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			d, err := reg.CreateDevice(ctx, "default", "Medium.128GB")
			if KindOf(err) == KindQuota {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := reg.Attach(ctx, "default", d.ID, Proc{PID: 300 + i, Start: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	check := func(step string) (running []Job, waiting int) {
		jobs, err := reg.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		units := 0
		for _, j := range jobs {
			if j.Waiting {
				waiting++
				continue
			}
			running = append(running, j)
			units += j.Units
		}
		if units > 4 {
			t.Fatalf("%s: running jobs hold %d units, over the quota of 4", step, units)
		}
		return running, waiting
	}
	v, err := reg.View(ctx, "default")
	if err != nil || len(v.Devices) != 6 {
		t.Fatalf("%d devices, %v; want the limit, 6", len(v.Devices), err)
	}
	ran := 0
	for step := 0; ; step++ {
		running, waiting := check(fmt.Sprintf("step %d", step))
		if len(running) == 0 {
			if waiting != 0 {
				t.Fatalf("step %d: %d jobs wait and none runs", step, waiting)
			}
			break
		}
		if len(running) != 2 && waiting > 0 {
			t.Fatalf("step %d: %d running with %d waiting, want 2 (4 units of Medium)", step, len(running), waiting)
		}
		if err := reg.EndJob(ctx, running[0].ID, EndExit); err != nil {
			t.Fatal(err)
		}
		ran++
	}
	if ran != 6 {
		t.Errorf("%d jobs ran, want 6", ran)
	}
}

// TestQueueSurvivesReopen: the queue is in the store: order, positions and
// waiting reasons are the same after a reopen (a restart).
func TestQueueSurvivesReopen(t *testing.T) {
	reg, path := queueRegistry(t, 1, Options{})
	attachNew(t, reg, "default", "Small.64GB", 400)
	for pid := 401; pid <= 403; pid++ {
		attachNew(t, reg, "default", "Small.64GB", pid)
	}
	before, err := reg.Queue(t.Context())
	if err != nil || len(before) != 3 {
		t.Fatalf("queue = %v, %v", before, err)
	}
	reg = reopen(t, reg, path, Options{Key: []byte("a queue test key, thirty-two b!!")})
	// As a daemon does at start: on etcd its GPUs left the pool with its lease.
	if _, err := reg.SetPool(t.Context(), queuePool(reg, 1)); err != nil {
		t.Fatal(err)
	}
	after, err := reg.Queue(t.Context())
	if err != nil || len(after) != len(before) {
		t.Fatalf("queue after reopen = %v, %v", after, err)
	}
	for i := range before {
		if after[i].Job.ID != before[i].Job.ID || after[i].Wait != before[i].Wait || !after[i].Job.Queued.Equal(before[i].Job.Queued) {
			t.Errorf("entry %d: %+v after reopen, want %+v", i, after[i], before[i])
		}
	}
}

// TestQueueTwoNodesEtcd: two nodes on one etcd see one queue, and the
// head's hold covers GPUs on either node: GPUs freed on one node are not
// taken by a later small job of the other, and the head starts on both.
func TestQueueTwoNodesEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	open := func(node string) *Registry {
		eng, err := OpenEtcd(t.Context(), EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: "/queue/", LeaseTTL: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		reg, err := Open(t.Context(), eng, Options{Node: node, MaxDevices: 10, Key: []byte("a queue test key, thirty-two b!!")})
		if err != nil {
			t.Fatal(err)
		}
		gpus := []PoolGPU{{UUID: node + "-0", Index: 0, Units: 1}, {UUID: node + "-1", Index: 1, Units: 1}}
		if _, err := reg.SetPool(t.Context(), gpus); err != nil {
			t.Fatal(err)
		}
		return reg
	}
	a, b := open("node-a"), open("node-b")
	onA := attachNew(t, a, "default", "Medium.128GB", 500)
	onB := attachNew(t, b, "default", "Medium.128GB", 501)
	head := attachNew(t, a, "default", "Large.256GB", 502)
	small := attachNew(t, b, "default", "Small.64GB", 503)
	if onA.Waiting || onB.Waiting || !head.Waiting || !small.Waiting {
		t.Fatalf("waiting = %v %v %v %v, want the Large and the Small", onA.Waiting, onB.Waiting, head.Waiting, small.Waiting)
	}
	for _, reg := range []*Registry{a, b} {
		q, err := reg.Queue(t.Context())
		if err != nil || len(q) != 2 || q[0].Job.ID != head.ID || q[1].Job.ID != small.ID {
			t.Fatalf("node %s sees the queue %+v, %v; want the Large, then the Small", reg.Node(), q, err)
		}
	}
	if err := b.EndJob(t.Context(), onB.ID, EndExit); err != nil {
		t.Fatal(err)
	}
	if j, w := jobState(t, a, small.ID); !j.Waiting || w.Reason != WaitPool {
		t.Fatalf("the Small job took node-b's freed GPUs held for the head: %+v %+v", j, w)
	}
	other, err := b.CreateDevice(t.Context(), "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Fits(t.Context(), "default", other.ID); KindOf(err) != KindAgain {
		t.Errorf("fits of a new Small device with 2 GPUs free but held for the head = %v, want KindAgain", err)
	}
	if err := a.EndJob(t.Context(), onA.ID, EndExit); err != nil {
		t.Fatal(err)
	}
	j, _ := jobState(t, b, head.ID)
	if j.Waiting || len(j.GPUs) != 4 {
		t.Fatalf("the head = %+v, want it running on all four GPUs of both nodes", j)
	}
	if j, w := jobState(t, b, small.ID); !j.Waiting || w.Position != 1 {
		t.Errorf("the Small job = %+v %+v, want it first in the queue now", j, w)
	}
}

// FuzzParseSched: the parsers of priority, shared and max_units never
// panic; a success reads back in the one spelling the file shows, within
// its range; a failure is KindInvalid in one line.
func FuzzParseSched(f *testing.F) {
	for _, s := range []string{"0", "-99", "99", "100", "-0", "+1", "1", "none", "4", "05"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		invalid := func(what string, err error) {
			if KindOf(err) != KindInvalid || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("%s(%q) error %v, want one line of KindInvalid", what, s, err)
			}
		}
		if p, err := ParsePriority(s); err != nil {
			invalid("ParsePriority", err)
		} else if p < MinPriority || p > MaxPriority || strconv.Itoa(p) != s {
			t.Fatalf("ParsePriority(%q) = %d", s, p)
		}
		if b, err := ParseShared(s); err != nil {
			invalid("ParseShared", err)
		} else if (b && s != "1") || (!b && s != "0") {
			t.Fatalf("ParseShared(%q) = %v", s, b)
		}
		if n, err := ParseMaxUnits(s); err != nil {
			invalid("ParseMaxUnits", err)
		} else if FormatMaxUnits(n) != s || n < 0 || n > MaxUnitsLimit {
			t.Fatalf("ParseMaxUnits(%q) = %d, shown %q", s, n, FormatMaxUnits(n))
		}
	})
}

// TestShrunkPoolHoldsNothing: a Large job queued on a pool of 4 that then
// shrinks to 2 (the node came back with fewer GPUs) can start on nothing;
// it waits for the pool to grow, says so, and holds none of the free GPUs,
// so a Small job behind it starts at once. When the pool grows back, it
// starts. (Before, it held the free GPUs as the queue's head for good.)
func TestShrunkPoolHoldsNothing(t *testing.T) {
	reg, _ := queueRegistry(t, 4, Options{MaxDevices: 5})
	ctx := t.Context()
	gpus := func(n int) []PoolGPU { return queuePool(reg, n) }
	running := attachNew(t, reg, "default", "Small.64GB", 400) // on GPU 0: the Large job must wait
	large := attachNew(t, reg, "default", "Large.256GB", 401)
	if running.Waiting || !large.Waiting {
		t.Fatalf("waiting = %v, %v; want the Large job only", running.Waiting, large.Waiting)
	}
	// GPUs 2 and 3 leave; the running job keeps GPU 0 (or is ended, when it had one of them).
	if _, err := reg.SetPool(ctx, gpus(2)); err != nil {
		t.Fatal(err)
	}
	if _, w := jobState(t, reg, large.ID); w.Reason != WaitPoolSize || w.Pool != 2 || w.Units != 4 {
		t.Errorf("the Large job on a pool of 2 waits for %+v, want pool-size (2 units of 4)", w)
	}
	small := attachNew(t, reg, "default", "Small.64GB", 402)
	if small.Waiting || len(small.GPUs) != 1 {
		t.Errorf("a Small job behind it = %+v, want it running on the free GPU", small)
	}
	if err := reg.EndJob(ctx, small.ID, EndExit); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.SetPool(ctx, gpus(5)); err != nil {
		t.Fatal(err)
	}
	if j, _ := jobState(t, reg, large.ID); j.Waiting || len(j.GPUs) != 4 {
		t.Errorf("the Large job after the pool grew to 5 = %+v, want it running on 4 GPUs", j)
	}
}

// TestLeftJobIsRecorded: a job whose processes exit while it waits leaves
// the queue with a history entry of its own: reason left, no GPUs, no time
// bound (nothing added to the token's usage), and how long it waited.
func TestLeftJobIsRecorded(t *testing.T) {
	reg, _ := queueRegistry(t, 1, Options{})
	ctx := t.Context()
	clock := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	reg.now = func() time.Time { return clock }
	reg.OnJobFigures(func(uint64) JobFigures { return JobFigures{PeakMiB: 9000, MeanUtilization: 40} })
	running := attachNew(t, reg, "default", "Small.64GB", 500)
	waiting := attachNew(t, reg, "default", "Small.64GB", 501)
	if running.Waiting || !waiting.Waiting {
		t.Fatalf("waiting = %v, %v; want the second only", running.Waiting, waiting.Waiting)
	}
	before, err := reg.Token(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(3 * time.Second)
	if err := reg.EndJob(ctx, waiting.ID, EndExit); err != nil {
		t.Fatal(err)
	}
	entries, err := reg.History(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("history = %+v, want the left job's entry alone", entries)
	}
	h := entries[0]
	if h.Job != waiting.ID || h.Reason != EndLeft || len(h.GPUs) != 0 || h.Units != 1 || h.WaitedMillis != 3000 ||
		!h.Started.Equal(h.Ended) || !h.Ended.Equal(clock) || h.PeakMiB != 0 || h.MeanUtilization != NoFigure || h.Fits != "-" {
		t.Errorf("the left job's entry = %+v", h)
	}
	after, err := reg.Token(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if after.UnitMillis != before.UnitMillis {
		t.Errorf("usage went from %d to %d unit-ms for a job that held nothing", before.UnitMillis, after.UnitMillis)
	}
	if q, err := reg.Queue(ctx); err != nil || len(q) != 0 {
		t.Errorf("queue after it left = %+v, %v; want empty", q, err)
	}
}
