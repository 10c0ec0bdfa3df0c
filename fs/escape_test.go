package fs

import (
	"encoding/json"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// TestProcessNameEscaped: a process that names itself "\x1b[2J" (a
// terminal's clear-screen) and runs as a job is shown as the text \x1b[2J
// in the status table another user reads, never as the bytes; status.json
// stays valid JSON that holds the name as it is.
func TestProcessNameEscaped(t *testing.T) {
	tt := mountTree(t, store.Options{}) // tokens off: every user shares the default token
	id := mkdevice(t, tt, "Small.64GB")
	cmd := exec.Command("python3", "-c", "import sys\nopen('/proc/self/comm', 'w').write('\\x1b[2J')\nprint('ready', flush=True)\nsys.stdin.read()\n")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	ready := make([]byte, 6)
	if _, err := io.ReadFull(out, ready); err != nil || string(ready) != "ready\n" {
		t.Fatalf("the helper did not start: %q %v", ready, err)
	}
	if err := writeFile(tt.path("devices", id, "procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	var status string
	morehdtest.Eventually(t, 5*time.Second, "status names the process", func() bool {
		status = runAs(t, tt, aliceUID, `cat "$M/status"`)
		return strings.Contains(status, `\x1b[2J`)
	})
	if strings.Contains(status, "\x1b") {
		t.Errorf("status holds a raw ESC:\n%q", status)
	}
	// The borders still line up: every table line is as long as its rule.
	for _, line := range strings.Split(status, "\n") {
		if strings.HasPrefix(line, "|") && !strings.HasSuffix(line, "|") {
			t.Errorf("a ragged table line: %q", line)
		}
	}
	t.Logf("another user's status:\n%s", status)
	raw := runAs(t, tt, aliceUID, `cat "$M/tokens/default/status.json"`)
	var doc struct {
		Processes []struct {
			Name string `json:"name"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil || len(doc.Processes) != 1 || doc.Processes[0].Name != "\x1b[2J" {
		t.Errorf("status.json = %v, %+v:\n%s", err, doc, raw)
	}
	if strings.Contains(raw, "\x1b") {
		t.Errorf("status.json holds a raw ESC")
	}
}
