package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// testCaller is the process every test line names.
var testCaller = Caller{PID: 42, UID: 1000}

func testErrorLog(start time.Time, step time.Duration) *ErrorLog {
	l := NewErrorLog()
	l.now = fixedClock(start, step)
	return l
}

// TestErrorLogLineFormat: "<RFC3339 UTC time> pid=<pid> uid=<uid> <op> <path>: <msg>\n".
func TestErrorLogLineFormat(t *testing.T) {
	start := time.Date(2026, 3, 1, 21, 4, 5, 999, time.FixedZone("KST", 9*3600))
	l := testErrorLog(start, time.Second)
	if got := l.Render("default"); len(got) != 0 {
		t.Fatalf("empty log renders %q", got)
	}
	l.Add("default", testCaller, "mkdir", "/moreh/tokens/default/devices/Huge", &Error{Kind: KindInvalid, Msg: "Unknown model \"Huge\"."})
	l.Add("default", testCaller, "write", "/moreh/tokens/default/current", errors.New("Device 9 does not exist."))
	want := "2026-03-01T12:04:05Z pid=42 uid=1000 mkdir /moreh/tokens/default/devices/Huge: Unknown model \"Huge\".\n" +
		"2026-03-01T12:04:06Z pid=42 uid=1000 write /moreh/tokens/default/current: Device 9 does not exist.\n"
	if got := string(l.Render("default")); got != want {
		t.Fatalf("Render =\n%q\nwant\n%q", got, want)
	}
	// Render is a copy: changing it changes nothing.
	b := l.Render("default")
	b[0] = 'X'
	if got := string(l.Render("default")); got != want {
		t.Fatalf("Render shares its buffer: %q", got)
	}
}

// TestErrorLogKeepsLast32: the 33rd line pushes the first out; order is kept.
func TestErrorLogKeepsLast32(t *testing.T) {
	l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Second)
	for i := 0; i < 100; i++ {
		l.Add("default", testCaller, "rmdir", "/moreh/devices/"+strconv.Itoa(i), fmt.Errorf("failure %d", i))
		lines := splitLines(t, l.Render("default"))
		if want := min(i+1, 32); len(lines) != want {
			t.Fatalf("after %d adds: %d lines, want %d", i+1, len(lines), want)
		}
		first := max(0, i+1-32)
		for j, line := range lines {
			n := first + j
			want := time.Date(2026, 1, 1, 0, 0, n, 0, time.UTC).Format(time.RFC3339) +
				" pid=42 uid=1000 rmdir /moreh/devices/" + strconv.Itoa(n) + ": failure " + strconv.Itoa(n)
			if line != want {
				t.Fatalf("after %d adds, line %d = %q, want %q", i+1, j, line, want)
			}
		}
	}
}

// TestErrorLogPerToken: each token sees only its own lines, each keeps 32.
func TestErrorLogPerToken(t *testing.T) {
	l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	for i := 0; i < 40; i++ {
		l.Add("a", testCaller, "op", "/a", fmt.Errorf("a%d", i))
		if i < 3 {
			l.Add("b", testCaller, "op", "/b", fmt.Errorf("b%d", i))
		}
	}
	a, b := splitLines(t, l.Render("a")), splitLines(t, l.Render("b"))
	if len(a) != 32 || len(b) != 3 {
		t.Fatalf("a has %d lines, b %d; want 32 and 3", len(a), len(b))
	}
	for _, line := range a {
		if !strings.Contains(line, " op /a: a") {
			t.Fatalf("a holds %q", line)
		}
	}
	if !strings.HasSuffix(a[0], ": a8") || !strings.HasSuffix(a[31], ": a39") {
		t.Fatalf("a runs %q … %q", a[0], a[31])
	}
	for i, line := range b {
		if want := "2026-01-01T00:00:00Z pid=42 uid=1000 op /b: b" + strconv.Itoa(i); line != want {
			t.Fatalf("b line %d = %q, want %q", i, line, want)
		}
	}
	if got := l.Render("c"); len(got) != 0 {
		t.Fatalf("unknown token renders %q", got)
	}
}

