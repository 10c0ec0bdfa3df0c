// Package etcdtest runs a real etcd cluster (go.etcd.io/etcd/server/v3
// embed) inside a test process, on loopback ports, for the etcd backend's
// tests.
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
	mu      sync.Mutex
	members []*embed.Etcd // nil while a member is stopped
}

// Start runs an n-member cluster until the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartIn(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.StopAll)
	return c
}

// StartIn runs an n-member cluster with its data in dir, for TestMain;
// StopAll ends it.
func StartIn(dir string, n int) (*Cluster, error) {
	c := &Cluster{dir: dir, members: make([]*embed.Etcd, n)}
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

func (c *Cluster) start(i int, state string) error {
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
	e := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
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
