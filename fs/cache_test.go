package fs

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// readBack is Python: a writer process switches current (and a device's
// model) round after round; after each write returns, a reader process opens
// and reads both files and must find what was written. A third process
// reads them without pause all along, so that the kernel's cache is being
// filled while every commit happens. It prints "ok N" or the first stale read.
const readBack = `
import os, sys
cur, model = sys.argv[1], sys.argv[2]
ids, models = sys.argv[3].split(","), ["Small.64GB", "Medium.128GB"]
rounds = int(sys.argv[4])
def read(p):
    with open(p) as f:
        return f.read()
hammer = os.fork()
if hammer == 0:
    while True:
        read(cur); read(model)
to_reader, from_writer = os.pipe()
to_writer, from_reader = os.pipe()
reader = os.fork()
if reader == 0:
    os.close(from_writer); os.close(to_writer)
    inp, out = os.fdopen(to_reader), os.fdopen(from_reader, "w")
    for line in inp:
        i = int(line)
        got = (read(cur), read(model))
        want = (ids[i % len(ids)] + "\n", models[i % 2] + "\n")
        if got != want:
            out.write("round %d: read %r, want %r\n" % (i, got, want)); out.flush()
            os._exit(1)
        out.write("ok\n"); out.flush()
    os._exit(0)
os.close(to_reader); os.close(from_reader)
out, inp = os.fdopen(from_writer, "w"), os.fdopen(to_writer)
try:
    for i in range(rounds):
        with open(cur, "w") as f:
            f.write(ids[i % len(ids)] + "\n")
        with open(model, "w") as f:
            f.write(models[i % 2] + "\n")
        out.write("%d\n" % i); out.flush()
        answer = inp.readline()
        if answer != "ok\n":
            print(answer or "the reader died", end="")
            sys.exit(1)
    print("ok", rounds)
finally:
    os.kill(hammer, 9)
    os.waitpid(hammer, 0)
`

// TestKeptFilesNeverStale: current and a device's model are kept in the
// kernel (attributes and content), yet after each of 10,000 writes returns,
// another process reads the new value, while a third reads all along.
func TestKeptFilesNeverStale(t *testing.T) {
	tt := mountTree(t, store.Options{})
	ids := []string{mkdevice(t, tt, "Small.64GB"), mkdevice(t, tt, "Small.64GB"), mkdevice(t, tt, "Small.64GB")}
	cur := tt.path("tokens", "default", "current")
	model := tt.path("tokens", "default", "devices", ids[0], "model")
	rounds := "10000"
	if testing.Short() {
		rounds = "1000"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "-c", readBack, cur, model, strings.Join(ids, ","), rounds)
	cmd.WaitDelay = 5 * time.Second // its children hold the output
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "ok "+rounds+"\n" {
		t.Fatalf("read back: %v\n%s", err, out)
	}
}

// TestKeptFilesFollowOtherChanges: a kept file follows a commit made
// outside the mount (here the registry itself, as the supervisor or
// another node's change would): the next read shows it.
func TestKeptFilesFollowOtherChanges(t *testing.T) {
	ctx := t.Context()
	tt := mountTree(t, store.Options{})
	a, b := mkdevice(t, tt, "Small.64GB"), mkdevice(t, tt, "Small.64GB")
	cur := tt.path("tokens", "default", "current")
	limit := tt.path("tokens", "default", "limit")
	model := tt.path("tokens", "default", "devices", a, "model")
	for _, p := range []string{cur, limit, model} {
		readFile(t, p) // now in the kernel's cache
	}
	id, _ := store.ParseDeviceID(a)
	if err := tt.reg.Switch(ctx, "default", id); err != nil {
		t.Fatal(err)
	}
	if _, err := tt.reg.SetModel(ctx, "default", id, "Medium.128GB"); err != nil {
		t.Fatal(err)
	}
	bid, _ := store.ParseDeviceID(b)
	if err := tt.reg.RemoveDevice(ctx, "default", bid); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, cur); got != a+"\n" {
		t.Errorf("current after a switch elsewhere = %q, want %s", got, a)
	}
	if got := readFile(t, model); got != "Medium.128GB\n" {
		t.Errorf("model after a change elsewhere = %q", got)
	}
	if got := readFile(t, limit); !strings.HasSuffix(got, "used 1\n") {
		t.Errorf("limit after a removal elsewhere = %q", got)
	}
	// The removed device's entry is dropped in the background.
	morehdtest.Eventually(t, 5*time.Second, "the removed device's entry is dropped", func() bool {
		_, err := os.Stat(tt.path("tokens", "default", "devices", b))
		return err != nil
	})
}
