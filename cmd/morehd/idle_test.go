package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// TestIdleJobTimeout: under --idle-job-timeout 3s, a job that sleeps (no
// CPU, so the sim shows 0% and unchanged memory) is warned, then reset and
// recorded as idle; a busy job under the same timeout keeps its GPUs.
func TestIdleJobTimeout(t *testing.T) {
	d := morehdtest.Start(t, "--gpus", "sim:4x64GB", "--idle-job-timeout", "3s", "--sample-interval", "100ms")
	for range 2 {
		if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sleeper := exec.Command("sleep", "600")
	busy := exec.Command("python3", "-c", "while True: pass")
	for _, c := range []*exec.Cmd{sleeper, busy} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	attach(t, d, "2026", sleeper.Process.Pid)
	attach(t, d, "2027", busy.Process.Pid)

	morehdtest.Eventually(t, 15*time.Second, "the sleeping job is reset as idle", func() bool {
		return read(t, d.Path("devices", "2026", "gpus")) == ""
	})
	var history []struct {
		Device uint64 `json:"device"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(read(t, d.Path("tokens", "default", "history.json"))), &history); err != nil {
		t.Fatal(err)
	}
	if len(history) != 1 || history[0].Device != 2026 || history[0].Reason != "idle" {
		t.Errorf("history after the idle reset: %+v", history)
	}
	errs := read(t, d.Path("tokens", "default", "errors"))
	if !strings.Contains(errs, "it will be reset in") || !strings.Contains(errs, "is reset: its GPUs were idle") {
		t.Errorf("errors lack the warning and the reset:\n%s\nlog:\n%s", errs, linesWith(d.Log(), "job", 20))
	}
	if read(t, d.Path("devices", "2027", "gpus")) == "" {
		t.Error("the busy job lost its GPUs")
	}
	if !strings.Contains(d.Log(), `msg="idle job warned"`) {
		t.Error("the warning is not logged")
	}
}

// TestIdleJobTimeoutPerToken: root's admin/tokens/<n>/idle_job_timeout
// overrides --idle-job-timeout for the token's jobs, both ways: 2s where the
// daemon has none resets a sleeping job as idle; off where the daemon has 2s
// leaves one bound.
func TestIdleJobTimeoutPerToken(t *testing.T) {
	for _, c := range []struct {
		flag, override string
		reset          bool
	}{{"0", "2s", true}, {"2s", "off", false}} {
		d := morehdtest.Start(t, "--gpus", "sim:4x64GB", "--idle-job-timeout", c.flag, "--sample-interval", "100ms")
		file := d.Path("admin", "tokens", "default", "idle_job_timeout")
		if got := read(t, file); got != "default\n" {
			t.Errorf("idle_job_timeout before a write = %q", got)
		}
		if err := os.WriteFile(file, []byte(c.override+"\n"), 0); err != nil {
			t.Fatal(err)
		}
		if got := read(t, file); got != c.override+"\n" {
			t.Errorf("idle_job_timeout after writing %s = %q", c.override, got)
		}
		if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
		sleeper := exec.Command("sleep", "600")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
		attach(t, d, "2026", sleeper.Process.Pid)
		bound := func() bool { return read(t, d.Path("devices", "2026", "gpus")) != "" }
		if c.reset {
			morehdtest.Eventually(t, 20*time.Second, "the token's 2s resets the sleeping job", func() bool { return !bound() })
			if !strings.Contains(read(t, d.Path("tokens", "default", "history")), " idle ") {
				t.Errorf("history lacks the idle reset:\n%s", read(t, d.Path("tokens", "default", "history")))
			}
		} else {
			morehdtest.Throughout(t, 5*time.Second, "the token's off keeps the sleeping job bound past the daemon's 2s", bound)
		}
		d.Stop()
	}
}
