package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// historyAt reads the default token's history.json through a mount.
func historyAt(t *testing.T, d *morehdtest.Daemon) []store.HistoryEntry {
	t.Helper()
	var h []store.HistoryEntry
	if err := json.Unmarshal([]byte(read(t, d.Path("tokens", "default", "history.json"))), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// sleeper starts a process to attach, ended (if still running) at cleanup.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// endJob kills a job's process and waits until its device holds no GPU.
func endJob(t *testing.T, d *morehdtest.Daemon, id string, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Kill()
	cmd.Wait()
	morehdtest.Eventually(t, 10*time.Second, "the job's GPUs go back", func() bool { return read(t, d.Path("devices", id, "gpus")) == "" })
}

// TestHistorySurvivesSIGKILL: the history and usage written before a
// SIGKILL of the daemon are there after the restart, and a job that ended
// while the daemon was dead is recorded at the restart, once.
func TestHistorySurvivesSIGKILL(t *testing.T) {
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB")
	if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	first := sleeper(t)
	attach(t, d, "2026", first.Process.Pid)
	endJob(t, d, "2026", first)
	second := sleeper(t)
	attach(t, d, "2026", second.Process.Pid)
	before := historyAt(t, d)
	usage := read(t, d.Path("tokens", "default", "usage"))
	if len(before) != 1 || before[0].Job != 1 || before[0].Reason != store.EndExit || usage == "unit_seconds 0.000\n" {
		t.Fatalf("history before the kill: %+v, usage %q", before, usage)
	}

	d.Kill()
	second.Process.Kill() // job 2 ends while no daemon watches
	second.Wait()
	d.Restart()
	morehdtest.Eventually(t, 10*time.Second, "the job that ended in the dark is recorded", func() bool { return len(historyAt(t, d)) == 2 })
	after := historyAt(t, d)
	if !slices.EqualFunc(after[:1], before, func(a, b store.HistoryEntry) bool {
		return a.Job == b.Job && a.Ended.Equal(b.Ended) && a.Reason == b.Reason
	}) {
		t.Errorf("the entry from before the kill changed: %+v, was %+v", after[0], before[0])
	}
	if after[1].Job != 2 || after[1].Device != 2026 || after[1].Reason != store.EndExit {
		t.Errorf("the job that ended while the daemon was dead: %+v", after[1])
	}
	if got := read(t, d.Path("tokens", "default", "usage")); unitSeconds(t, got) <= unitSeconds(t, usage) {
		t.Errorf("usage after the restart = %q, not more than %q before (job 2 ran too)", got, usage)
	}
	d.Stop()
	d.Restart()
	if got := historyAt(t, d); len(got) != 2 {
		t.Errorf("after a clean restart the history has %d entries, want the same 2", len(got))
	}
}

// unitSeconds reads a token's usage file.
func unitSeconds(t *testing.T, usage string) float64 {
	t.Helper()
	var v float64
	if _, err := fmt.Sscanf(usage, "unit_seconds %g\n", &v); err != nil {
		t.Fatalf("usage %q: %v", usage, err)
	}
	return v
}

// TestClusterHistoryAcrossNodes: with etcd, jobs that ran on two nodes are
// in one history, read the same on a third, each naming its node.
func TestClusterHistoryAcrossNodes(t *testing.T) {
	c := startCluster(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	for i, n := range []*morehdtest.Daemon{a, b} {
		if err := os.Mkdir(n.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
		id := []string{"2026", "2027"}[i]
		job := sleeper(t)
		attach(t, n, id, job.Process.Pid)
		endJob(t, n, id, job)
	}
	morehdtest.Eventually(t, 10*time.Second, "node c reads both jobs", func() bool { return len(historyAt(t, cc)) == 2 })
	h := historyAt(t, cc)
	if h[0].Device != 2026 || !slices.Equal(h[0].Nodes, []string{"node-a"}) || h[1].Device != 2027 || !slices.Equal(h[1].Nodes, []string{"node-b"}) {
		t.Errorf("one history for two nodes: %+v", h)
	}
	if got, want := read(t, a.Path("tokens", "default", "history")), read(t, cc.Path("tokens", "default", "history")); got != want {
		t.Errorf("node a's history differs from node c's:\n%s---\n%s", got, want)
	}
}
