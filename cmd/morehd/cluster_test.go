package main

import (
	"slices"

	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store/etcdtest"
)

// cluster is a 3-member etcd cluster and three morehd nodes on it, each
// with its own mount and a simulated pool of 8 one-unit GPUs.
type cluster struct {
	etcd  *etcdtest.Cluster
	nodes []*morehdtest.Daemon
}

func startCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := &cluster{etcd: etcdtest.Start(t, 3)}
	endpoints := strings.Join(c.etcd.Endpoints(), ",")
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		args := append([]string{"--store", "etcd", "--etcd-endpoints", endpoints, "--node", name,
			"--gpus", "sim:8x64GB", "--etcd-lease-ttl", "2s"}, extra...)
		c.nodes = append(c.nodes, morehdtest.Start(t, args...))
	}
	return c
}

func TestClusterDevicesShowOnEveryNode(t *testing.T) {
	c := startCluster(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	if err := os.Mkdir(a.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(a.Path("devices", "Large.256GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ls(t, b.Path("devices")), ","); got != "2026,2027" {
		t.Fatalf("node b lists %q", got)
	}
	if err := os.WriteFile(b.Path("current"), []byte("2026"), 0); err != nil {
		t.Fatalf("switch on node b: %v", err)
	}
	if got := read(t, a.Path("current")); got != "2026\n" {
		t.Errorf("node a's current after node b switched = %q", got)
	}
	if err := syscall.Rmdir(cc.Path("devices", "2027")); err != nil {
		t.Fatalf("rmdir on node c: %v", err)
	}
	morehdtest.Eventually(t, time.Second, "node a sees the removal", func() bool {
		_, err := os.Stat(a.Path("devices", "2027"))
		return errors.Is(err, os.ErrNotExist)
	})
	if v := read(t, a.Path("version")); !strings.HasPrefix(strings.Split(v, "\n")[2], "server etcd 3.") {
		t.Errorf("version does not name the etcd cluster: %q", v)
	}
	if got := strings.Count(read(t, cc.Path("pool")), "\n"); got != 24 {
		t.Errorf("the pool has %d GPUs, want 3 nodes × 8", got)
	}
}

// TestClusterLimit: 5 creators on each of 3 nodes at once; the token's
// limit of 5 holds across nodes.
func TestClusterLimit(t *testing.T) {
	c := startCluster(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	for _, node := range c.nodes {
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, _ := exec.Command("mkdir", node.Path("devices", "Small.64GB")).CombinedOutput()
				mu.Lock()
				defer mu.Unlock()
				switch {
				case len(out) == 0:
					results["ok"]++
				case strings.Contains(string(out), "Disk quota exceeded"):
					results["EDQUOT"]++
				default:
					results[string(out)]++
				}
			}()
		}
	}
	wg.Wait()
	if results["ok"] != 5 || results["EDQUOT"] != 10 {
		t.Errorf("15 creators on 3 nodes: %v, want 5 ok and 10 EDQUOT", results)
	}
	for _, node := range c.nodes {
		if got := read(t, node.Path("tokens", "default", "limit")); got != "max 5\nused 5\n" {
			t.Errorf("limit on a node = %q", got)
		}
	}
}

// TestClusterJobSpansNodes: a 2xLarge job (16 units) binds the GPUs of two
// nodes; when one of them dies its GPUs leave the pool and the job ends.
func TestClusterJobSpansNodes(t *testing.T) {
	c := startCluster(t)
	a, b := c.nodes[0], c.nodes[1]
	if err := os.Mkdir(a.Path("devices", "2xLarge.1024GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	job, _ := startJobProc(t)
	attach(t, a, "2026", job.Process.Pid)
	gpus := strings.Split(strings.TrimSpace(read(t, a.Path("devices", "2026", "gpus"))), "\n")
	if len(gpus) != 16 {
		t.Fatalf("the job holds %d GPUs, want 16", len(gpus))
	}
	env := read(t, a.Path("devices", "2026", "env"))
	if env != "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7\nHIP_VISIBLE_DEVICES=0,1,2,3,4,5,6,7\nMOREH_DEVICE=2026\nMOREH_HOSTS=node-a,node-b\n" {
		t.Errorf("env of a two-node job:\n%s", env)
	}
	// moreh-run joins the running job only on a shared token: devices are exclusive.
	if err := os.WriteFile(a.Path("admin", "tokens", "default", "shared"), []byte("1\n"), 0); err != nil {
		t.Fatal(err)
	}
	run := exec.Command("bash", "../../scripts/moreh-run", "-i", "2026", "--", "printenv", "MOREH_HOSTS")
	run.Env = append(os.Environ(), "MOREH_ROOT="+a.Mount)
	if out, err := run.CombinedOutput(); err != nil || !strings.HasSuffix(string(out), "node-a,node-b\n") {
		t.Errorf("moreh-run on a two-node job exports MOREH_HOSTS as %q (%v)", out, err)
	}
	bound := strings.Count(read(t, b.Path("pool")), " 2026 ")
	if bound != 16 {
		t.Errorf("the pool shows %d GPUs bound to 2026, want 16", bound)
	}

	b.Kill() // its lease (2s) expires: its GPUs leave the pool
	morehdtest.Eventually(t, 5*time.Second, "node b's GPUs leave the pool and the job ends", func() bool {
		pool := read(t, a.Path("pool"))
		return strings.Count(pool, "\n") == 16 && !strings.Contains(pool, "2026")
	})
	if got := read(t, a.Path("devices", "2026", "gpus")); got != "" {
		t.Errorf("the ended job still holds %q", got)
	}
	if got := strings.Join(ls(t, a.Path("devices")), ","); got != "2026" {
		t.Errorf("the device did not stay: %q", got)
	}
}

// TestClusterSurvivesOneMember: one etcd member down changes nothing; two
// down make writes fail with EIO and a line in errors; one back, and they
// work again.
func TestClusterEtcdMembers(t *testing.T) {
	c := startCluster(t)
	a := c.nodes[0]
	c.etcd.Stop(2)
	if err := os.Mkdir(a.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatalf("mkdir with one member down: %v", err)
	}
	c.etcd.Stop(1)
	err := os.Mkdir(a.Path("devices", "Small.64GB"), 0o755)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("mkdir with two members down = %v, want EIO", err)
	}
	if errs := read(t, a.Path("tokens", "default", "errors")); !strings.Contains(errs, "mkdir tokens/default/devices/Small.64GB: The state store failed: etcd") {
		t.Errorf("errors after the failed write:\n%s", errs)
	}
	if err := c.etcd.Restart(1); err != nil {
		t.Fatal(err)
	}
	morehdtest.Eventually(t, 15*time.Second, "writes work again with a member back", func() bool {
		return os.Mkdir(a.Path("devices", "Small.64GB"), 0o755) == nil
	})
	if got := strings.Join(ls(t, a.Path("devices")), ","); got != "2026,2027" {
		t.Errorf("devices after the outage = %q (ids %s)", got, fmt.Sprint(strconv.Itoa(2026), "…"))
	}
}

// TestClusterEachNodeReadsItsOwnGPUs: a job holding memory on node B; node
// A's pool and metrics show A's own readings for A's GPUs and B's GPUs with
// B named and none of A's figures; node B shows the job's memory on its
// GPU. Before the join by (node, UUID), A showed its GPU 0 figures for B's.
// Jobs attached on A and B each get their own node's GPUs.
func TestClusterEachNodeReadsItsOwnGPUs(t *testing.T) {
	c := startCluster(t)
	a, b := c.nodes[0], c.nodes[1]
	for _, n := range []*morehdtest.Daemon{a, b} {
		if err := os.Mkdir(n.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hog := exec.Command("python3", "-c", "import sys; x = bytearray(300 << 20); x[::4096] = b'x' * len(x[::4096]); sys.stdin.read()")
	in, err := hog.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); hog.Process.Kill(); hog.Wait() })
	idle, _ := startJobProc(t)
	attach(t, b, "2027", hog.Process.Pid)
	attach(t, a, "2026", idle.Process.Pid)

	// pool: index units device used total util node name...
	line := func(pool, node, index string) []string {
		for _, l := range strings.Split(pool, "\n") {
			if f := strings.Fields(l); len(f) > 6 && f[0] == index && f[6] == node {
				return f
			}
		}
		t.Fatalf("no GPU %s of %s in the pool:\n%s", index, node, pool)
		return nil
	}
	morehdtest.Eventually(t, 10*time.Second, "node b reads the job's memory on its GPU 0", func() bool {
		used, _ := strconv.Atoi(line(read(t, b.Path("pool")), "node-b", "0")[3])
		return used >= 300
	})
	poolA := read(t, a.Path("pool"))
	if f := line(poolA, "node-b", "0"); f[2] != "2027" || f[3] != "-" || f[5] != "-" {
		t.Errorf("node a shows node b's GPU 0 as %v, want bound to 2027 with no figures of its own", f)
	}
	if f := line(poolA, "node-a", "0"); f[2] != "2026" || f[3] == "-" {
		t.Errorf("node a shows its own GPU 0 as %v, want bound to 2026 with its reading", f)
	}
	if used, _ := strconv.Atoi(line(poolA, "node-a", "0")[3]); used >= 300 {
		t.Errorf("node a's GPU 0 shows %d MiB: node b's job's memory", used)
	}
	metrics := read(t, a.Path("metrics"))
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "DCGM_FI_DEV_FB_USED{") && strings.Contains(l, `Hostname="node-b"`) {
			t.Errorf("node a exports a reading of node b's GPU: %s", l)
		}
	}
	if !strings.Contains(metrics, `Hostname="node-a"`) {
		t.Errorf("node a's metrics lack its own GPUs:\n%s", metrics)
	}

	// Every node's metrics together, as a Prometheus scraping each would
	// store them: no series twice.
	seen := map[string]string{}
	for i, n := range c.nodes {
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(read(t, n.Path("metrics"))))
		if err != nil {
			t.Fatalf("node %d's metrics do not parse: %v", i, err)
		}
		for name, f := range families {
			for _, m := range f.Metric {
				var labels []string
				for _, l := range m.Label {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				slices.Sort(labels)
				series := name + "{" + strings.Join(labels, ",") + "}"
				if other, dup := seen[series]; dup {
					t.Errorf("%s is exported by %s and node %d", series, other, i)
				}
				seen[series] = fmt.Sprint("node ", i)
			}
		}
	}
	if len(seen) < 3*8 {
		t.Errorf("only %d series over three nodes of 8 GPUs", len(seen))
	}
}

