package store

import (
	"bytes"
	"strconv"
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

// ParseMaxDevices reads a device limit as written to max_devices: one
// spelling per number, as the file shows it.
func ParseMaxDevices(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return 0, errorf(KindInvalid, "%s is not a device limit: write a number such as 5.", quoteInput(s))
	}
	return n, validLimit(n)
}
