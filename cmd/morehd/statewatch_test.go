package main

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
)

// TestStateFileWatched: when the state file is unlinked, or replaced,
// under a running daemon, the next write fails with EIO and a sentence in
// errors, the log says within a second how to recover, and nothing more
// is written into the file nobody will open again.
func TestStateFileWatched(t *testing.T) {
	for _, how := range []string{"unlinked", "replaced"} {
		t.Run(how, func(t *testing.T) {
			d := morehdtest.Start(t)
			if err := os.Mkdir(d.Path("devices", "Small.64GB"), 0o755); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "unlinked":
				if err := os.Remove(d.DB); err != nil {
					t.Fatal(err)
				}
			case "replaced": // a copy renamed over it, as an editor or a restore would
				if err := copyFile(d.DB, d.DB+".copy"); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(d.DB+".copy", d.DB); err != nil {
					t.Fatal(err)
				}
			}
			lost := time.Now()
			morehdtest.Eventually(t, 2*time.Second, "the log says the state file is lost", func() bool {
				return strings.Contains(d.Log(), "the state file is lost")
			})
			t.Logf("logged after %v", time.Since(lost).Round(time.Millisecond))
			err := os.Mkdir(d.Path("devices", "Large.256GB"), 0o755)
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("mkdir after the state file was %s: %v, want EIO", how, err)
			}
			if err := os.WriteFile(d.Path("current"), []byte("2026"), 0); !errors.Is(err, syscall.EIO) {
				t.Errorf("switch after the state file was %s: %v, want EIO", how, err)
			}
			errs := read(t, d.Path("tokens", "default", "errors"))
			if !strings.Contains(errs, "mkdir tokens/default/devices/Large.256GB: The state file "+d.DB+" was ") || !strings.Contains(errs, "nothing more is written to it") {
				t.Errorf("errors lacks the sentence:\n%s", errs)
			}
			logLine := ""
			for _, l := range strings.Split(d.Log(), "\n") {
				if strings.Contains(l, "the state file is lost") {
					logLine = l
				}
			}
			if how == "unlinked" && !strings.Contains(logLine, "cp /proc/") {
				t.Errorf("the log does not say how to keep the changes: %s", logLine)
			}
			t.Logf("log: %s", logLine)
			// Reads still answer from the open database.
			if got := ls(t, d.Path("devices")); len(got) != 1 || got[0] != "2026" {
				t.Errorf("devices after the loss = %v", got)
			}
			if how == "replaced" {
				d.Stop()
				d.Restart() // the replacement is the state now: it was a copy with 2026
				if got := ls(t, d.Path("devices")); len(got) != 1 || got[0] != "2026" {
					t.Errorf("devices after a restart on the replacement = %v", got)
				}
				if err := os.Mkdir(d.Path("devices", "Large.256GB"), 0o755); err != nil {
					t.Errorf("mkdir after the restart: %v", err)
				}
			}
		})
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
