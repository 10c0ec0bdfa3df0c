package fs

import (
	"bytes"
	"context"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// The series. moreh's own are in base units (bytes, ratios); the DCGM_*
// ones keep dcgm-exporter's names, MiB and label names (gpu, UUID,
// modelName, Hostname) so that its dashboards work unchanged; moreh's own
// GPU series carry the same values under snake_case names. The moreh
// device a GPU is bound to is moreh_device, never dcgm's device (nvidia0).
var (
	tokenLabels  = []string{"token", "node"}
	deviceLabels = []string{"token", "device", "model", "node"}
	gpuLabels    = []string{"gpu", "UUID", "modelName", "Hostname", "moreh_device"} // dcgm-exporter's, for DCGM_*
	boundLabels  = []string{"gpu", "uuid", "gpu_model", "node", "moreh_device"}     // the same, snake_case, for moreh's own

	descDevUsed  = prometheus.NewDesc("moreh_device_memory_used_bytes", "Memory used on the device's GPUs of this node.", deviceLabels, nil)
	descDevTotal = prometheus.NewDesc("moreh_device_memory_total_bytes", "Memory of the device's model.", deviceLabels, nil)
	descDevUtil  = prometheus.NewDesc("moreh_device_utilization_ratio", "Mean utilisation of the device's GPUs while a job runs, 0 to 1.", deviceLabels, nil)
	descDevJob   = prometheus.NewDesc("moreh_device_job_running", "1 while a job runs on the device.", deviceLabels, nil)
	descTokDev   = prometheus.NewDesc("moreh_token_devices", "Devices the token holds.", tokenLabels, nil)
	descTokMax   = prometheus.NewDesc("moreh_token_max_devices", "The token's device limit.", tokenLabels, nil)
	descTokUsed  = prometheus.NewDesc("moreh_token_unit_seconds_total", "GPU units times the seconds the token's ended jobs held them.", tokenLabels, nil)
	descFBUsed   = prometheus.NewDesc("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", gpuLabels, nil)
	descFBFree   = prometheus.NewDesc("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", gpuLabels, nil)
	descGPUUtil  = prometheus.NewDesc("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", gpuLabels, nil)
	descGPUBound = prometheus.NewDesc("moreh_gpu_bound", "1 while the GPU is bound to a device's job.", boundLabels, nil)
	descUnits    = prometheus.NewDesc("moreh_pool_units", "64 GB units of this node's GPUs.", []string{"node"}, nil)
	descFree     = prometheus.NewDesc("moreh_pool_units_free", "64 GB units of this node's GPUs not bound to a job.", []string{"node"}, nil)
	descQueueLen = prometheus.NewDesc("moreh_queue_length", "Jobs of this node waiting in the queue (the sum over nodes is the queue's).", []string{"node"}, nil)
	descHeadWait = prometheus.NewDesc("moreh_queue_head_wait_seconds", "How long this node's first job in the queue has waited; 0 when none waits.", []string{"node"}, nil)
)

// treeCollector reads one snapshot per scrape: the figures of tokens and,
// with pool, this node's GPUs. Each node exports its own GPUs, and token
// and device figures with its name, so that the series of the nodes of a
// cluster never collide.
type treeCollector struct {
	t         *tree
	ctx       context.Context
	tokens    []string
	pool      bool
	deviceIDs bool // a bound GPU names its device; else "*" (--metrics-addr without --metrics-tokens)
}

const bytesPerMiB = 1 << 20

// Describe names every series the collector may send: which ones a scrape
// has depends on the moment (utilisation only while a job runs).
func (c *treeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDevUsed, descDevTotal, descDevUtil, descDevJob, descTokDev, descTokMax, descTokUsed,
		descFBUsed, descFBFree, descGPUUtil, descGPUBound, descUnits, descFree, descQueueLen, descHeadWait} {
		ch <- d
	}
}

