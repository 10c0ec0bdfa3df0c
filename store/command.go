package store

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxCommand is the largest command one write may carry.
const MaxCommand = 4096

// ParseCommand turns the bytes of one write into a command: at most
// MaxCommand bytes of UTF-8 text on one line, one trailing newline ignored.
func ParseCommand(data []byte) (string, error) {
	if len(data) > MaxCommand {
		return "", &Error{Kind: KindInvalid, Msg: "The write is " + strconv.Itoa(len(data)) + " bytes; a command is at most 4096."}
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	switch {
	case len(data) == 0:
		return "", &Error{Kind: KindInvalid, Msg: "The write is empty; write one value, e.g. echo 2026 > current."}
	case !utf8.Valid(data) || bytes.ContainsAny(data, "\x00\n\r"):
		return "", &Error{Kind: KindInvalid, Msg: "The write is not one line of text; write one value."}
	}
	return string(data), nil
}

// IdleNever is the idle-job timeout of a token whose jobs are never reset
// for idling, whatever --idle-job-timeout says.
const IdleNever time.Duration = -1

// maxIdleJobTimeout bounds an idle-job timeout: longer is "off".
const maxIdleJobTimeout = 366 * 24 * time.Hour

// ParseIdleJobTimeout reads a write to admin/tokens/<n>/idle_job_timeout:
// "default" (the daemon's --idle-job-timeout), "off", or a duration such
// as 30m (no sign, more than 0, at most 366 days).
func ParseIdleJobTimeout(s string) (time.Duration, error) {
	switch s {
	case "default":
		return 0, nil
	case "off":
		return IdleNever, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || s == "" || s[0] < '0' || s[0] > '9' || d <= 0 || d > maxIdleJobTimeout {
		return 0, errorf(KindInvalid, "%s is not an idle-job timeout: write default, off, or a duration such as 30m (at most 8784h).", quoteInput(s))
	}
	return d, nil
}

// FormatIdleJobTimeout is how idle_job_timeout shows d, as it is written.
func FormatIdleJobTimeout(d time.Duration) string {
	switch {
	case d == 0:
		return "default"
	case d < 0:
		return "off"
	}
	return d.String()
}

// ParseMaxDevices reads a device limit as written to max_devices: one
// spelling per number, as the file shows it.
func ParseMaxDevices(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return 0, errorf(KindInvalid, "%s is not a device limit: write a number such as 5.", quoteInput(s))
	}
	return n, validLimit(n)
}
