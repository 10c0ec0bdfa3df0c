package node

import (
	"context"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// MetricsView is what metrics shows: the census of one store snapshot,
// joined with one sample. It holds records, never their rendering, so that
// a reader of a large store is served as it reads.
type MetricsView struct {
	store.Census
	Pool []GPUStatus // the census's pool with this node's readings
	rt   *Runtime
	snap *gpu.Snapshot
}

// MetricsView gathers the tokens uid may see (none without tokens) and,
// with pool, the pool's GPUs.
func (rt *Runtime) MetricsView(ctx context.Context, uid int, tokens, pool bool) (*MetricsView, error) {
	v := &MetricsView{rt: rt, snap: rt.sampler.Latest()}
	if !tokens && !pool {
		return v, nil
	}
	var err error
	if tokens {
		v.Census, err = rt.reg.Census(ctx, uid, pool)
	} else {
		v.Census.Pool, err = rt.reg.Pool(ctx)
	}
	if err != nil {
		return nil, err
	}
	v.Pool = rt.join(v.Census.Pool)
	return v, nil
}

// Node is the name of the node whose view this is.
func (v *MetricsView) Node() string { return v.rt.Node() }

// Usage is a device's figures, as DeviceUsage reads them.
func (v *MetricsView) Usage(d store.CensusDevice) Usage {
	u := Usage{TotalMiB: d.Model().MemoryMiB(), Utilization: NoUtilization}
	job, ok := v.Jobs[d.Job]
	if d.Job == 0 || !ok {
		return u
	}
	u.UsedMiB, u.Utilization, _ = v.rt.jobReading(v.snap, job)
	return u
}

// JobNode is where the device's job runs; "" when none runs.
func (v *MetricsView) JobNode(d store.CensusDevice) string { return v.Jobs[d.Job].Node }
