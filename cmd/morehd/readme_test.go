package main

import (
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// TestREADMEPythonExample runs the README's Python example against a real daemon.
func TestREADMEPythonExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```python\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) != 1 {
		t.Fatalf("README has %d python blocks, want 1", len(blocks))
	}
	d := morehdtest.Start(t)
	cmd := exec.Command("python3", "-c", string(blocks[0][1]))
	cmd.Env = append(os.Environ(), "MOREH_ROOT="+d.Mount)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's example failed: %v\n%s", err, out)
	}
	if want := "2026 262080 MiB\nrefused: Invalid argument\n"; string(out) != want {
		t.Errorf("the README's example printed %q, want %q (as its comments say)", out, want)
	}
	if entries, _ := os.ReadDir(d.Path("devices")); len(entries) != 0 {
		t.Errorf("the example left %d devices behind", len(entries))
	}
}
