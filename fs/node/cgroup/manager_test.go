package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestNewMakesAnEmptySubtreeWithControllers(t *testing.T) {
	m := testManager(t)
	procs, err := os.ReadFile(filepath.Join(m.Dir(), "cgroup.procs"))
	if err != nil || len(procs) != 0 {
		t.Fatalf("the subtree's cgroup.procs = %q, %v; want empty (no internal processes)", procs, err)
	}
	on, _ := os.ReadFile(filepath.Join(m.Dir(), "cgroup.subtree_control"))
	if got, want := strings.Join(m.Controllers(), " "), strings.Join(sortedFields(string(on)), " "); got != want {
		t.Errorf("Controllers() = %q, subtree_control has %q", got, want)
	}
	avail := readString(filepath.Join(m.Dir(), "cgroup.controllers"))
	for _, c := range wantControllers {
		if contains(fields(avail), c) != contains(m.Controllers(), c) {
			t.Errorf("controller %s: available to the subtree %v, enabled for jobs %v", c, contains(fields(avail), c), contains(m.Controllers(), c))
		}
	}
	t.Logf("controllers for jobs: %v (available: %q)", m.Controllers(), strings.TrimSpace(avail))
}

func TestCreateOpenList(t *testing.T) {
	m := testManager(t)
	for _, id := range []uint64{7, 3, 1 << 60} {
		g := create(t, m, id)
		if want := filepath.Join(m.Dir(), "job-"+uintString(id)); g.Path() != want || g.ID() != id {
			t.Errorf("Create(%d) = %s (id %d), want %s", id, g.Path(), g.ID(), want)
		}
	}
	for _, foreign := range []string{"other", "job-07", "job-x"} {
		if err := os.Mkdir(filepath.Join(m.Dir(), foreign), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(filepath.Join(m.Dir(), foreign)) })
	}
	ids, err := m.List()
	if want := []uint64{3, 7, 1 << 60}; err != nil || !reflect.DeepEqual(ids, want) {
		t.Errorf("List() = %v, %v; want %v", ids, err, want)
	}
	if _, err := m.Create(7); !errors.Is(err, os.ErrExist) {
		t.Errorf("Create of an existing job: %v, want ErrExist", err)
	}
	if g, err := m.Open(3); err != nil || g.Path() != filepath.Join(m.Dir(), "job-3") {
		t.Errorf("Open(3) = %v, %v", g, err)
	}
	if _, err := m.Open(4); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing job: %v, want ErrNotExist", err)
	}
}

func TestNewRefusesADirectoryOutsideCgroup2(t *testing.T) {
	_, err := New(filepath.Join(t.TempDir(), "moreh"))
	if err == nil || !strings.Contains(err.Error(), "not in a cgroup v2 hierarchy") {
		t.Errorf("New on a tmpfs/disk directory: %v, want 'not in a cgroup v2 hierarchy'", err)
	}
}

func sortedFields(s string) []string {
	f := fields(s)
	for i := range f {
		for j := i + 1; j < len(f); j++ {
			if f[j] < f[i] {
				f[i], f[j] = f[j], f[i]
			}
		}
	}
	return f
}

func uintString(v uint64) string { return strconv.FormatUint(v, 10) }
