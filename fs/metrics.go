package fs

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/store"
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
)

// scope is what a family has one series of.
type scope int

const (
	perToken scope = iota
	perDevice
	perGPU  // of this node
	perNode // with the pool only
)

// metricFamily is one family of series: its i-th series of its scope in a
// view, written into labels (in the order of the family's label names);
// ok false when that one has no series now (utilisation while no job runs).
type metricFamily struct {
	name, help string
	counter    bool
	labels     []string
	scope      scope
	value      func(s *metricsSource, i int, labels *[5]string) (v float64, ok bool)

	desc   *prometheus.Desc // for the collector of --metrics-addr
	sorted []int            // label positions by name, as the text format orders them
}

const bytesPerMiB = 1 << 20

// metricFamilies, by name: a reader sees each family whole, in this order.
var metricFamilies = []*metricFamily{
	{name: "DCGM_FI_DEV_FB_FREE", help: "Framebuffer memory free (in MiB).", labels: gpuLabels, scope: perGPU,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			g := s.gpu(i, l)
			return float64(g.MemoryMiB - min(g.MemoryMiB, g.Reading.MemoryUsedMiB)), g.Sampled
		}},
	{name: "DCGM_FI_DEV_FB_USED", help: "Framebuffer memory used (in MiB).", labels: gpuLabels, scope: perGPU,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			g := s.gpu(i, l)
			return float64(g.Reading.MemoryUsedMiB), g.Sampled
		}},
	{name: "DCGM_FI_DEV_GPU_UTIL", help: "GPU utilization (in %).", labels: gpuLabels, scope: perGPU,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			g := s.gpu(i, l)
			return float64(g.Reading.Utilization), g.Sampled
		}},
	{name: "moreh_device_job_running", help: "1 while a job runs on the device.", labels: deviceLabels, scope: perDevice,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			if s.device(i, l).Job != 0 {
				return 1, true
			}
			return 0, true
		}},
	{name: "moreh_device_memory_total_bytes", help: "Memory of the device's model.", labels: deviceLabels, scope: perDevice,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			return float64(s.device(i, l).Model().MemoryMiB() * bytesPerMiB), true
		}},
	{name: "moreh_device_memory_used_bytes", help: "Memory used on the device's GPUs of this node.", labels: deviceLabels, scope: perDevice,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			d := s.device(i, l)
			return float64(s.view.Usage(d).UsedMiB * bytesPerMiB), d.Job == 0 || s.local(d) // figures only where the job runs
		}},
	{name: "moreh_device_utilization_ratio", help: "Mean utilisation of the device's GPUs while a job runs, 0 to 1.", labels: deviceLabels, scope: perDevice,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			d := s.device(i, l)
			if d.Job == 0 || !s.local(d) {
				return 0, false
			}
			return float64(s.view.Usage(d).Utilization) / 100, true
		}},
	{name: "moreh_gpu_bound", help: "1 while the GPU is bound to a device's job.", labels: boundLabels, scope: perGPU,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			if s.gpu(i, l).Job != 0 {
				return 1, true
			}
			return 0, true
		}},
	{name: "moreh_pool_units", help: "64 GB units of this node's GPUs.", labels: []string{"node"}, scope: perNode,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			l[0] = s.node
			return float64(s.units), true
		}},
	{name: "moreh_pool_units_free", help: "64 GB units of this node's GPUs not bound to a job.", labels: []string{"node"}, scope: perNode,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			l[0] = s.node
			return float64(s.free), true
		}},
	{name: "moreh_queue_head_wait_seconds", help: "How long this node's first job in the queue has waited; 0 when none waits.", labels: []string{"node"}, scope: perNode,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			l[0] = s.node
			return s.headWait, true
		}},
	{name: "moreh_queue_length", help: "Jobs of this node waiting in the queue (the sum over nodes is the queue's).", labels: []string{"node"}, scope: perNode,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			l[0] = s.node
			return float64(s.waiting), true
		}},
	{name: "moreh_token_devices", help: "Devices the token holds.", labels: tokenLabels, scope: perToken,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			return float64(s.token(i, l).Devices), true
		}},
	{name: "moreh_token_max_devices", help: "The token's device limit.", labels: tokenLabels, scope: perToken,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			return float64(s.token(i, l).MaxDevices), true
		}},
	{name: "moreh_token_unit_seconds_total", help: "GPU units times the seconds the token's ended jobs held them.", labels: tokenLabels, scope: perToken, counter: true,
		value: func(s *metricsSource, i int, l *[5]string) (float64, bool) {
			return float64(s.token(i, l).UnitMillis) / 1000, true
		}},
}