// TestClusterStartsWithFirstMemberDown: morehd starts when any configured
// member answers, not only the first, and serves writes.
func TestClusterStartsWithFirstMemberDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	etcd := etcdtest.Start(t, 3)
	etcd.Stop(0)
	d := morehdtest.Start(t, "--store", "etcd", "--etcd-endpoints", strings.Join(etcd.Endpoints(), ","),
		"--node", "node-a", "--gpus", "sim:2x64GB", "--etcd-lease-ttl", "2s")
	if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatalf("mkdir with the first member down: %v", err)
	}
}

// TestClusterStoppedNodeIsFencedAndRejoins: a node SIGSTOPped past its
// lease loses its GPUs from the pool and its job's device is free on the
// other nodes; once it runs again it kills that job (fenced, with a line in
// errors), registers its GPUs again and serves writes.
func TestClusterStoppedNodeIsFencedAndRejoins(t *testing.T) {
	c := startCluster(t)
	a, b := c.nodes[0], c.nodes[1]
	if err := os.Mkdir(a.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	job, exited := startSleeper(t)
	attach(t, a, "2026", job.Process.Pid)
	nodeGPUs := func(d *morehdtest.Daemon, node string) int {
		return strings.Count(read(t, d.Path("pool")), " "+node+" ")
	}
	if got := nodeGPUs(b, "node-a"); got != 8 {
		t.Fatalf("node b sees %d of node a's GPUs, want 8", got)
	}

	if err := syscall.Kill(a.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	morehdtest.Eventually(t, 10*time.Second, "node a's GPUs leave the pool with its lease", func() bool {
		return nodeGPUs(b, "node-a") == 0
	})
	morehdtest.Eventually(t, 5*time.Second, "the job on node a's GPU ends in the store", func() bool {
		return read(t, b.Path("devices", "2026", "gpus")) == ""
	})
	if err := syscall.Kill(a.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the job of the node that lost its lease still runs: it was not fenced\n%s", linesWith(a.Log(), "level=WARN", 20))
	}
	morehdtest.Eventually(t, 10*time.Second, "node a's GPUs are back in the pool", func() bool {
		return nodeGPUs(b, "node-a") == 8
	})
	if err := os.Mkdir(a.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Errorf("a write on node a after it rejoined: %v", err)
	}
	if errs := read(t, a.Path("tokens", "default", "errors")); !strings.Contains(errs, "fenced") {
		t.Errorf("the fenced job's end is not in errors:\n%s", errs)
	}
	for _, want := range []string{"lost the store session", "job fenced", "store session renewed"} {
		if !strings.Contains(a.Log(), want) {
			t.Errorf("node a's log lacks %q", want)
		}
	}
}

// TestClusterQuorumLostAndHealed: two of three members down past the
// lease; once they are back every node serves writes again and every GPU
// is back in the pool.
func TestClusterQuorumLostAndHealed(t *testing.T) {
	c := startCluster(t)
	c.etcd.Stop(1)
	c.etcd.Stop(2)
	ttlPassed := time.After(4 * time.Second) // the test's own clock: 2 × the 2 s lease
	<-ttlPassed
	for _, i := range []int{1, 2} {
		if err := c.etcd.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range c.nodes {
		morehdtest.Eventually(t, 20*time.Second, fmt.Sprintf("node %d serves writes again", i), func() bool {
			return os.Mkdir(n.Path("devices", "Small.64GB"), 0o755) == nil
		})
	}
	morehdtest.Eventually(t, 10*time.Second, "all 24 GPUs are back in the pool", func() bool {
		return strings.Count(read(t, c.nodes[0].Path("pool")), "\n") == 24
	})
}

// TestClusterPartitionedNodeIsFencedAndRejoins: node a reaches etcd only
// through proxies that turn into a blackhole (connections accepted, nothing
// answered). Its lease lapses: its GPUs leave the pool, its job is killed
// (fenced); once the partition heals it registers its GPUs again and serves
// writes.
func TestClusterPartitionedNodeIsFencedAndRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	etcd := etcdtest.Start(t, 3)
	var proxies []*blackholeProxy
	var viaProxy []string
	for _, ep := range etcd.Endpoints() {
		p := startProxy(t, strings.TrimPrefix(ep, "http://"))
		proxies = append(proxies, p)
		viaProxy = append(viaProxy, p.Addr())
	}
	args := func(endpoints []string, node string) []string {
		return []string{"--store", "etcd", "--etcd-endpoints", strings.Join(endpoints, ","), "--node", node,
			"--gpus", "sim:4x64GB", "--etcd-lease-ttl", "2s"}
	}
	a := morehdtest.Start(t, args(viaProxy, "node-a")...)
	b := morehdtest.Start(t, args(etcd.Endpoints(), "node-b")...)
	if err := os.Mkdir(a.Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	job, exited := startSleeper(t)
	attach(t, a, "2026", job.Process.Pid)
	nodeGPUs := func(node string) int { return strings.Count(read(t, b.Path("pool")), " "+node+" ") }

	for _, p := range proxies {
		p.Blackhole()
	}
	morehdtest.Eventually(t, 10*time.Second, "node a's GPUs leave the pool with its lease", func() bool {
		return nodeGPUs("node-a") == 0
	})
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the partitioned node's job still runs: it was not fenced\n%s", linesWith(a.Log(), "level=WARN", 20))
	}
	for _, p := range proxies {
		p.Heal()
	}
	morehdtest.Eventually(t, 15*time.Second, "node a's GPUs are back in the pool", func() bool {
		return nodeGPUs("node-a") == 4
	})
	morehdtest.Eventually(t, 10*time.Second, "node a serves writes again", func() bool {
		return os.Mkdir(a.Path("devices", "Small.64GB"), 0o755) == nil
	})
}

// startSleeper runs a process a job can hold; exited closes when it ends.
func startSleeper(t *testing.T) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	job := exec.Command("sleep", "600")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { job.Wait(); close(exited) }()
	t.Cleanup(func() { job.Process.Kill(); <-exited })
	return job, exited
}

// TestClusterIdleNodesDoNotPoll: three idle nodes, one with a running job,
// send etcd no range requests: they learn of changes through the watch.
// (Before, each polled jobs, the pool and every token five times a second.)
func TestClusterIdleNodesDoNotPoll(t *testing.T) {
	c := startCluster(t)
	if err := os.Mkdir(c.nodes[0].Path("devices", "Small.64GB"), 0o755); err != nil {
		t.Fatal(err)
	}
	job, _ := startSleeper(t)
	attach(t, c.nodes[0], "2026", job.Process.Pid)
	<-time.After(time.Second) // every node reads the attach's change once, then nothing changes
	before, err := c.etcd.Ranges()
	if err != nil {
		t.Fatal(err)
	}
	<-time.After(3 * time.Second) // the span measured, on the test's own clock
	after, err := c.etcd.Ranges()
	if err != nil {
		t.Fatal(err)
	}
	perNode := (after - before) / 3 / float64(len(c.nodes))
	t.Logf("idle: %.2f range requests a second per node (%s)", perNode, c.etcd.Version())
	if after-before > 3 {
		t.Errorf("idle nodes sent %v range requests in 3 s, want none", after-before)
	}
}

// TestClusterKeptFilesFollowOtherNodes: node a keeps current and a model in
// its kernel; after each switch and model change on node b returns, node
// a reads the new value at once (its open sees what the store holds; the
// watch need not have come yet).
func TestClusterKeptFilesFollowOtherNodes(t *testing.T) {
	c := startCluster(t)
	a, b := c.nodes[0], c.nodes[1]
	for range 2 {
		if err := os.Mkdir(a.Path("devices", "Small.64GB"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ids, models := []string{"2026", "2027"}, []string{"Medium.128GB", "Small.64GB"}
	for i := range 100 {
		if err := os.WriteFile(b.Path("current"), []byte(ids[i%2]), 0); err != nil {
			t.Fatalf("switch on node b: %v", err)
		}
		if err := os.WriteFile(b.Path("devices", "2026", "model"), []byte(models[i%2]), 0); err != nil {
			t.Fatalf("model on node b: %v", err)
		}
		if got := read(t, a.Path("current")); got != ids[i%2]+"\n" {
			t.Fatalf("round %d: node a's current = %q, want %s\n%s", i, got, ids[i%2], a.Log())
		}
		if got := read(t, a.Path("devices", "2026", "model")); got != models[i%2]+"\n" {
			t.Fatalf("round %d: node a's model = %q, want %s\n%s", i, got, models[i%2], a.Log())
		}
	}
}
