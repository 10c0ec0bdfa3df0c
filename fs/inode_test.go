package fs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/moreh-io/moreh/store"
)

// TestInodesAreDistinct: every node of a token's tree, its devices' and its
// admin/tokens/ nodes has its own inode number, whatever order they are
// looked up in: go-fuse answers a number it knows with the node it has, so
// a shared number would serve one file's content under another's name
// (tokens/<n>/history.csv once shared a number with admin/tokens/<n>/secret).
func TestInodesAreDistinct(t *testing.T) {
	tt := mountTree(t, store.Options{})
	id := mkdevice(t, tt, "Small.64GB")
	dirs := []string{
		tt.path("tokens", "default"), tt.path("tokens", "default", "devices", id), tt.path("admin", "tokens", "default"),
	}
	var paths []string
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, dir)
		for _, e := range entries {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	seen := map[uint64]string{}
	for range 2 { // the second pass finds the nodes the kernel keeps
		for _, p := range paths {
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				t.Fatal(err)
			}
			if other, ok := seen[st.Ino]; ok && other != p {
				t.Errorf("%s and %s share inode %#x", p, other, st.Ino)
			}
			seen[st.Ino] = p
		}
	}
	if got := readFile(t, tt.path("admin", "tokens", "default", "max_devices")); got != "5\n" {
		t.Errorf("admin max_devices after the walk reads %q", got)
	}
}
