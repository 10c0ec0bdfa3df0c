package fs

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/moreh-io/moreh/store"
)

// TestUnmountLeavesNoGoroutine: a mount with its runtime running, used
// (a device, a read, a failed write), then unmounted and stopped, leaves
// no goroutine behind: the sampler's, the supervisor's and go-fuse's are
// all joined.
func TestUnmountLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Run("mounted", func(t *testing.T) {
		tt := mountTree(t, store.Options{})
		id := mkdevice(t, tt, "Small.64GB")
		if _, err := os.ReadFile(tt.path("devices", id, "status")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tt.path("current"), []byte("nope\n"), 0); err == nil {
			t.Fatal("a bad write succeeded")
		}
	}) // its Cleanup unmounts, stops the runtime and closes the store
	goleak.VerifyNone(t, before)
}