// TestErrorLogEscapesPath: a path with spaces, newlines, quotes or other odd
// bytes is quoted so that the line splits on its first five spaces and has
// one newline; an ordinary path is left as it is.
func TestErrorLogEscapesPath(t *testing.T) {
	cases := []struct {
		path, want string
	}{
		{"/moreh/devices/2026", "/moreh/devices/2026"},
		{"/moreh/devices/Large.256GB", "/moreh/devices/Large.256GB"},
		{"/moreh/devices/큰모델", "/moreh/devices/큰모델"},
		{`/moreh/devices/back\slash`, `/moreh/devices/back\slash`},
		{"/moreh/devices/two words", `"/moreh/devices/two\x20words"`},
		{"/moreh/devices/new\nline", `"/moreh/devices/new\nline"`},
		{"/moreh/devices/ret\rurn", `"/moreh/devices/ret\rurn"`},
		{"/moreh/devices/tab\there", `"/moreh/devices/tab\there"`},
		{`/moreh/devices/"quoted"`, `"/moreh/devices/\"quoted\""`},
		{"/moreh/devices/nul\x00", `"/moreh/devices/nul\x00"`},
		{"/moreh/devices/del\x7f", `"/moreh/devices/del\x7f"`},
		{"/moreh/devices/nbsp\u00a0x", `"/moreh/devices/nbsp\u00a0x"`},
		{"/moreh/devices/ls\u2028x", `"/moreh/devices/ls\u2028x"`},
		{"/moreh/devices/ 한 \n", `"/moreh/devices/\x20\ud55c\x20\n"`},
		{"", ""},
	}
	for _, c := range cases {
		l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0)
		l.Add("default", testCaller, "mkdir", c.path, errors.New("Unknown model."))
		got := string(l.Render("default"))
		want := "2026-01-01T00:00:00Z pid=42 uid=1000 mkdir " + c.want + ": Unknown model.\n"
		if got != want {
			t.Errorf("path %q: line %q, want %q", c.path, got, want)
		}
		checkLineShape(t, got, "mkdir", "Unknown model.")
		if c.want != c.path {
			// A quoted path reads back as the original.
			if back, err := strconv.Unquote(strings.ReplaceAll(c.want, `\x20`, " ")); err != nil || back != c.path {
				t.Errorf("path %q: %s unquotes to %q, %v", c.path, c.want, back, err)
			}
		}
	}
}

// TestErrorLogFlattensMessage: a message spanning lines becomes one line.
func TestErrorLogFlattensMessage(t *testing.T) {
	l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	l.Add("default", testCaller, "write", "/moreh/current", errors.New("first\nsecond\n\nthird\n"))
	want := "2026-01-01T00:00:00Z pid=42 uid=1000 write /moreh/current: first second  third \n"
	if got := string(l.Render("default")); got != want {
		t.Fatalf("line %q, want %q", got, want)
	}
}

// TestErrorLogNoControlBytesInMessage: a carriage return in a message would
// let an errors file reader (a terminal, `cat errors`) overwrite the line;
// the message is one line of text with no control byte.
func TestErrorLogNoControlBytesInMessage(t *testing.T) {
	l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	l.Add("default", testCaller, "write", "/moreh/current", errors.New("a\r\nb\rc"))
	got := string(l.Render("default"))
	checkLineShape(t, got, "write", "")
	if strings.ContainsRune(strings.TrimSuffix(got, "\n"), '\r') {
		t.Fatalf("line holds a raw carriage return: %q", got)
	}
}

// TestErrorLogConcurrent: concurrent adds and renders lose no line and mix
// no lines (run with -race).
func TestErrorLogConcurrent(t *testing.T) {
	l := NewErrorLog()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			token := "t" + strconv.Itoa(g%2)
			for i := 0; i < 50; i++ {
				l.Add(token, testCaller, "op", "/p", fmt.Errorf("g%d i%d", g, i))
				for _, line := range splitLines(t, l.Render(token)) {
					checkLineShape(t, line+"\n", "op", "")
				}
			}
		}(g)
	}
	wg.Wait()
	for _, token := range []string{"t0", "t1"} {
		if n := len(splitLines(t, l.Render(token))); n != 32 {
			t.Fatalf("%s holds %d lines, want 32", token, n)
		}
	}
}

