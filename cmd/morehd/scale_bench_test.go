package main

// BenchmarkScale runs the real daemon over stores of 1k, 10k and 100k
// devices (over 100, 2k and 20k tokens, filled by cmd/moreh-fill) and
// reports, per size: start-to-ready, idle CPU over 10 s, RssAnon and VmRSS
// after a walk of every token's devices/ and a root read of metrics, and
// the median of each operation. scripts/bench.sh scale prints the growth
// table and the 100k/1k ratios. SCALE_SIZES=1k,10k picks sizes.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scaleSizes are the stores: devices over tokens, ten devices a token.
var scaleSizes = []struct {
	name            string
	devices, tokens int
}{{"1k", 1000, 100}, {"10k", 10000, 2000}, {"100k", 100000, 20000}}

const (
	scaleOps      = 300 // timed runs of each per-token operation
	scaleBulkRuns = 5   // timed runs of root's metrics
	scaleIdle     = 10 * time.Second
)

func BenchmarkScale(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("morehd mounts with mount(2) here and needs root")
	}
	bin := benchBinary(b)
	fill := filepath.Join(b.TempDir(), "moreh-fill")
	if out, err := exec.Command("go", "build", "-o", fill, "../moreh-fill").CombinedOutput(); err != nil {
		b.Fatalf("go build moreh-fill: %v\n%s", err, out)
	}
	want := os.Getenv("SCALE_SIZES")
	for _, size := range scaleSizes {
		if want != "" && !slices.Contains(strings.Split(want, ","), size.name) {
			continue
		}
		b.Run(size.name, func(b *testing.B) {
			state, err := os.MkdirTemp("/dev/shm", "moreh-scale-")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(state)
			if out, err := exec.Command(fill, "--dir", state, "--tokens", strconv.Itoa(size.tokens), "--devices", strconv.Itoa(size.devices)).CombinedOutput(); err != nil {
				b.Fatalf("moreh-fill: %v\n%s", err, out)
			}
			for range b.N {
				scaleRun(b, bin, state, size.devices, size.devices/size.tokens+2)
			}
		})
	}
}

// scaleRun starts morehd over state and measures it.
func scaleRun(b *testing.B, bin, state string, devices, limit int) {
	mount := filepath.Join(b.TempDir(), "mnt")
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "--mount", mount, "--db", filepath.Join(state, "moreh.db"), "--gpus", "sim",
		"--max-devices", strconv.Itoa(limit), "--ready-fd", "3") // moreh-fill's limit: room for a mkdir
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &log
	cmd.ExtraFiles = []*os.File{w}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	ready := time.Since(start)
	r.Close()
	d := &benchDaemon{cmd: cmd, mount: mount}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		syscall.Unmount(mount, syscall.MNT_DETACH)
	}()
	if line != "ready\n" {
		b.Fatalf("morehd did not become ready:\n%s", log.String())
	}
	b.ReportMetric(float64(ready.Microseconds())/1000, "ready-ms")

	// Idle: what the daemon spends while nobody asks anything.
	cpu0 := cpuTicks(b, cmd.Process.Pid)
	<-time.After(scaleIdle) // the measurement's interval, not a wait for the daemon
	cpu1 := cpuTicks(b, cmd.Process.Pid)
	b.ReportMetric(float64(cpu1-cpu0)/100/scaleIdle.Seconds()*100, "idle-cpu-%")

	// Memory after every token's devices/ was listed and root read metrics.
	walk := exec.Command("bash", "-c", `cd "$1" && ls tokens/*/devices >/dev/null && cat metrics >/dev/null`, "walk", mount)
	if out, err := walk.CombinedOutput(); err != nil {
		b.Fatalf("walk: %v\n%s", err, out)
	}
	b.ReportMetric(d.statusMiB(b, "RssAnon"), "anon-MiB")
	b.ReportMetric(d.statusMiB(b, "VmRSS"), "rss-MiB")

	p := func(parts ...string) string { return filepath.Join(append([]string{mount}, parts...)...) }
	current := func() string {
		data, err := os.ReadFile(p("current"))
		if err != nil {
			b.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	ids, err := listNames(p("devices"))
	if err != nil || len(ids) < 2 {
		b.Fatalf("devices of the default token: %v, %v", ids, err)
	}
	a, c := ids[0], ids[1]
	report := func(unit string, runs int, op func(i int) error) {
		times := make([]time.Duration, runs)
		for i := range runs {
			t0 := time.Now()
			if err := op(i); err != nil {
				b.Fatalf("%s: %v", unit, err)
			}
			times[i] = time.Since(t0)
		}
		slices.Sort(times)
		b.ReportMetric(float64(times[runs/2].Nanoseconds())/1000, unit)
	}
	read := func(path string) func(int) error {
		return func(int) error { _, err := os.ReadFile(path); return err }
	}
	report("current-µs", scaleOps, read(p("current")))
	report("status-µs", scaleOps, read(p("status")))
	report("ls-µs", scaleOps, func(int) error { _, err := listNames(p("devices")); return err })
	report("switch-µs", scaleOps, func(i int) error {
		return os.WriteFile(p("current"), []byte([]string{a, c}[i%2]), 0)
	})
	var mkrm []time.Duration
	report("mkdir-µs", scaleOps, func(int) error {
		if err := os.Mkdir(p("devices", "Small.64GB"), 0); err != nil {
			return err
		}
		id := current()
		t0 := time.Now()
		err := os.Remove(p("devices", id))
		mkrm = append(mkrm, time.Since(t0))
		return err
	})
	slices.Sort(mkrm)
	b.ReportMetric(float64(mkrm[len(mkrm)/2].Nanoseconds())/1000, "rmdir-µs")

	sleeper := exec.Command("sleep", "3600")
	if err := sleeper.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	pid := []byte(strconv.Itoa(sleeper.Process.Pid))
	report("attach-µs", scaleOps, func(i int) error { // the process moves between two devices
		return os.WriteFile(p("devices", []string{a, c}[i%2], "procs"), pid, 0)
	})
	report("pool-µs", scaleOps, read(p("pool")))
	var size int
	report("metrics-µs", scaleBulkRuns, func(int) error {
		data, err := os.ReadFile(p("metrics"))
		size = len(data)
		return err
	})
	if size == 0 {
		b.Fatal("metrics is empty")
	}
	b.ReportMetric(float64(size)/(1<<20), "metrics-MiB")
	b.ReportMetric(float64(devices), "devices")
	b.ReportMetric(d.statusMiB(b, "RssAnon"), "anon-end-MiB")
}

// listNames lists a directory as ls does: the names only.
func listNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// cpuTicks is the user and system time of pid, in clock ticks (1/100 s).
func cpuTicks(b *testing.B, pid int) uint64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		b.Fatal(errors.New("unreadable /proc/<pid>/stat"))
	}
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return utime + stime
}
