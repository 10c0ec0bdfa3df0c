package scripts_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHistoryPrintsTheDaemonsFiles: moreh-smi --history prints the token's
// history as morehd renders it (fs/testdata's goldens stand in for morehd),
// -i keeps one device's jobs, --format=csv[,noheader] the CSV form.
func TestHistoryPrintsTheDaemonsFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	tok := filepath.Join(root, "tokens", "alice")
	if err := os.MkdirAll(filepath.Join(tok, "devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tokens/alice/devices", filepath.Join(root, "devices")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "models"), []byte("1\tSmall.64GB\t1\t65520\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table := read(t, filepath.Join("..", "fs", "testdata", "history.golden"))
	csv := read(t, filepath.Join("..", "fs", "testdata", "history.csv.golden"))
	for name, content := range map[string]string{"history": table, "history.csv": csv} {
		if err := os.WriteFile(filepath.Join(tok, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lines := func(s string) []string { return strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n") }
	want(t, shim(t, root, "", nil, "moreh-smi", "--history"), 0, table, "")
	want(t, shim(t, root, "", nil, "moreh-smi", "--history", "-i", "2031"), 0, lines(table)[0]+lines(table)[2]+"\n", "")
	want(t, shim(t, root, "", nil, "moreh-smi", "--history", "--format=csv"), 0, csv, "")
	want(t, shim(t, root, "", nil, "moreh-smi", "--history", "--format=csv,noheader", "-i2026"), 0, lines(csv)[1], "")
	r := shim(t, root, "", nil, "moreh-smi", "--history", "--format=json")
	if r.code != 2 || !strings.Contains(r.stderr, "--history takes --format=csv") {
		t.Errorf("--history --format=json: exit %d, %q", r.code, r.stderr)
	}
}