func init() {
	for _, f := range metricFamilies {
		f.desc = prometheus.NewDesc(f.name, f.help, f.labels, nil)
		f.sorted = make([]int, len(f.labels))
		for i := range f.sorted {
			f.sorted[i] = i
		}
		slices.SortFunc(f.sorted, func(a, b int) int { return cmpString(f.labels[a], f.labels[b]) })
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// metricsSource is one view's series: the view, and what finds a series's
// token and this node's GPUs. It is only read once made.
type metricsSource struct {
	view      *node.MetricsView
	node      string
	tokenOf   []int32 // each device's token, by index
	gpus      []node.GPUStatus
	units     int // this node's, and those not bound
	free      int
	waiting   int     // this node's jobs in the queue, with the pool only
	headWait  float64 // seconds the first of them has waited
	pool      bool
	deviceIDs bool // a bound GPU names its device; else "*" (--metrics-addr without --metrics-tokens)
}

func newMetricsSource(v *node.MetricsView, pool, deviceIDs bool) *metricsSource {
	s := &metricsSource{view: v, node: v.Node(), pool: pool, deviceIDs: deviceIDs, tokenOf: make([]int32, 0, len(v.Devices))}
	for i, t := range v.Tokens {
		for range t.Devices {
			s.tokenOf = append(s.tokenOf, int32(i))
		}
	}
	for _, g := range v.Pool {
		if g.Node != s.node {
			continue // that node exports it
		}
		s.gpus = append(s.gpus, g)
		s.units += g.Units
		if g.Job == 0 {
			s.free += g.Units
		}
	}
	return s
}

// addQueue counts this node's waiting jobs, for the pool's series.
func (s *metricsSource) addQueue(ctx context.Context, t *tree) error {
	queue, err := t.Node.Queue(ctx)
	if err != nil {
		return err
	}
	for _, e := range queue {
		if e.Job.Node != s.node && e.Job.Node != "" {
			continue // that node exports it
		}
		if s.waiting == 0 {
			s.headWait = max(0, t.Now().Sub(e.Job.Queued).Seconds())
		}
		s.waiting++
	}
	return nil
}

func (s *metricsSource) count(sc scope) int {
	switch sc {
	case perToken:
		return len(s.view.Tokens)
	case perDevice:
		return len(s.view.Devices)
	case perGPU:
		return len(s.gpus)
	}
	if s.pool {
		return 1
	}
	return 0
}

func (s *metricsSource) token(i int, l *[5]string) store.CensusToken {
	t := s.view.Tokens[i]
	l[0], l[1] = t.Name, s.node
	return t
}

func (s *metricsSource) device(i int, l *[5]string) store.CensusDevice {
	d := s.view.Devices[i]
	l[0], l[1], l[2], l[3] = s.view.Tokens[s.tokenOf[i]].Name, formatUint(d.ID), d.Model().Name, s.node
	return d
}

// local says whether the device's job runs here (where its figures are).
func (s *metricsSource) local(d store.CensusDevice) bool {
	n := s.view.JobNode(d)
	return n == s.node || n == ""
}

func (s *metricsSource) gpu(i int, l *[5]string) node.GPUStatus {
	g := s.gpus[i]
	device := ""
	if g.Job != 0 {
		device = "*"
		if s.deviceIDs {
			device = formatUint(g.Device)
		}
	}
	l[0], l[1], l[2], l[3], l[4] = strconv.Itoa(g.Index), g.UUID, g.Name, g.Node, device
	return g
}

// treeCollector serves a view's series to client_golang, for
// --metrics-addr: one snapshot per scrape.
type treeCollector struct {
	t         *tree
	ctx       context.Context
	tokens    bool
	deviceIDs bool
}

// Describe names every series the collector may send: which ones a scrape
// has depends on the moment (utilisation only while a job runs).
func (c *treeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range metricFamilies {
		ch <- f.desc
	}
}

func (c *treeCollector) Collect(ch chan<- prometheus.Metric) {
	v, err := c.t.Node.MetricsView(c.ctx, 0, c.tokens, true)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(metricFamilies[0].desc, err) // the scrape fails whole
		return
	}
	s := newMetricsSource(v, true, c.deviceIDs)
	if err := s.addQueue(c.ctx, c.t); err != nil {
		ch <- prometheus.NewInvalidMetric(metricFamilies[0].desc, err)
		return
	}
	s.collect(ch)
}

// collect sends every series of s as client_golang's constant metrics.
func (s *metricsSource) collect(ch chan<- prometheus.Metric) {
	for _, f := range metricFamilies {
		kind := prometheus.GaugeValue
		if f.counter {
			kind = prometheus.CounterValue
		}
		for i := range s.count(f.scope) {
			var labels [5]string
			if value, ok := f.value(s, i, &labels); ok {
				ch <- prometheus.MustNewConstMetric(f.desc, kind, value, labels[:len(f.labels)]...)
			}
		}
	}
}

// MetricsHandler serves the node's and the GPUs' figures, with the
// daemon's own go_* and process_* series, for --metrics-addr, which anyone
// who reaches the port may read; with withTokens (--metrics-tokens), also
// every token's series, as root sees them in /moreh/metrics.
func MetricsHandler(cfg Config, withTokens bool) http.Handler {
	t := newTree(cfg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&treeCollector{t: t, ctx: r.Context(), tokens: withTokens, deviceIDs: withTokens},
			collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(w, r)
	})
}

