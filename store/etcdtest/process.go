package etcdtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ProcessBinary is the etcd server run as real processes: $MOREH_ETCD_BIN,
// else etcd on PATH (Debian's etcd-server); "" when there is none, or when
// MOREH_ETCD=embedded asks for the in-process server.
func ProcessBinary() string {
	if os.Getenv("MOREH_ETCD") == "embedded" {
		return ""
	}
	if bin := os.Getenv("MOREH_ETCD_BIN"); bin != "" {
		return bin
	}
	bin, _ := exec.LookPath("etcd")
	return bin
}

// member is one etcd server process.
type member struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
}

func (c *Cluster) startProcess(i int, state string) error {
	var initial []string
	for j, name := range c.names {
		initial = append(initial, name+"="+c.peers[j])
	}
	cmd := exec.Command(c.bin,
		"--name", c.names[i], "--data-dir", filepath.Join(c.dir, c.names[i]),
		"--listen-peer-urls", c.peers[i], "--initial-advertise-peer-urls", c.peers[i],
		"--listen-client-urls", c.clients[i], "--advertise-client-urls", c.clients[i],
		"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", state,
		"--initial-cluster-token", "moreh-test", "--max-txn-ops", "4096",
		"--logger", "zap", "--log-level", "error")
	log, err := os.Create(filepath.Join(c.dir, c.names[i]+".log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcd member %s: %w", c.names[i], err)
	}
	m := &member{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(m.done) }()
	if err := waitHealthy(c.clients[i], m.done, 60*time.Second); err != nil {
		m.kill()
		b, _ := os.ReadFile(log.Name())
		return fmt.Errorf("etcd member %s: %w\n%s", c.names[i], err, b)
	}
	c.mu.Lock()
	c.procs[i] = m
	c.mu.Unlock()
	return nil
}

// waitHealthy returns once the member at endpoint answers a read, which
// needs its cluster's quorum (a lone restarted member of a dead quorum
// does not answer; Restart then waits for its peers).
func waitHealthy(endpoint string, exited <-chan struct{}, limit time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		if _, err := cli.Status(ctx, endpoint); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited")
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s", limit)
		case <-time.After(50 * time.Millisecond): // polling a process's port: it has no readiness signal
		}
	}
}

func (m *member) kill() {
	m.cmd.Process.Kill()
	<-m.done
}

// Pause stops member i's process with SIGSTOP (a member that hangs);
// Resume lets it go on. Only process members can be paused.
func (c *Cluster) Pause(i int) error  { return c.signal(i, syscall.SIGSTOP) }
func (c *Cluster) Resume(i int) error { return c.signal(i, syscall.SIGCONT) }

func (c *Cluster) signal(i int, sig syscall.Signal) error {
	c.mu.Lock()
	m := c.procs[i]
	c.mu.Unlock()
	if m == nil {
		return fmt.Errorf("etcd member %d is not a running process", i)
	}
	return m.cmd.Process.Signal(sig)
}

// Ranges is the range requests every running member has served so far
// (etcd_mvcc_range_total, summed), from each process's /metrics, or from
// this process's registry where the members are embedded (they share it).
func (c *Cluster) Ranges() (float64, error) {
	if c.bin == "" {
		return gatheredRanges()
	}
	var sum float64
	for i, endpoint := range c.clients {
		c.mu.Lock()
		running := c.procs[i] != nil
		c.mu.Unlock()
		if !running {
			continue
		}
		resp, err := http.Get(endpoint + "/metrics")
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "etcd_mvcc_range_total "); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, err
				}
				sum += n
			}
		}
	}
	return sum, nil
}

func gatheredRanges() (float64, error) {
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range families {
		if f.GetName() == "etcd_mvcc_range_total" {
			return f.GetMetric()[0].GetCounter().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("etcd exports no etcd_mvcc_range_total")
}
