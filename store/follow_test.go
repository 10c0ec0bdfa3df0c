package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestRemoteChangeNamesWhatChanged: on etcd, another node's device
// creation reaches OnRemoteChange with the token whose list changed and the
// device whose record did, so that the tree can drop what it cached of them.
func TestRemoteChangeNamesWhatChanged(t *testing.T) {
	if etcdCluster == nil {
		t.Skip("etcd only (MOREH_STORE_BACKEND=etcd): bbolt has one writer")
	}
	ctx := t.Context()
	reg, path := openTestRegistry(t, Options{})
	changes := make(chan RemoteChange, 64)
	reg.OnRemoteChange(func(c RemoteChange) { changes <- c })
	follow, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { reg.FollowOthers(follow); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	other := openRegistryAt(t, path, Options{})
	d, err := other.CreateDevice(ctx, "default", "Small.64GB")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for sawToken, sawDevice := false, false; !sawToken || !sawDevice; {
		select {
		case c := <-changes:
			sawToken = sawToken || slices.Contains(c.Tokens, "default")
			sawDevice = sawDevice || slices.Contains(c.Devices, d.ID)
			if slices.Contains(c.Tokens, "") {
				t.Errorf("a change names the empty token: %+v", c)
			}
		case <-deadline:
			t.Fatalf("the other node's mkdir never arrived whole: token seen %v, device %d seen %v", sawToken, d.ID, sawDevice)
		}
	}
}
