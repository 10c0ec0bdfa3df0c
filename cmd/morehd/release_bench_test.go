package main

import (
	"io"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// BenchmarkReleaseLatency measures, over 50 jobs (or MOREH_RELEASE_JOBS),
// how long after a job's last process exits its GPUs are free, as a reader
// of the device's gpus file sees it (1 ms resolution), on the daemon as it
// ships; it reports p50, p99 and max (the target: p99 <= 100 ms).
// MOREH_RELEASE_PARALLEL jobs end at once each round (default 1), to show
// releases sharing commits. Run it with scripts/release_latency.sh.
func BenchmarkReleaseLatency(b *testing.B) {
	jobs, parallel := envInt(b, "MOREH_RELEASE_JOBS", 50), envInt(b, "MOREH_RELEASE_PARALLEL", 1)
	d := morehdtest.StartBinary(b, morehdtest.ShippedBinary(b), "--gpus", "sim:"+strconv.Itoa(parallel)+"x64GB",
		"--max-devices", strconv.Itoa(parallel))
	if d.CgroupDir == "" {
		b.Skip("no writable cgroup v2 hierarchy on this machine: jobs are followed through /proc")
	}
	var ids []string
	for range parallel {
		ids = append(ids, mkdev(b, d, "Small.64GB"))
	}
	var lat []time.Duration
	b.ResetTimer()
	for len(lat) < jobs {
		var procs []*exec.Cmd
		var stdins []io.Closer
		for _, id := range ids {
			p, in := startJobProc(b)
			attach(b, d, id, p.Process.Pid)
			procs, stdins = append(procs, p), append(stdins, in)
		}
		for _, in := range stdins {
			in.Close() // every job's cat ends at once
		}
		var exited []time.Time
		for _, p := range procs {
			p.Wait()
			exited = append(exited, time.Now())
		}
		for i, id := range ids {
			deadline := exited[i].Add(5 * time.Second)
			for bound(b, d, id) {
				if time.Now().After(deadline) {
					b.Fatalf("job not released within 5s:\n%s", d.Log())
				}
				<-time.After(time.Millisecond) // the measurement's resolution, not a wait for the daemon
			}
			lat = append(lat, time.Since(exited[i]))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.Logf("release latency over %d jobs, %d ending at once: p50 %v, p99 %v, max %v (target: p99 <= 100ms)",
		len(lat), parallel, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
}