// splitLines splits a rendered log into lines, checking it ends in a newline.
func splitLines(t *testing.T, b []byte) []string {
	t.Helper()
	s := string(b)
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("log does not end in a newline: %q", s)
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// checkLineShape checks one rendered line: one trailing newline, an RFC3339
// time, the caller, the op, and a path with no raw space or newline followed by ": ";
// msg, when not empty, is the rest.
func checkLineShape(t *testing.T, line, op, msg string) {
	t.Helper()
	body, ok := strings.CutSuffix(line, "\n")
	if !ok || strings.Contains(body, "\n") {
		t.Errorf("line %q is not exactly one line", line)
		return
	}
	parts := strings.SplitN(body, " ", 6)
	if len(parts) != 6 {
		t.Errorf("line %q has fewer than six space-separated fields", line)
		return
	}
	if parts[1] != "pid=42" || parts[2] != "uid=1000" {
		t.Errorf("line %q: caller %q %q, want pid=42 uid=1000", line, parts[1], parts[2])
	}
	parts = append(parts[:1], parts[3:]...)
	if _, err := time.Parse(time.RFC3339, parts[0]); err != nil {
		t.Errorf("line %q: time %q: %v", line, parts[0], err)
	}
	if parts[1] != op {
		t.Errorf("line %q: op %q, want %q", line, parts[1], op)
	}
	path, ok := strings.CutSuffix(parts[2], ":")
	if !ok {
		t.Errorf("line %q: path field %q does not end in ':'", line, parts[2])
	}
	if strings.ContainsAny(path, " \n\r\t") {
		t.Errorf("line %q: path %q holds a raw blank", line, path)
	}
	if msg != "" && parts[3] != msg {
		t.Errorf("line %q: message %q, want %q", line, parts[3], msg)
	}
	if !utf8.ValidString(body) {
		t.Errorf("line %q is not valid UTF-8", line)
	}
}

// TestErrorLogInvalidUTF8Path: FUSE names are any bytes; mkdir of a name
// that is not UTF-8 must not put invalid UTF-8 into the errors file (a
// Python client's open(...).read() would raise on it), so such a path is
// quoted like any other odd path.
func TestErrorLogInvalidUTF8Path(t *testing.T) {
	l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	l.Add("default", testCaller, "mkdir", "/moreh/devices/bad\xff", errors.New("Unknown model."))
	got := string(l.Render("default"))
	want := "2026-01-01T00:00:00Z pid=42 uid=1000 mkdir \"/moreh/devices/bad\\xff\": Unknown model.\n"
	if got != want {
		t.Fatalf("line %q, want %q", got, want)
	}
}

// TestErrorLogNamesTheCaller: each line names the pid and uid it was added
// for; an unknown caller is pid=0 uid=0, so every line has the same fields.
func TestErrorLogNamesTheCaller(t *testing.T) {
	l := testErrorLog(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	l.Add("team", Caller{PID: 123, UID: 4001}, "mkdir", "tokens/team/devices/A", errors.New("a"))
	l.Add("team", Caller{PID: 4294967295, UID: 4002}, "write", "tokens/team/current", errors.New("b"))
	l.Add("team", Caller{}, "rmdir", "tokens/team/devices/2026", errors.New("c"))
	want := "2026-01-01T00:00:00Z pid=123 uid=4001 mkdir tokens/team/devices/A: a\n" +
		"2026-01-01T00:00:00Z pid=4294967295 uid=4002 write tokens/team/current: b\n" +
		"2026-01-01T00:00:00Z pid=0 uid=0 rmdir tokens/team/devices/2026: c\n"
	if got := string(l.Render("team")); got != want {
		t.Fatalf("Render =\n%q\nwant\n%q", got, want)
	}
}