func (c *treeCollector) Collect(ch chan<- prometheus.Metric) {
	node := c.t.Node.Node()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, name := range c.tokens {
		v, err := c.t.Node.TokenStatus(c.ctx, name, 0)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descTokDev, err) // the scrape fails whole
			return
		}
		gauge(descTokDev, float64(len(v.Devices)), name, node)
		gauge(descTokMax, float64(v.Token.MaxDevices), name, node)
		ch <- prometheus.MustNewConstMetric(descTokUsed, prometheus.CounterValue, float64(v.Token.UnitMillis)/1000, name, node)
		for _, d := range v.Devices {
			labels := []string{name, formatUint(d.ID), d.Model, node}
			gauge(descDevTotal, float64(d.Usage.TotalMiB*bytesPerMiB), labels...)
			running := d.Job.ID != 0
			jobRunning := 0.0
			if running {
				jobRunning = 1
			}
			gauge(descDevJob, jobRunning, labels...)
			if !running || d.Job.Node == node || d.Job.Node == "" { // figures only where the job runs
				gauge(descDevUsed, float64(d.Usage.UsedMiB*bytesPerMiB), labels...)
				if running {
					gauge(descDevUtil, float64(d.Usage.Utilization)/100, labels...)
				}
			}
		}
	}
	if !c.pool {
		return
	}
	pool, err := c.t.Node.Pool(c.ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descUnits, err)
		return
	}
	var total, unbound int
	for _, g := range pool {
		if g.Node != node {
			continue // that node exports it
		}
		total += g.Units
		device, bound := "", 0.0
		if g.Job != 0 {
			device, bound = "*", 1
			if c.deviceIDs {
				device = formatUint(g.Device)
			}
		} else {
			unbound += g.Units
		}
		labels := []string{strconv.Itoa(g.Index), g.UUID, g.Name, g.Node, device}
		gauge(descGPUBound, bound, labels...)
		if r := g.Reading; g.Sampled {
			gauge(descFBUsed, float64(r.MemoryUsedMiB), labels...)
			gauge(descFBFree, float64(g.MemoryMiB-min(g.MemoryMiB, r.MemoryUsedMiB)), labels...)
			gauge(descGPUUtil, float64(r.Utilization), labels...)
		}
	}
	gauge(descUnits, float64(total), node)
	gauge(descFree, float64(unbound), node)
	queue, err := c.t.Node.Queue(c.ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descQueueLen, err)
		return
	}
	waiting, headWait := 0, 0.0
	for _, e := range queue {
		if e.Job.Node != node && e.Job.Node != "" {
			continue // that node exports it
		}
		if waiting == 0 {
			headWait = max(0, c.t.Now().Sub(e.Job.Queued).Seconds())
		}
		waiting++
	}
	gauge(descQueueLen, float64(waiting), node)
	gauge(descHeadWait, headWait, node)
}

// renderMetrics is /moreh/metrics: root sees every token and the pool;
// anyone else, their own token.
func (t *tree) renderMetrics(ctx context.Context) ([]byte, error) {
	uid := callerUID(ctx)
	tokens, err := t.Registry.VisibleTokens(ctx, uid)
	if err != nil {
		return nil, err
	}
	c := &treeCollector{t: t, ctx: ctx, tokens: tokens, pool: uid == 0, deviceIDs: true}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// MetricsHandler serves the node's and the GPUs' figures, with the
// daemon's own go_* and process_* series, for --metrics-addr, which anyone
// who reaches the port may read; with withTokens (--metrics-tokens), also
// every token's series, as root sees them in /moreh/metrics.
func MetricsHandler(cfg Config, withTokens bool) http.Handler {
	t := newTree(cfg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tokens []string
		if withTokens {
			var err error
			if tokens, err = t.Registry.VisibleTokens(r.Context(), 0); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		c := &treeCollector{t: t, ctx: r.Context(), tokens: tokens, pool: true, deviceIDs: withTokens}
		reg := prometheus.NewRegistry()
		reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(w, r)
	})
}
