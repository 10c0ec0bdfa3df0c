package fs

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/store"
)

// TestSampledFileFollowsEveryInput: a status kept between reads is rendered
// again after a commit, a sample or the clock's next second, and only then.
func TestSampledFileFollowsEveryInput(t *testing.T) {
	ctx := t.Context()
	tr := newRenderTree(t, filepath.Join(t.TempDir(), "moreh.db"), store.Options{})
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	tr.Now = func() time.Time { return now }
	renders := 0
	read := tr.sampled(func(ctx context.Context) ([]byte, error) {
		renders++
		return tr.renderStatus(ctx, "default", 0)
	})
	status := func(step string, wantRenders int) string {
		t.Helper()
		data, err := read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if renders != wantRenders {
			t.Errorf("%s: %d renders, want %d", step, renders, wantRenders)
		}
		return string(data)
	}

	first := status("first read", 1)
	if again := status("nothing changed", 1); again != first {
		t.Errorf("the kept rendering changed:\n%s\nthen\n%s", first, again)
	}
	dev, err := tr.Registry.CreateDevice(ctx, "default", "Large.256GB")
	if err != nil {
		t.Fatal(err)
	}
	if got := status("after a commit", 2); !strings.Contains(got, "Large.256GB") {
		t.Errorf("a device made before the read is missing:\n%s", got)
	}
	status("nothing changed since", 2)
	tr.Node.SampleNow(ctx)
	status("after a sample", 3)
	now = now.Add(time.Second)
	if got := status("a second later", 4); !strings.Contains(got, "09:00:01") {
		t.Errorf("the header does not show the new second:\n%s", got)
	}
	other, err := tr.Registry.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	status("after another device", 5)
	if err := tr.Registry.Switch(ctx, "default", dev.ID); err != nil {
		t.Fatal(err)
	}
	if got := status("after a switch", 6); !strings.Contains(got, "* "+formatUint(dev.ID)) || strings.Contains(got, "* "+formatUint(other.ID)) {
		t.Errorf("the switch back to %d is not shown:\n%s", dev.ID, got)
	}
}
