package main

// BenchmarkDaemonRSS measures the resident memory of the real daemon
// (built without -race, which multiplies memory) over a store of 10,000
// devices spread over 1,000 tokens: right after start, and after a walk that
// lists every token's devices (which makes an inode of each of the 10,000
// device directories) and reads every token's status and status.json. The
// walk's time is the ns/op; rss-MiB is VmRSS after the walks, hwm-MiB the
// peak (VmHWM), start-MiB VmRSS once ready. scripts/bench.sh reports it.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/store"
)

const (
	benchTokens    = 1000
	benchPerToken  = 10
	benchKeyLength = 32
)

// benchSeed is a state directory (moreh.db and token.key) of 10,000 devices,
// built once per test binary through the store's public API and kept as
// unlinked open files, so that nothing is left behind.
var benchSeed struct {
	once sync.Once
	db   *os.File
	key  []byte
	took time.Duration
	err  error
}

func benchState(b *testing.B) (*os.File, []byte) {
	b.Helper()
	benchSeed.once.Do(func() {
		start := time.Now()
		dir, err := os.MkdirTemp("/dev/shm", "moreh-bench-")
		if err != nil {
			benchSeed.err = err
			return
		}
		defer os.RemoveAll(dir)
		benchSeed.db, benchSeed.key, benchSeed.err = benchBuildState(dir)
		benchSeed.took = time.Since(start)
	})
	if benchSeed.err != nil {
		b.Fatal(benchSeed.err)
	}
	b.Logf("seed state of %d devices over %d tokens: built in %v (once per test binary)", benchTokens*benchPerToken, benchTokens, benchSeed.took.Round(time.Millisecond))
	return benchSeed.db, benchSeed.key
}

func benchBuildState(dir string) (*os.File, []byte, error) {
	ctx := context.Background()
	key, err := store.LoadKey(filepath.Join(dir, "token.key"))
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, "moreh.db")
	eng, err := store.OpenBolt(path, time.Second)
	if err != nil {
		return nil, nil, err
	}
	reg, err := store.Open(ctx, eng, store.Options{MaxDevices: benchPerToken, Key: key})
	if err != nil {
		eng.Close()
		return nil, nil, err
	}
	names := []string{"default"}
	for i := 1; i < benchTokens; i++ {
		name := fmt.Sprintf("t%04d", i)
		if _, _, err := reg.CreateToken(ctx, name, benchPerToken); err != nil {
			eng.Close()
			return nil, nil, err
		}
		names = append(names, name)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range benchPerToken {
				if _, err := reg.CreateDevice(ctx, name, "Small.64GB"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		eng.Close()
		return nil, nil, err
	}
	if err := eng.Close(); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	return f, key, err
}

// benchBinary builds morehd as it ships: no -race.
func benchBinary(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "morehd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// benchDaemon is a running morehd.
type benchDaemon struct {
	cmd   *exec.Cmd
	mount string
}

// benchStart runs bin over a copy of the seed state and waits for ready.
func benchStart(b *testing.B, bin string) *benchDaemon {
	b.Helper()
	db, key := benchState(b)
	base := b.TempDir()
	state := filepath.Join(base, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "token.key"), key, 0o600); err != nil {
		b.Fatal(err)
	}
	st, err := db.Stat()
	if err != nil {
		b.Fatal(err)
	}
	dst, err := os.Create(filepath.Join(state, "moreh.db"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(db, 0, st.Size())); err != nil {
		b.Fatal(err)
	}
	dst.Close()
	d := &benchDaemon{mount: filepath.Join(base, "mnt")}
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	d.cmd = exec.Command(bin, "--mount", d.mount, "--db", filepath.Join(state, "moreh.db"), "--gpus", "sim",
		"--max-devices", strconv.Itoa(benchPerToken), "--ready-fd", "3")
	var log strings.Builder
	d.cmd.Stdout, d.cmd.Stderr = io.Discard, &log
	d.cmd.ExtraFiles = []*os.File{w}
	if err := d.cmd.Start(); err != nil {
		w.Close()
		b.Fatal(err)
	}
	w.Close()
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		d.cmd.Wait()
		b.Fatalf("morehd did not become ready:\n%s", log.String())
	}
	b.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- d.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		syscall.Unmount(d.mount, syscall.MNT_DETACH)
	})
	return d
}

// status returns a field of /proc/<pid>/status in MiB.
func (d *benchDaemon) statusMiB(b *testing.B, field string) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/<pid>/status", field)
	return 0
}

// walk is what ls and cat in other processes do to every token's files.
func (d *benchDaemon) walk(b *testing.B) {
	b.Helper()
	cmd := exec.Command("bash", "-c", `cd "$1" && ls tokens/*/devices >/dev/null && cat tokens/*/status tokens/*/status.json >/dev/null`, "walk", d.mount)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("walk: %v\n%s", err, out)
	}
}

func BenchmarkDaemonRSS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("morehd mounts with mount(2) here and needs root")
	}
	bin := benchBinary(b)
	b.Run("10k", func(b *testing.B) {
		d := benchStart(b, bin)
		start := d.statusMiB(b, "VmRSS")
		b.ResetTimer()
		for range b.N {
			d.walk(b)
		}
		b.StopTimer()
		b.ReportMetric(start, "start-MiB")
		b.ReportMetric(d.statusMiB(b, "VmRSS"), "rss-MiB")
		b.ReportMetric(d.statusMiB(b, "VmHWM"), "hwm-MiB")
	})
}
