package fs

import (
	"fmt"
	"log"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// requestCounter counts the requests that go-fuse logs in debug mode.
type requestCounter struct{ n atomic.Int64 }

func (c *requestCounter) Write(p []byte) (int, error) {
	c.n.Add(int64(strings.Count(string(p), " rx ")))
	return len(p), nil
}

// countRequests sends the standard logger, where go-fuse's debug mode logs
// each request, to a counter until tb ends.
func countRequests(tb testing.TB) *requestCounter {
	var counter requestCounter
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(&counter)
	tb.Cleanup(func() { log.SetOutput(out); log.SetFlags(flags) })
	return &counter
}

// TestRequestsPerRead: cat of each file costs the FUSE requests the kernel
// cannot do without (path links, open, reads, release) and no permission
// GETATTR: attributes that are the same for every caller stay cached, with
// tokens off and on. A count, not a time: it holds on any machine.
func TestRequestsPerRead(t *testing.T) {
	counter := countRequests(t)
	probe, err := gpu.NewSim("sim:4x64GB")
	if err != nil {
		t.Fatal(err)
	}
	tt := mountTreeConfig(t, store.Options{}, probe, func(c *Config) { c.Debug = true })
	if err := exec.Command("mkdir", tt.path("devices", "Small.64GB")).Run(); err != nil {
		t.Fatal(err)
	}
	// The least each cat costs: readlink of the root's link (none for
	// status.json, read by its own path), the device's lookup (its name may
	// go at any time), open, cat's fstat (the kernel marks atime stale at
	// each read, so fstat asks again: a go-fuse file does the same), two
	// reads (the data, then the end), release.
	want := map[string]int{"current": 6, "devices/2026/usage": 7, "status": 6, "tokens/default/status.json": 5}
	const reads = 20
	for _, mode := range []string{"tokens off", "tokens on"} {
		if mode == "tokens on" {
			newToken(t, tt, "alice") // root stays on the default token, which no one else holds
		}
		for file, per := range want {
			path := tt.path(strings.Split(file, "/")...)
			script := fmt.Sprintf(`cat "$1" >/dev/null; for i in $(seq %d); do cat "$1"; done >/dev/null`, reads)
			counter.n.Store(0)
			// The first cat fills the caches; the count is of all, with a
			// second's slack for an attribute timeout falling in the loop.
			if out, err := exec.Command("bash", "-c", script, "-", path).CombinedOutput(); err != nil {
				t.Fatalf("%s: cat %s: %v\n%s", mode, file, err, out)
			}
			if got, most := counter.n.Load(), int64((reads+1)*per+12); got > most {
				t.Errorf("%s: %d cats of %s cost %d FUSE requests, want at most %d (%d each, the first and an expiry aside)", mode, reads+1, file, got, most, per)
			}
		}
	}
}
