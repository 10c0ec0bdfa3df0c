package store

import (
	"context"
	"fmt"
	"os"
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
