package fs

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// hangingProbe is a GPU whose driver stops answering: every reading blocks
// until the test ends.
type hangingProbe struct {
	gpu.Probe
	stuck chan struct{}
}

func (p hangingProbe) Sample(ctx context.Context) ([]gpu.Reading, error) {
	<-p.stuck
	return nil, context.Canceled
}

func (p hangingProbe) Processes(ctx context.Context) ([]gpu.Process, error) {
	<-p.stuck
	return nil, context.Canceled
}

// TestReadsNeverWaitOnHardware: with every probe call hanging, each file
// still reads at once, from the sampler's last snapshot.
func TestReadsNeverWaitOnHardware(t *testing.T) {
	sim, err := gpu.NewSim("sim:4x64GB")
	if err != nil {
		t.Fatal(err)
	}
	p := hangingProbe{Probe: sim, stuck: make(chan struct{})}
	t.Cleanup(func() { close(p.stuck) })
	tt := mountTreeWith(t, store.Options{}, p)
	id := mkdevice(t, tt, "Medium.128GB")
	done := make(chan string)
	go func() {
		var b strings.Builder
		for _, f := range [][]string{{"status"}, {"pool"}, {"metrics"}, {"devices", id, "usage"}, {"devices", id, "status.json"}} {
			content, err := os.ReadFile(tt.path(f...))
			if err != nil {
				content = []byte(err.Error())
			}
			b.Write(content)
		}
		done <- b.String()
	}()
	select {
	case out := <-done:
		if !strings.Contains(out, "memory_total_mib 131040") || !strings.Contains(out, "0 1 - - 65536 - local Simulated GPU") {
			t.Errorf("reads with a hung probe:\n%s", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waits on the hung probe")
	}
}
