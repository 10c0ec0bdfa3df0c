package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/store/etcdtest"
)

// The whole store suite runs against bbolt, and against a real etcd when
// MOREH_STORE_BACKEND=etcd (scripts/test.sh runs both).
var etcdCluster *etcdtest.Cluster

func TestMain(m *testing.M) {
	if os.Getenv("MOREH_STORE_BACKEND") == "etcd" {
		dir, err := os.MkdirTemp("", "moreh-etcd-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if etcdCluster, err = etcdtest.StartIn(dir, 1); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		code := m.Run()
		etcdCluster.StopAll()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// openTestEngine opens the backend under test: a bbolt file at path, or the
// etcd key prefix path.
func openTestEngine(path string) (Engine, error) {
	ctx := context.Background()
	if etcdCluster == nil {
		return OpenBolt(path, time.Second)
	}
	return OpenEtcd(ctx, EtcdConfig{Endpoints: etcdCluster.Endpoints(), Prefix: path, LeaseTTL: 5 * time.Second})
}

// TestTooManyGPUsForOneTransaction: on etcd, a node whose GPUs do not fit
// the server's --max-txn-ops fails with a message that names that flag.
func TestTooManyGPUsForOneTransaction(t *testing.T) {
	if etcdCluster == nil {
		t.Skip("etcd only (MOREH_STORE_BACKEND=etcd)")
	}
	reg, _ := openTestRegistry(t, Options{Node: "big"})
	gpus := make([]PoolGPU, 5000) // the test cluster allows 4096 operations
	for i := range gpus {
		gpus[i] = PoolGPU{UUID: fmt.Sprintf("GPU-%05d", i), Index: i, Units: 1, MemoryMiB: UnitMiB}
	}
	_, err := reg.SetPool(t.Context(), gpus)
	if err == nil || !strings.Contains(err.Error(), "--max-txn-ops") {
		t.Fatalf("SetPool of 5000 GPUs = %v, want a failure naming --max-txn-ops", err)
	}
}
