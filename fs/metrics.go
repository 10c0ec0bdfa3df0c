package fs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// metric is one family of the Prometheus text exposition.
type metric struct {
	name, help string
	samples    []sample
}

type sample struct {
	labels string // already formatted: {a="b",c="d"}
	value  float64
}

func (m *metric) add(value float64, kv ...string) {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i] + "=" + strconv.Quote(kv[i+1]))
	}
	labels := ""
	if b.Len() > 0 {
		labels = "{" + b.String() + "}"
	}
	m.samples = append(m.samples, sample{labels, value})
}

func writeMetrics(w io.Writer, families []*metric) error {
	var b bytes.Buffer
	for _, m := range families {
		if len(m.samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", m.name, m.help, m.name)
		for _, s := range m.samples {
			b.WriteString(m.name + s.labels + " " + strconv.FormatFloat(s.value, 'g', -1, 64) + "\n")
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// renderMetrics is /moreh/metrics: gauges for devices, GPUs, tokens and the
// pool, named after dcgm-exporter's where it has one. Root sees every
// token and the pool; anyone else, their own token.
func (t *tree) renderMetrics(ctx context.Context) ([]byte, error) {
	tokens, err := t.Registry.VisibleTokens(ctx, callerUID(ctx))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = t.metrics(ctx, &b, tokens, callerUID(ctx) == 0, true)
	return b.Bytes(), err
}

// metrics writes the series of tokens and, withPool, the GPUs' and the
// pool's; a bound GPU's device label is its device id with deviceIDs, else "*".
func (t *tree) metrics(ctx context.Context, w io.Writer, tokens []string, withPool, deviceIDs bool) error {
	var (
		devUsed  = &metric{name: "moreh_device_memory_used_mib", help: "Memory used on the device's GPUs, in MiB."}
		devTotal = &metric{name: "moreh_device_memory_total_mib", help: "Memory of the device's model, in MiB."}
		devUtil  = &metric{name: "moreh_device_utilization_percent", help: "Mean utilisation of the device's GPUs while a job runs."}
		devJob   = &metric{name: "moreh_device_job_running", help: "1 while a job runs on the device."}
		tokDev   = &metric{name: "moreh_token_devices", help: "Devices the token holds."}
		tokMax   = &metric{name: "moreh_token_max_devices", help: "The token's device limit."}
		fbUsed   = &metric{name: "DCGM_FI_DEV_FB_USED", help: "Framebuffer memory used (in MiB)."}
		fbFree   = &metric{name: "DCGM_FI_DEV_FB_FREE", help: "Framebuffer memory free (in MiB)."}
		gpuUtil  = &metric{name: "DCGM_FI_DEV_GPU_UTIL", help: "GPU utilization (in %)."}
		gpuBound = &metric{name: "moreh_gpu_bound", help: "1 while the GPU is bound to a device's job."}
		units    = &metric{name: "moreh_pool_units_total", help: "64 GB units of the whole pool."}
		free     = &metric{name: "moreh_pool_units_free", help: "64 GB units not bound to a job."}
	)
	for _, name := range tokens {
		v, err := t.Node.TokenStatus(ctx, name, 0)
		if err != nil {
			return err
		}
		tokDev.add(float64(len(v.Devices)), "token", name)
		tokMax.add(float64(v.Token.MaxDevices), "token", name)
		for _, d := range v.Devices {
			labels := []string{"token", name, "device", formatUint(d.ID), "model", d.Model}
			devUsed.add(float64(d.Usage.UsedMiB), labels...)
			devTotal.add(float64(d.Usage.TotalMiB), labels...)
			running := 0.0
			if d.Job.ID != 0 {
				running = 1
				devUtil.add(float64(d.Usage.Utilization), labels...)
			}
			devJob.add(running, labels...)
		}
	}
	if withPool {
		pool, err := t.Node.Pool(ctx)
		if err != nil {
			return err
		}
		var total, unbound int
		for _, g := range pool {
			total += g.Units
			device, bound := "", 0.0
			if g.Job != 0 {
				device, bound = "*", 1
				if deviceIDs {
					device = formatUint(g.Device)
				}
			} else {
				unbound += g.Units
			}
			labels := []string{"gpu", strconv.Itoa(g.Index), "UUID", g.UUID, "modelName", g.Name, "Hostname", g.Node, "device", device}
			gpuBound.add(bound, labels...)
			if r := g.Reading; g.Sampled {
				fbUsed.add(float64(r.MemoryUsedMiB), labels...)
				fbFree.add(float64(g.MemoryMiB-min(g.MemoryMiB, r.MemoryUsedMiB)), labels...)
				gpuUtil.add(float64(r.Utilization), labels...)
			}
		}
		units.add(float64(total))
		free.add(float64(unbound))
	}
	return writeMetrics(w, []*metric{devUsed, devTotal, devUtil, devJob, tokDev, tokMax, fbUsed, fbFree, gpuUtil, gpuBound, units, free})
}

// MetricsHandler serves the node's and the GPUs' figures for
// --metrics-addr, which anyone who reaches the port may read; with
// withTokens (--metrics-tokens), also every token's series, as root sees
// them in /moreh/metrics.
func MetricsHandler(cfg Config, withTokens bool) http.Handler {
	t := newTree(cfg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tokens []string
		var err error
		if withTokens {
			tokens, err = t.Registry.VisibleTokens(r.Context(), 0)
		}
		var b bytes.Buffer
		if err == nil {
			err = t.metrics(r.Context(), &b, tokens, true, withTokens)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(b.Bytes())
	})
}
