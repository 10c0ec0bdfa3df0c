package cgroup

import (
	"io"
	"os/exec"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// An exit before Watch raises no event; Watch must still report it.
func TestWatchReportsAnExitBeforeTheWatch(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	g := create(t, m, 9)
	cmd := exec.Command("true")
	startIn(t, g, cmd)
	cmd.Wait()
	if ok, err := g.Populated(); ok || err != nil {
		t.Fatalf("Populated() = %v, %v after the only process was reaped", ok, err)
	}
	if err := w.Watch(g); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, w, 9)
}

// An unwatched job's exit is not reported: the next report is the watched job's.
func TestUnwatch(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	a, b := create(t, m, 1), create(t, m, 2)
	ca, cb := exec.Command("sleep", "60"), exec.Command("sleep", "60")
	startIn(t, a, ca)
	startIn(t, b, cb)
	for _, g := range []*Group{a, b} {
		if err := w.Watch(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Unwatch(1); err != nil {
		t.Fatal(err)
	}
	a.Kill()
	ca.Wait() // a is empty before b is killed, so a report of a would come first
	b.Kill()
	waitEmpty(t, w, 2)
	cb.Wait()
}

// A job that empties, is refilled and empties again is reported each time.
func TestWatchReportsEachTimeTheJobEmpties(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	g := create(t, m, 5)
	for round := 0; round < 3; round++ {
		// Refilled by AddProc, as an attach does. (A clone into a cgroup that
		// cgroup.kill has once killed is itself killed on this kernel: see Kill.)
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := g.AddProc(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if err := w.Watch(g); err != nil { // a no-op after the first round
			t.Fatal(err)
		}
		if ok, _ := g.Populated(); !ok {
			t.Fatalf("round %d: not populated with sleep running: %v %v", round, cmd.Wait(), readString(g.file("cgroup.procs")))
		}
		g.Kill()
		waitEmpty(t, w, 5)
		cmd.Wait()
	}
}

// Release latency: from the moment the last process is told to exit (its
// stdin closes) to the report, over 50 jobs that all run before the first
// ends, as jobs do. Logged, never asserted.
func TestReleaseLatency(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	const jobs = 50
	var cmds []*exec.Cmd
	var stdins []io.Closer
	for i := uint64(1); i <= jobs; i++ {
		g := create(t, m, i)
		cmd := exec.Command("cat")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout = io.Discard
		startIn(t, g, cmd)
		if err := w.Watch(g); err != nil {
			t.Fatal(err)
		}
		cmds, stdins = append(cmds, cmd), append(stdins, stdin)
	}
	var lat []time.Duration
	for i := range cmds {
		start := time.Now()
		stdins[i].Close()
		waitEmpty(t, w, uint64(i+1))
		lat = append(lat, time.Since(start))
		cmds[i].Wait()
	}
	slices.Sort(lat)
	t.Logf("release latency over %d jobs: p50 %v, p99 %v, max %v", jobs, lat[jobs/2], lat[jobs*99/100], lat[jobs-1])
}

func TestWatcherCloseLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := testManager(t)
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	g := create(t, m, 1)
	cmd := exec.Command("true")
	startIn(t, g, cmd)
	cmd.Wait()
	if err := w.Watch(g); err != nil {
		t.Fatal(err)
	}
	// A report is queued that nobody reads: Close must not wait for a reader.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Watch(g); err != ErrWatcherClosed {
		t.Errorf("Watch after Close: %v, want ErrWatcherClosed", err)
	}
}

// Jobs that end while nobody reads Empty are all reported once a reader comes.
func TestWatcherQueuesForASlowReader(t *testing.T) {
	m := testManager(t)
	w := newWatcher(t)
	const jobs = 20
	var cmds []*exec.Cmd
	for i := uint64(1); i <= jobs; i++ {
		g := create(t, m, i)
		cmd := exec.Command("sleep", "60")
		startIn(t, g, cmd)
		if err := w.Watch(g); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i := uint64(1); i <= jobs; i++ {
		g, _ := m.Open(i)
		if err := g.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		c.Wait() // every job is empty before the first report is read
	}
	seen := map[uint64]bool{}
	deadline := time.After(failAfter)
	for len(seen) < jobs {
		select {
		case id := <-w.Empty():
			if id < 1 || id > jobs {
				t.Fatalf("reported job %d, not one of 1..%d", id, jobs)
			}
			seen[id] = true
		case <-deadline:
			t.Fatalf("reported %d of %d jobs within %v", len(seen), jobs, failAfter)
		}
	}
}
