package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/fs/node/cgroup"
)

// BenchmarkJobsCPU measures the daemon's CPU time over a window (10 s, or
// MOREH_CPU_WINDOW) with 25 running jobs and 2,000 unrelated idle processes
// on the machine, then over the same window with the same processes and no
// job, and reports the ratio (the target: at most 1.1); each window
// follows a settling one, reported apart. It builds
// the daemon without the race detector, as it ships; MOREH_CPU_CGROUP_ROOT
// "none" measures the /proc supervision instead. Run it with
// scripts/jobs_cpu.sh. It starts, and kills, only its own processes.
func BenchmarkJobsCPU(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("mounting without fusermount needs root")
	}
	window := 10 * time.Second
	if s := os.Getenv("MOREH_CPU_WINDOW"); s != "" {
		var err error
		if window, err = time.ParseDuration(s); err != nil {
			b.Fatal(err)
		}
	}
	const jobs, idle = 25, 2000
	const settle = 3 * time.Second // three samples: the one-off work of attaching or releasing is done
	dir := b.TempDir()
	bin := filepath.Join(dir, "morehd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// 2,000 idle processes, one process group: killed together at the end.
	idlers := exec.Command("bash", "-c", fmt.Sprintf("for i in $(seq %d); do sleep 3600 & done; echo started; wait", idle))
	idlers.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := idlers.StdoutPipe()
	if err := idlers.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { syscall.Kill(-idlers.Process.Pid, syscall.SIGKILL); idlers.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "started\n" {
		b.Fatalf("idle processes did not start: %q", line)
	}

	mount := filepath.Join(dir, "mnt")
	args := []string{"--mount", mount, "--db", filepath.Join(dir, "db", "moreh.db"), "--gpus", fmt.Sprintf("sim:%dx64GB", jobs),
		"--max-devices", strconv.Itoa(jobs), "--ready-fd", "3"}
	cgroupDir := ""
	if root := os.Getenv("MOREH_CPU_CGROUP_ROOT"); root != "" {
		args = append(args, "--cgroup-root", root)
	} else if d := testCgroupDir(); d != "" {
		cgroupDir = d
		args = append(args, "--cgroup-root", d)
	}
	daemon := exec.Command(bin, args...)
	r, w, _ := os.Pipe()
	daemon.ExtraFiles = []*os.File{w}
	var log strings.Builder
	daemon.Stderr = &log
	if err := daemon.Start(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		daemon.Wait()
		b.Fatalf("morehd did not become ready:\n%s", log.String())
	}
	meter := "" // the daemon's own cgroup, removed once it has exited
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
		syscall.Unmount(mount, syscall.MNT_DETACH)
		if meter != "" {
			os.Remove(meter)
		}
		if cgroupDir != "" {
			os.Remove(cgroupDir) // empty once its jobs ended
		}
	}()
	containment, _ := os.ReadFile(filepath.Join(mount, "version"))
	// The daemon's CPU time in microseconds from a cgroup of its own (every
	// thread, exited ones too), else in clock ticks from /proc.
	cpu := func() time.Duration { return cpuTime(b, daemon.Process.Pid) }
	if root, err := cgroup.FindRoot(); err == nil {
		dir := filepath.Join(root, fmt.Sprintf("moreh-cpu-daemon-%d", os.Getpid()))
		if err := os.Mkdir(dir, 0o755); err == nil {
			meter = dir
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(daemon.Process.Pid)), 0); err == nil {
				cpu = func() time.Duration { return cgroupCPU(b, dir) }
			}
		}
	}

	var held []*exec.Cmd
	for i := range jobs {
		if err := os.Mkdir(filepath.Join(mount, "devices", "Small.64GB"), 0o755); err != nil {
			b.Fatal(err)
		}
		p := exec.Command("sleep", "3600")
		if err := p.Start(); err != nil {
			b.Fatal(err)
		}
		held = append(held, p)
		if err := os.WriteFile(filepath.Join(mount, "devices", strconv.Itoa(2026+i), "procs"), []byte(strconv.Itoa(p.Process.Pid)), 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	// Each state is measured after a settling window of its own, reported
	// apart: attaching 25 jobs (or releasing them) costs once, not while they run.
	settleJobs := cpuOver(cpu, settle)
	withJobs := cpuOver(cpu, window)
	for _, p := range held {
		p.Process.Kill()
		p.Wait()
	}
	morehdtest.Eventually(b, 10*time.Second, "every job is released", func() bool {
		pool, _ := os.ReadFile(filepath.Join(mount, "pool"))
		for line := range strings.Lines(string(pool)) {
			if f := strings.Fields(line); len(f) < 3 || f[2] != "-" {
				return false
			}
		}
		return true
	})
	settleIdle := cpuOver(cpu, settle)
	without := cpuOver(cpu, window)
	b.StopTimer()
	ratio := float64(withJobs) / float64(max(without, 1))
	b.ReportMetric(withJobs.Seconds()/window.Seconds()*100, "cpu%-jobs")
	b.ReportMetric(without.Seconds()/window.Seconds()*100, "cpu%-idle")
	b.ReportMetric(ratio, "ratio")
	last := strings.TrimSpace(string(containment))
	b.Logf("%s; daemon CPU over %v with %d jobs and %d idle processes: %v, with no job: %v; ratio %.2f (target <= 1.1)",
		last[strings.LastIndexByte(last, '\n')+1:], window, jobs, idle, withJobs, without, ratio)
	b.Logf("settling over %v after attaching the jobs: %v, after releasing them: %v (not in the ratio)", settle, settleJobs, settleIdle)
}

// cpuOver is the CPU time cpu counts over window.
func cpuOver(cpu func() time.Duration, window time.Duration) time.Duration {
	before := cpu()
	<-time.After(window) // the measured window itself, not a wait for the daemon
	return cpu() - before
}

// cgroupCPU is the usage_usec of a cgroup's cpu.stat.
func cgroupCPU(b *testing.B, dir string) time.Duration {
	stat, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(stat)) {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			usec, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return time.Duration(usec) * time.Microsecond
		}
	}
	b.Fatalf("no usage_usec in %s/cpu.stat", dir)
	return 0
}

func cpuTime(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// testCgroupDir is a fresh subtree name under the cgroup v2 root, or "".
func testCgroupDir() string {
	root, err := cgroup.FindRoot()
	if err != nil {
		return ""
	}
	return filepath.Join(root, fmt.Sprintf("moreh-cpu-%d", os.Getpid()))
}