// metricsFile is /moreh/metrics: root sees every token and the pool;
// anyone else, their own token. It is written as it is read, from one view
// taken at open: a store of any size costs a reader the records, not their
// text.
type metricsFile struct {
	roFile
}

var _ = (fusefs.NodeOpener)((*metricsFile)(nil))

func (f *metricsFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, f.t.fail(ctx, "", "open", f.Path(nil), store.ErrWrongMode)
	}
	root := callerUID(ctx) == 0
	v, err := f.t.Node.MetricsView(ctx, callerUID(ctx), true, root)
	if err != nil {
		return nil, 0, f.t.fail(ctx, "", "read", f.Path(nil), err)
	}
	s := newMetricsSource(v, root, true)
	if root {
		if err := s.addQueue(ctx, f.t); err != nil {
			return nil, 0, f.t.fail(ctx, "", "read", f.Path(nil), err)
		}
	}
	return newStream(func() chunker { return &metricsText{src: s} }), fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
}

// metricsText writes a source's series in Prometheus's text format, as
// client_golang's encoder does, a chunk at a time.
type metricsText struct {
	src    *metricsSource
	family int  // the family being written
	next   int  // its next series
	header bool // its HELP and TYPE lines are written
}

// metricsChunk is about how much one step writes.
const metricsChunk = 32 << 10

var _ chunker = (*metricsText)(nil)

func (m *metricsText) more(b []byte) ([]byte, bool) {
	limit := len(b) + metricsChunk
	for ; m.family < len(metricFamilies); m.family, m.next, m.header = m.family+1, 0, false {
		f := metricFamilies[m.family]
		for n := m.src.count(f.scope); m.next < n; m.next++ {
			if len(b) >= limit {
				return b, true
			}
			var labels [5]string
			value, ok := f.value(m.src, m.next, &labels)
			if !ok {
				continue
			}
			if !m.header {
				b, m.header = appendFamilyHeader(b, f), true
			}
			b = appendSeries(b, f, &labels, value)
		}
	}
	return b, false
}

func appendFamilyHeader(b []byte, f *metricFamily) []byte {
	kind := "gauge"
	if f.counter {
		kind = "counter"
	}
	b = append(b, "# HELP "+f.name+" "...)
	b = appendEscaped(b, f.help, false)
	return append(b, "\n# TYPE "+f.name+" "+kind+"\n"...)
}

func appendSeries(b []byte, f *metricFamily, labels *[5]string, v float64) []byte {
	b = append(b, f.name...)
	if len(f.labels) > 0 {
		b = append(b, '{')
		for n, i := range f.sorted {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, f.labels[i]...)
			b = append(b, '=', '"')
			b = appendEscaped(b, labels[i], true)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	switch v {
	case 0, 1: // as client_golang writes them
		b = strconv.AppendInt(b, int64(v), 10)
	default:
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, '\n')
}

// appendEscaped escapes as the text format does: a backslash and a newline
// everywhere, a double quote in label values.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
