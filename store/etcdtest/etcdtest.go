// Package etcdtest runs a real etcd cluster on loopback ports for tests:
// as etcd server processes where a binary is installed (Debian's
// etcd-server, see ProcessBinary), else inside the test process
// (go.etcd.io/etcd/server/v3/embed).
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is a running etcd cluster of one or more members.
type Cluster struct {
	dir     string
	names   []string
	peers   []string // peer URLs by member
	clients []string // client URLs by member
	bin     string   // the etcd binary of process members; "" for embedded ones
	mu      sync.Mutex
	members []*embed.Etcd // embedded members; nil while one is stopped
	procs   []*member     // process members; nil while one is stopped
}

// Start runs an n-member cluster until the test ends, of processes when
// ProcessBinary finds etcd.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := startIn(t.TempDir(), n, ProcessBinary())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.StopAll)
	return c
}

// StartIn runs an n-member cluster with its data in dir, for TestMain;
// StopAll ends it.
func StartIn(dir string, n int) (*Cluster, error) { return startIn(dir, n, "") }

func startIn(dir string, n int, bin string) (*Cluster, error) {
	c := &Cluster{dir: dir, bin: bin, members: make([]*embed.Etcd, n), procs: make([]*member, n)}
	for i := range n {
		c.names = append(c.names, fmt.Sprintf("m%d", i))
		peer, err := freeAddr()
		if err != nil {
			return nil, err
		}
		client, err := freeAddr()
		if err != nil {
			return nil, err
		}
		c.peers = append(c.peers, "http://"+peer)
		c.clients = append(c.clients, "http://"+client)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.start(i, "new") }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.StopAll()
			return nil, err
		}
	}
	return c, nil
}

// StopAll stops every member.
func (c *Cluster) StopAll() {
	for i := range c.members {
		c.Stop(i)
	}
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string { return append([]string(nil), c.clients...) }

// Version says what serves: "etcd <binary>" for processes, else "embedded".
func (c *Cluster) Version() string {
	if c.bin != "" {
		return "etcd " + c.bin
	}
	return "embedded"
}

func (c *Cluster) start(i int, state string) error {
	if c.bin != "" {
		return c.startProcess(i, state)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.names[i]
	cfg.Dir = filepath.Join(c.dir, c.names[i])
	cfg.LogLevel = "error"
	cfg.MaxTxnOps = 4096 // SetPool registers a node's GPUs in one transaction
	cfg.UnsafeNoFsync = true
	cfg.ListenPeerUrls = []url.URL{mustURL(c.peers[i])}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.ListenClientUrls = []url.URL{mustURL(c.clients[i])}
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	var initial []string
	for j, name := range c.names {
		initial = append(initial, name+"="+c.peers[j])
	}
	cfg.InitialCluster = strings.Join(initial, ",")
	cfg.InitialClusterToken = "moreh-test"
	cfg.ClusterState = state
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("etcd member %s did not become ready", cfg.Name)
	}
	c.mu.Lock()
	c.members[i] = e
	c.mu.Unlock()
	return nil
}

// Stop stops member i (a no-op when it is stopped).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	e, m := c.members[i], c.procs[i]
	c.members[i], c.procs[i] = nil, nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
	if m != nil {
		m.kill()
	}
}

// Restart starts a stopped member again with its data.
func (c *Cluster) Restart(i int) error { return c.start(i, "existing") }

// freeAddr finds a free loopback port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}
