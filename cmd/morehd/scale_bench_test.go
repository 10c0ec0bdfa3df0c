package main

// BenchmarkScale runs the real daemon over stores of 1k, 10k and 100k
// devices (over 100, 2k and 20k tokens, filled by cmd/moreh-fill), all at
// once, and reports per size: start-to-ready, idle CPU over the same 10 s
// (5 s after the last start),
// RssAnon and VmRSS after a walk of every token's devices/ and a root read
// of metrics, and the median of each operation, timed in turns on every
// daemon so that the machine's load weighs on each size alike.
// scripts/bench.sh scale prints the growth table and the 100k/1k ratios.
// SCALE_SIZES=1k,10k picks sizes.

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
	scaleOps      = 300 // timed runs of each per-token operation, on each daemon
	scaleBulkRuns = 5   // timed runs of root's metrics
	scaleIdle     = 10 * time.Second
	scaleSettle   = 5 * time.Second
)

// scaleDaemon is one size's morehd and what was measured of it.
type scaleDaemon struct {
	*benchDaemon
	devices int
	metrics map[string]float64 // by unit
	sleeper *exec.Cmd          // the process attach moves between two devices
	a, c    string             // two devices of the default token
}

func (d *scaleDaemon) path(parts ...string) string {
	return filepath.Join(append([]string{d.mount}, parts...)...)
}

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
	var daemons []*scaleDaemon
	var names []string
	for _, size := range scaleSizes {
		if want != "" && !slices.Contains(strings.Split(want, ","), size.name) {
			continue
		}
		state, err := os.MkdirTemp("/dev/shm", "moreh-scale-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(state) })
		if out, err := exec.Command(fill, "--dir", state, "--tokens", strconv.Itoa(size.tokens), "--devices", strconv.Itoa(size.devices)).CombinedOutput(); err != nil {
			b.Fatalf("moreh-fill: %v\n%s", err, out)
		}
		d := scaleStart(b, bin, state, size.devices/size.tokens+2) // moreh-fill's limit: room for a mkdir
		d.devices = size.devices
		daemons = append(daemons, d)
		names = append(names, size.name)
	}

	// Idle: what each daemon spends while nobody asks anything, once the
	// last one's start (its collection of the start's garbage) is over.
	<-time.After(scaleSettle) // lets the start's background work end; no event marks it
	before := make([]uint64, len(daemons))
	for i, d := range daemons {
		before[i] = cpuTicks(b, d.cmd.Process.Pid)
	}
	<-time.After(scaleIdle) // the measurement's interval, not a wait for the daemon
	for i, d := range daemons {
		d.metrics["idle-cpu-%"] = float64(cpuTicks(b, d.cmd.Process.Pid)-before[i]) / 100 / scaleIdle.Seconds() * 100
	}
	// Memory after every token's devices/ was listed and root read metrics.
	for _, d := range daemons {
		walk := exec.Command("bash", "-c", `cd "$1" && ls tokens/*/devices >/dev/null && cat metrics >/dev/null`, "walk", d.mount)
		if out, err := walk.CombinedOutput(); err != nil {
			b.Fatalf("walk: %v\n%s", err, out)
		}
		d.metrics["anon-MiB"] = d.statusMiB(b, "RssAnon")
		d.metrics["rss-MiB"] = d.statusMiB(b, "VmRSS")
		ids, err := listNames(d.path("devices"))
		if err != nil || len(ids) < 2 {
			b.Fatalf("devices of the default token: %v, %v", ids, err)
		}
		d.a, d.c = ids[0], ids[1]
		d.sleeper = exec.Command("sleep", "3600")
		if err := d.sleeper.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.sleeper.Process.Kill(); d.sleeper.Wait() })
	}

	read := func(parts ...string) func(*scaleDaemon, int) error {
		return func(d *scaleDaemon, _ int) error { _, err := os.ReadFile(d.path(parts...)); return err }
	}
	ops := []struct {
		unit string
		runs int
		op   func(d *scaleDaemon, i int) error
	}{
		{"current-µs", scaleOps, read("current")},
		{"status-µs", scaleOps, read("status")},
		{"ls-µs", scaleOps, func(d *scaleDaemon, _ int) error { _, err := listNames(d.path("devices")); return err }},
		{"switch-µs", scaleOps, func(d *scaleDaemon, i int) error {
			return os.WriteFile(d.path("current"), []byte([]string{d.a, d.c}[i%2]), 0)
		}},
		{"mkdir-µs", scaleOps, func(d *scaleDaemon, _ int) error { return os.Mkdir(d.path("devices", "Small.64GB"), 0) }},
		{"rmdir-µs", scaleOps, func(d *scaleDaemon, _ int) error { // the device the mkdir made current
			id, err := os.ReadFile(d.path("current"))
			if err != nil {
				return err
			}
			return os.Remove(d.path("devices", strings.TrimSpace(string(id))))
		}},
		{"attach-µs", scaleOps, func(d *scaleDaemon, i int) error { // the process moves between two devices
			return os.WriteFile(d.path("devices", []string{d.a, d.c}[i%2], "procs"), []byte(strconv.Itoa(d.sleeper.Process.Pid)), 0)
		}},
		{"pool-µs", scaleOps, read("pool")},
		{"metrics-µs", scaleBulkRuns, read("metrics")},
	}
	// mkdir and rmdir alternate: each mkdir's device is removed before the next.
	for k := 0; k < len(ops); k++ {
		group := ops[k : k+1]
		if ops[k].unit == "mkdir-µs" {
			group, k = ops[k:k+2], k+1
		}
		times := make([][][]time.Duration, len(daemons)) // daemon, op of group, run
		for j := range daemons {
			times[j] = make([][]time.Duration, len(group))
		}
		for i := range group[0].runs {
			for j, d := range daemons {
				for g, o := range group {
					t0 := time.Now()
					if err := o.op(d, i); err != nil {
						b.Fatalf("%s on %s: %v", o.unit, names[j], err)
					}
					times[j][g] = append(times[j][g], time.Since(t0))
				}
			}
		}
		for j, d := range daemons {
			for g, o := range group {
				slices.Sort(times[j][g])
				d.metrics[o.unit] = float64(times[j][g][len(times[j][g])/2].Nanoseconds()) / 1000
			}
		}
	}
	for j, d := range daemons {
		data, err := os.ReadFile(d.path("metrics"))
		if err != nil || len(data) == 0 {
			b.Fatalf("metrics of %s: %d bytes, %v", names[j], len(data), err)
		}
		d.metrics["metrics-MiB"] = float64(len(data)) / (1 << 20)
		d.metrics["devices"] = float64(d.devices)
		b.Run(names[j], func(b *testing.B) {
			for unit, v := range d.metrics {
				b.ReportMetric(v, unit)
			}
		})
	}
}

// scaleStart starts morehd over state and times it to ready.
func scaleStart(b *testing.B, bin, state string, limit int) *scaleDaemon {
	mount := filepath.Join(b.TempDir(), "mnt")
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(bin, "--mount", mount, "--db", filepath.Join(state, "moreh.db"), "--gpus", "sim",
		"--max-devices", strconv.Itoa(limit), "--ready-fd", "3")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &log
	cmd.ExtraFiles = []*os.File{w}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		w.Close()
		b.Fatal(err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	ready := time.Since(start)
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		syscall.Unmount(mount, syscall.MNT_DETACH)
	})
	if line != "ready\n" {
		b.Fatalf("morehd did not become ready:\n%s", log.String())
	}
	d := &scaleDaemon{benchDaemon: &benchDaemon{cmd: cmd, mount: mount}, metrics: map[string]float64{}}
	d.metrics["ready-ms"] = float64(ready.Microseconds()) / 1000
	return d
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
