package fs

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/moreh-io/moreh/store"
)

// ParseCommand turns the bytes of one write into a command: at most
// maxWrite bytes of UTF-8 text on one line, one trailing newline ignored.
func ParseCommand(data []byte) (string, error) {
	if len(data) > maxWrite {
		return "", &store.Error{Kind: store.KindInvalid, Msg: "The write is " + strconv.Itoa(len(data)) + " bytes; a command is at most 4096."}
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	switch {
	case len(data) == 0:
		return "", &store.Error{Kind: store.KindInvalid, Msg: "The write is empty; write one value, e.g. echo 2026 > current."}
	case !utf8.Valid(data) || bytes.ContainsAny(data, "\x00\n\r"):
		return "", &store.Error{Kind: store.KindInvalid, Msg: "The write is not one line of text; write one value."}
	}
	return string(data), nil
}
