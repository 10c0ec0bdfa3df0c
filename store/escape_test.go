package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"python3":             "python3",
		"日本語 ✓":               "日本語 ✓",
		"\x1b[2J":             `\x1b[2J`,
		"a\tb\nc\rd\x00e\x7f": `a\x09b\x0ac\x0dd\x00e\x7f`,
		"\u009b31m":           `\x9b31m`, // C1 CSI
		"bad\xffutf8":         `bad\xffutf8`,
		"line\u2028sep":       `line\u2028sep`,
	} {
		if got := TermSafe(in); got != want {
			t.Errorf("TermSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestErrorLogEscapesControls: a message echoing a user's input shows its
// escape sequences as text, never as bytes a terminal acts on.
func TestErrorLogEscapesControls(t *testing.T) {
	l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	l.Add("default", Caller{PID: 7, UID: 1000}, "write", "tokens/default/devices/2026/model", errors.New("Unknown model \x1b[2J\u009b1m\xff."))
	got := string(l.Render("default"))
	want := "2026-01-01T00:00:00Z pid=7 uid=1000 write tokens/default/devices/2026/model: Unknown model \\x1b[2J\\x9b1m\\xff.\n"
	if got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	if strings.ContainsAny(got, "\x1b\u009b") {
		t.Errorf("line holds a raw control character: %q", got)
	}
}
