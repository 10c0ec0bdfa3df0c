package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestParseCommand: one write is one command of at most 4096 bytes of UTF-8
// on one line, one trailing newline ignored; anything else is KindInvalid.
func TestParseCommand(t *testing.T) {
	ok := []struct {
		in   []byte
		want string
	}{
		{[]byte("2026"), "2026"},
		{[]byte("2026\n"), "2026"},
		{[]byte("Large.256GB\n"), "Large.256GB"},
		{[]byte(" 2026 \n"), " 2026 "}, // spaces are the store's to judge
		{[]byte("큰모델\n"), "큰모델"},
		{[]byte("a\tb"), "a\tb"},
		{bytes.Repeat([]byte("x"), 4096), strings.Repeat("x", 4096)},
		{append(bytes.Repeat([]byte("x"), 4095), '\n'), strings.Repeat("x", 4095)},
		{[]byte("x"), "x"},
	}
	for _, c := range ok {
		got, err := ParseCommand(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseCommand(%.40q) = %.40q, %v; want %.40q", c.in, got, err, c.want)
		}
	}

	bad := []struct {
		in  []byte
		msg string
	}{
		{nil, "The write is empty; write one value, e.g. echo 2026 > current."},
		{[]byte{}, "The write is empty; write one value, e.g. echo 2026 > current."},
		{[]byte("\n"), "The write is empty; write one value, e.g. echo 2026 > current."},
		{[]byte("\n\n"), "The write is not one line of text; write one value."},
		{[]byte("a\nb"), "The write is not one line of text; write one value."},
		{[]byte("a\nb\n"), "The write is not one line of text; write one value."},
		{[]byte("2026\r\n"), "The write is not one line of text; write one value."},
		{[]byte("2026\r"), "The write is not one line of text; write one value."},
		{[]byte("20\x0026"), "The write is not one line of text; write one value."},
		{[]byte("\x00"), "The write is not one line of text; write one value."},
		{[]byte("2026\xff"), "The write is not one line of text; write one value."},
		{[]byte("\xc3\x28\n"), "The write is not one line of text; write one value."},
		{[]byte("\xed\xa0\x80"), "The write is not one line of text; write one value."}, // UTF-16 surrogate
		{bytes.Repeat([]byte("x"), 4097), "The write is 4097 bytes; a command is at most 4096."},
		{append(bytes.Repeat([]byte("x"), 4096), '\n'), "The write is 4097 bytes; a command is at most 4096."},
		{bytes.Repeat([]byte("x"), 1<<20), "The write is 1048576 bytes; a command is at most 4096."},
	}
	for _, c := range bad {
		got, err := ParseCommand(c.in)
		if err == nil {
			t.Errorf("ParseCommand(%.40q) = %.40q, want an error", c.in, got)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindInvalid || KindOf(err) != KindInvalid {
			t.Errorf("ParseCommand(%.40q) error %T %v, want *Error of KindInvalid", c.in, err, err)
		}
		if got != "" || err.Error() != c.msg {
			t.Errorf("ParseCommand(%.40q) = %q, %q; want \"\", %q", c.in, got, err.Error(), c.msg)
		}
	}
}

// TestParseCommandLeavesInputAlone: the caller's buffer is not changed.
func TestParseCommandLeavesInputAlone(t *testing.T) {
	in := []byte("2026\n")
	got, err := ParseCommand(in)
	if err != nil || got != "2026" {
		t.Fatalf("ParseCommand = %q, %v", got, err)
	}
	in[0] = '9'
	if got != "2026" || string(in) != "9026\n" {
		t.Fatalf("result %q shares the input buffer, or input changed: %q", got, in)
	}
}

// FuzzParseCommand: never panics; a success is the whole write as valid,
// one-line UTF-8 of at most 4096 bytes, less one trailing newline; a
// failure is a *Error of KindInvalid.
func FuzzParseCommand(f *testing.F) {
	f.Add([]byte("2026\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ParseCommand(in)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindInvalid {
				t.Fatalf("ParseCommand(%q) error %T %v, want *Error of KindInvalid", in, err, err)
			}
			if got != "" {
				t.Fatalf("ParseCommand(%q) failed but returned %q", in, got)
			}
			if strings.ContainsAny(e.Msg, "\n\r") {
				t.Fatalf("ParseCommand(%q) message spans lines: %q", in, e.Msg)
			}
			return
		}
		if !utf8.ValidString(got) {
			t.Fatalf("ParseCommand(%q) = %q, not valid UTF-8", in, got)
		}
		if strings.ContainsAny(got, "\n\r\x00") {
			t.Fatalf("ParseCommand(%q) = %q holds a newline, carriage return or NUL", in, got)
		}
		if got == "" || len(got) > 4096 || len(in) > 4096 {
			t.Fatalf("ParseCommand(%q) = %q: length %d from a %d-byte write", in, got, len(got), len(in))
		}
		if string(in) != got && string(in) != got+"\n" {
			t.Fatalf("ParseCommand(%q) = %q, neither the input nor the input less one newline", in, got)
		}
	})
}

// TestParseIdleJobTimeout: the spellings an idle_job_timeout write takes,
// and how each shows again.
func TestParseIdleJobTimeout(t *testing.T) {
	for in, want := range map[string]string{"default": "default", "off": "off", "90s": "1m30s", "1h": "1h0m0s", "8784h": "8784h0m0s", "1.5m": "1m30s"} {
		d, err := ParseIdleJobTimeout(in)
		if err != nil || FormatIdleJobTimeout(d) != want {
			t.Errorf("ParseIdleJobTimeout(%q) = %v, %v; shows %q, want %q", in, d, err, FormatIdleJobTimeout(d), want)
		}
	}
	for _, in := range []string{"", "0", "0s", "-1s", "+1s", "30", "8785h", "OFF", "default\n", " 5m", ".5s5", "1e3s"} {
		if _, err := ParseIdleJobTimeout(in); KindOf(err) != KindInvalid {
			t.Errorf("ParseIdleJobTimeout(%q) = %v, want KindInvalid", in, err)
		}
	}
}

// FuzzParseIdleJobTimeout: never panics; what it accepts shows again as a
// spelling it accepts, of the same timeout.
func FuzzParseIdleJobTimeout(f *testing.F) {
	for _, s := range []string{"default", "off", "90s", "1h30m", "-1s", "1.5m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, err := ParseIdleJobTimeout(in)
		if err != nil {
			if KindOf(err) != KindInvalid {
				t.Fatalf("ParseIdleJobTimeout(%q) error %v, want KindInvalid", in, err)
			}
			return
		}
		again, err := ParseIdleJobTimeout(FormatIdleJobTimeout(d))
		if err != nil || again != d || d > maxIdleJobTimeout || (d <= 0 && d != 0 && d != IdleNever) {
			t.Fatalf("ParseIdleJobTimeout(%q) = %v shows as %q, which reads %v, %v", in, d, FormatIdleJobTimeout(d), again, err)
		}
	})
}
