package store

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moreh-io/moreh/store/etcdtest"
)

// BenchmarkEtcdCreateRemove is one mkdir and one rmdir through a real
// three-member etcd cluster (in this process): it reports the median and
// p99 of each pair and the raft proposals each write costs, read from
// etcd's own etcd_server_proposals_committed_total (target: 1).
func BenchmarkEtcdCreateRemove(b *testing.B) {
	cluster := etcdtest.Start(b, 3)
	ctx := b.Context()
	eng, err := OpenEtcd(ctx, EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: "/bench/", LeaseTTL: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	reg, err := Open(ctx, eng, Options{MaxDevices: 5})
	if err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	before := committedProposals(b)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		d, err := reg.CreateDevice(ctx, "default", "Small.64GB")
		if err != nil {
			b.Fatal(err)
		}
		if err := reg.RemoveDevice(ctx, "default", d.ID); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	writes := 2 * len(took)
	b.ReportMetric(float64(committedProposals(b)-before)/float64(writes), "proposals/write")
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs/pair")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs/pair")
}

// committedProposals is etcd's count of committed raft entries (its
// members in this process share the gauge, and agree on the count).
func committedProposals(b *testing.B) float64 {
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "etcd_server_proposals_committed_total" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	b.Fatal("etcd exports no etcd_server_proposals_committed_total")
	return 0
}
