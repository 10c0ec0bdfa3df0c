package fs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/moreh-io/moreh/fs/node"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// sourceCollector hands a source's series to client_golang.
type sourceCollector struct{ s *metricsSource }

func (c sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range metricFamilies {
		ch <- f.desc
	}
}
func (c sourceCollector) Collect(ch chan<- prometheus.Metric) { c.s.collect(ch) }

// streamAll reads a chunker's whole content.
func streamAll(c chunker) string {
	var b []byte
	for more := true; more; {
		b, more = c.more(b)
	}
	return string(b)
}

// canonical is an exposition as its families, each with its series sorted:
// the text format leaves the order of series open.
func canonical(t *testing.T, text string) string {
	t.Helper()
	families := parseMetrics(t, text)
	names := make([]string, 0, len(families))
	for name := range families {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		f := families[name]
		var series []string
		for _, m := range f.Metric {
			series = append(series, m.String())
		}
		slices.Sort(series)
		fmt.Fprintf(&b, "%s %s %q\n%s\n", name, f.GetType(), f.GetHelp(), strings.Join(series, "\n"))
	}
	return b.String()
}

// TestMetricsTextIsClientGolangs: the streamed text holds exactly the
// families and series that client_golang's registry gathers and encodes
// from the same view, families in its order: two tokens, a running job,
// bound and free GPUs, and a label value to escape.
func TestMetricsTextIsClientGolangs(t *testing.T) {
	probe, err := gpu.NewSim("sim:4x64GB")
	if err != nil {
		t.Fatal(err)
	}
	var rt *node.Runtime
	tt := mountTreeConfig(t, store.Options{MaxDevices: 4}, probe, func(c *Config) { rt = c.Node })
	id := mkdevice(t, tt, "Medium.128GB")
	mkdevice(t, tt, "Small.64GB")
	if _, _, err := tt.reg.CreateToken(t.Context(), "team", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := tt.reg.CreateDevice(t.Context(), "team", "Large.256GB"); err != nil {
		t.Fatal(err)
	}
	pid, _ := startProc(t, 10)
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	v, err := rt.MetricsView(t.Context(), 0, true, true)
	if err != nil {
		t.Fatal(err)
	}
	v.Tokens[0].Name = "a\\b\"c\nd" // as no token can be named: every escape at once
	for _, deviceIDs := range []bool{true, false} {
		s := newMetricsSource(v, true, deviceIDs)
		streamed := streamAll(&metricsText{src: s})
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(sourceCollector{s})
		gathered, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var enc bytes.Buffer
		var order []string
		for _, f := range gathered {
			if err := expfmt.NewEncoder(&enc, expfmt.NewFormat(expfmt.TypeTextPlain)).Encode(f); err != nil {
				t.Fatal(err)
			}
			order = append(order, f.GetName())
		}
		if got, want := canonical(t, streamed), canonical(t, enc.String()); got != want {
			t.Errorf("deviceIDs %v: streamed\n%s\nclient_golang\n%s", deviceIDs, got, want)
		}
		var streamedOrder []string
		for _, line := range strings.Split(streamed, "\n") {
			if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
				streamedOrder = append(streamedOrder, strings.Fields(name)[0])
			}
		}
		if !slices.Equal(streamedOrder, order) || len(order) != len(metricFamilies) {
			t.Errorf("families %v, client_golang's %v (all %d expected: a job runs)", streamedOrder, order, len(metricFamilies))
		}
	}
}

// TestMetricsReaderKeepsItsSnapshot: a reader that opened metrics before a
// mkdir and an rmdir sees the old set of devices to its end, read in small
// pieces, and again when it reads from the start; a new open sees the new set.
func TestMetricsReaderKeepsItsSnapshot(t *testing.T) {
	tt := mountTree(t, store.Options{MaxDevices: 300})
	var old []string
	for range 250 { // several chunks of text: most of it is written after the changes
		d, err := tt.reg.CreateDevice(t.Context(), "default", "Small.64GB")
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, strconv.FormatUint(d.ID, 10))
	}
	f, err := os.Open(tt.path("metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	piece := make([]byte, 97)
	n, err := f.Read(piece)
	if err != nil {
		t.Fatal(err)
	}
	first := string(piece[:n])
	added := mkdevice(t, tt, "Large.256GB")
	if err := os.Remove(tt.path("devices", old[0])); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	for {
		n, err := f.Read(piece)
		rest.Write(piece[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := first + rest.String()
	for _, id := range old {
		if !strings.Contains(seen, `device="`+id+`"`) {
			t.Errorf("the open reader lost device %s (removed after its open)", id)
		}
	}
	if strings.Contains(seen, `device="`+added+`"`) {
		t.Errorf("the open reader sees device %s, made after its open", added)
	}
	again := make([]byte, len(seen)+10)
	if n, err := f.ReadAt(again, 0); string(again[:n]) != seen || err != io.EOF {
		t.Errorf("read again from the start: %d bytes, %v; want the same %d bytes", n, err, len(seen))
	}
	fresh := readFile(t, tt.path("metrics"))
	if !strings.Contains(fresh, `device="`+added+`"`) || strings.Contains(fresh, `device="`+old[0]+`"`) {
		t.Errorf("a new open does not show the change:\n%s", fresh)
	}
	if len(seen) < 2*metricsChunk {
		t.Errorf("metrics is %d bytes: the test needs more than two chunks", len(seen))
	}
	parseMetrics(t, seen)
}

// numbered is a chunker of lines "0\n1\n…" up to n, a few per chunk.
type numbered struct{ i, n int }

func (c *numbered) more(b []byte) ([]byte, bool) {
	for end := c.i + 1000; c.i < min(end, c.n); c.i++ {
		b = strconv.AppendInt(b, int64(c.i), 10)
		b = append(b, '\n')
	}
	return b, c.i < c.n
}

// TestStreamKeepsLittle: a stream serves any offset, in order or not, with
// the bytes of its content, and holds only about a chunk and a read of it.
func TestStreamKeepsLittle(t *testing.T) {
	const n = 300000
	want := streamAll(&numbered{n: n})
	s := newStream(func() chunker { return &numbered{n: n} })
	read := func(off int64, size int) string {
		res, errno := s.Read(t.Context(), make([]byte, size), off)
		if errno != 0 {
			t.Fatal(errno)
		}
		data, _ := res.Bytes(nil)
		return string(data)
	}
	var got strings.Builder
	most := 0
	for off := int64(0); ; {
		piece := read(off, 4096)
		if piece == "" {
			break
		}
		got.WriteString(piece)
		off += int64(len(piece))
		most = max(most, cap(s.buf))
	}
	if got.String() != want {
		t.Fatalf("read in order: %d bytes, want %d", got.Len(), len(want))
	}
	if most > 64<<10 {
		t.Errorf("the stream held %d bytes of a %d-byte content", most, len(want))
	}
	for _, off := range []int64{int64(len(want)) - 10, 5, 1 << 20, 0, int64(len(want)), 777777} {
		if got, w := read(off, 100), want[min(off, int64(len(want))):min(off+100, int64(len(want)))]; got != w {
			t.Errorf("read 100 at %d = %q, want %q", off, got, w)
		}
	}
}
