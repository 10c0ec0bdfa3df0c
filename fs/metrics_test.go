package fs

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// parseMetrics parses the exposition with Prometheus's own parser.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus cannot parse metrics: %v\n%s", err, text)
	}
	return families
}

// gauge returns the value of the sample of family whose labels include want.
func gauge(t *testing.T, families map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	t.Helper()
	f, ok := families[family]
	if !ok {
		t.Fatalf("no family %s", family)
	}
	for _, m := range f.Metric {
		match := 0
		for _, l := range m.Label {
			if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match == len(want) {
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s sample with %v", family, want)
	return 0
}

func TestMetricsMatchStatus(t *testing.T) {
	tt := mountTree(t, store.Options{MaxDevices: 4})
	id := mkdevice(t, tt, "Medium.128GB")
	mkdevice(t, tt, "Small.64GB")
	pid, _ := startProc(t, 100)
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	morehdtest.Eventually(t, 5e9, "the job's memory is sampled", func() bool {
		return !strings.Contains(readFile(t, tt.path("devices", id, "usage")), "memory_used_mib 0\n")
	})
	text := readFile(t, tt.path("metrics"))
	var status statusJSON
	if err := json.Unmarshal([]byte(readFile(t, tt.path("tokens", "default", "status.json"))), &status); err != nil {
		t.Fatal(err)
	}
	families := parseMetrics(t, text)
	for _, d := range status.Devices {
		labels := map[string]string{"token": "default", "device": strconv.FormatUint(d.ID, 10), "model": d.Model}
		if got := gauge(t, families, "moreh_device_memory_total_bytes", labels); got != float64(d.MemoryTotalMiB)*bytesPerMiB {
			t.Errorf("device %d total %v, status.json %d", d.ID, got, d.MemoryTotalMiB)
		}
		// Memory is sampled continuously; metrics and status.json were read
		// a moment apart, so compare within the job's size.
		used := gauge(t, families, "moreh_device_memory_used_bytes", labels) / bytesPerMiB
		if (d.MemoryUsedMiB == 0) != (used == 0) || used > 200 {
			t.Errorf("device %d used %v, status.json %d", d.ID, used, d.MemoryUsedMiB)
		}
		running := gauge(t, families, "moreh_device_job_running", labels)
		if (running == 1) != (d.Utilization != nil) {
			t.Errorf("device %d job_running %v, utilisation %v", d.ID, running, d.Utilization)
		}
	}
	if got := gauge(t, families, "moreh_token_devices", map[string]string{"token": "default"}); got != 2 {
		t.Errorf("token devices = %v", got)
	}
	if got := gauge(t, families, "moreh_token_max_devices", map[string]string{"token": "default"}); got != 4 {
		t.Errorf("token max = %v", got)
	}
	if got := gauge(t, families, "moreh_pool_units", nil); got != 4 {
		t.Errorf("pool units = %v", got)
	}
	if got := gauge(t, families, "moreh_pool_units_free", nil); got != 2 {
		t.Errorf("free units = %v", got)
	}
	if got := gauge(t, families, "moreh_gpu_bound", map[string]string{"gpu": "0", "moreh_device": id}); got != 1 {
		t.Errorf("GPU 0 bound = %v", got)
	}
	if got := gauge(t, families, "moreh_gpu_bound", map[string]string{"gpu": "3", "moreh_device": ""}); got != 0 {
		t.Errorf("GPU 3 bound = %v", got)
	}
	gpuUsed := gauge(t, families, "DCGM_FI_DEV_FB_USED", map[string]string{"gpu": "0"})
	gpuFree := gauge(t, families, "DCGM_FI_DEV_FB_FREE", map[string]string{"gpu": "0"})
	if gpuUsed+gpuFree != 65536 || gpuUsed < 40 {
		t.Errorf("GPU 0 used %v + free %v, want 65536 with the job's share used", gpuUsed, gpuFree)
	}
}

// TestMetricsMtimeIsTheSample: the metrics file's mtime is the time of the
// sample it shows (node_exporter's textfile collector judges staleness by
// it), not 1970.
func TestMetricsMtimeIsTheSample(t *testing.T) {
	tt := mountTree(t, store.Options{})
	fi, err := os.Stat(tt.path("metrics"))
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(fi.ModTime()); age < 0 || age > time.Minute {
		t.Errorf("metrics mtime %v is %v old, want the last sample's time", fi.ModTime(), age)
	}
}

// TestMetricsWhileJobsComeAndGo: a scrape reads whatever series the moment
// has (a job's utilisation appears only while it runs) and never fails for
// it: the collector describes every series it may send.
func TestMetricsWhileJobsComeAndGo(t *testing.T) {
	tt := mountTree(t, store.Options{})
	id := mkdevice(t, tt, "Small.64GB")
	before := readFile(t, tt.path("metrics")) // no job: no utilisation series
	pid, stop := startProc(t, 1)
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	during := readFile(t, tt.path("metrics"))
	stop()
	if strings.Contains(before, "moreh_device_utilization_ratio{") || !strings.Contains(during, "moreh_device_utilization_ratio{") {
		t.Errorf("utilisation series before a job: %v, while it runs: %v", strings.Contains(before, "utilization_ratio{"), strings.Contains(during, "utilization_ratio{"))
	}
}
