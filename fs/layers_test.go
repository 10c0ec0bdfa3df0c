package fs

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/moreh-io/moreh"

// layerRules are the arrows that must not exist: cmd → fs → fs/node →
// store, gpu; store and gpu know nothing of each other, and fs reaches the
// state only through the registry.
var layerRules = []struct {
	from, to string // package path prefixes, below the module
	why      string
}{
	{"gpu", "store", "gpu measures hardware and knows nothing of the registry"},
	{"store", "gpu", "store decides on records and knows nothing of hardware"},
	{"store", "fs", "the registry does not know who serves it"},
	{"gpu", "fs", "the probe does not know who serves it"},
	{"fs/node", "fs", "the runtime is below the tree (only fs/node's own subpackages)"},
	{"", "cmd", "nothing imports the daemon"},
}

// forbiddenDeps are outside packages a layer must reach only through another.
var forbiddenDeps = map[string][]string{
	"fs":  {"go.etcd.io/bbolt", "go.etcd.io/etcd/client/v3"},
	"gpu": {"go.etcd.io/bbolt", "go.etcd.io/etcd/client/v3", "github.com/hanwen/go-fuse/v2/fs"},
}

// TestLayersPointOneWay runs go list over the module and fails on an import
// that runs against the arrows.
func TestLayersPointOneWay(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var pkg struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&pkg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		from := strings.TrimPrefix(strings.TrimPrefix(pkg.ImportPath, module), "/")
		for _, imp := range pkg.Imports {
			for _, bad := range forbiddenDeps[topOf(from)] {
				if imp == bad || strings.HasPrefix(imp, bad+"/") {
					t.Errorf("%s imports %s: %s reaches the state only through store", pkg.ImportPath, imp, topOf(from))
				}
			}
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := strings.TrimPrefix(imp, module+"/")
			if why, bad := againstArrows(from, to); bad {
				t.Errorf("%s imports %s: %s", from, to, why)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("go list found %d packages: the module was not read", seen)
	}
}

// TestLayerRulesCatch: the checker itself flags an arrow the wrong way.
func TestLayerRulesCatch(t *testing.T) {
	for _, c := range []struct {
		from, to string
		bad      bool
	}{
		{"gpu", "store", true}, {"store", "gpu", true}, {"fs/node", "fs", true}, {"fs", "cmd/morehd", true},
		{"fs", "fs/node", false}, {"fs/node", "store", false}, {"fs/node", "fs/node/cgroup", false}, {"cmd/morehd", "fs", false},
		{"cmd/morehd", "cmd/morehd/morehdtest", false}, {"scripts", "cmd/morehd/morehdtest", true}, {"store/etcdtest", "store", false},
	} {
		if _, bad := againstArrows(c.from, c.to); bad != c.bad {
			t.Errorf("%s → %s flagged %v, want %v", c.from, c.to, bad, c.bad)
		}
	}
}

// againstArrows says why from must not import to; a package may import its
// own subpackages, and cmd its own.
func againstArrows(from, to string) (string, bool) {
	for _, r := range layerRules {
		if within(from, r.from) && within(to, r.to) && !(r.from != "" && within(to, r.from)) && !(r.from == "" && within(from, r.to)) {
			return r.why, true
		}
	}
	return "", false
}

// within reports whether package path p is prefix or below it ("" is everything).
func within(p, prefix string) bool {
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

func topOf(p string) string {
	top, _, _ := strings.Cut(p, "/")
	return top
}
