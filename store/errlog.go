package store

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// errorLogSize is how many failed operations each token's errors file keeps.
const errorLogSize = 32

// ErrorLog keeps the last failed operations of each token in memory.
type ErrorLog struct {
	mu      sync.Mutex
	byToken map[string][]string
	now     func() time.Time
}

func NewErrorLog() *ErrorLog {
	return &ErrorLog{byToken: map[string][]string{}, now: time.Now}
}

// Caller is the process whose operation failed, as the kernel named it to
// the daemon: its pid (the thread group of the thread that made the system
// call) and uid. The zero Caller is an unknown one.
type Caller struct {
	PID, UID uint32
}

// Add records that op on path, made by caller, failed with err, as one line:
// "<RFC3339 time> pid=<pid> uid=<uid> <op> <path>: <message>". No field
// before the message holds a space (the path is quoted when it would), so a
// reader can split the line on its first five spaces, and a client shows
// the lines of its own pid only.
func (l *ErrorLog) Add(token string, caller Caller, op, path string, err error) {
	// One line, and nothing a terminal would act on: line breaks and tabs
	// become spaces, every other control character an escape (\x1b).
	msg := TermSafe(strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace(err.Error()))
	line := l.now().UTC().Format(time.RFC3339) + " pid=" + strconv.FormatUint(uint64(caller.PID), 10) +
		" uid=" + strconv.FormatUint(uint64(caller.UID), 10) + " " + op + " " + escapePath(path) + ": " + msg + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append(l.byToken[token], line)
	if len(lines) > errorLogSize {
		lines = lines[len(lines)-errorLogSize:]
	}
	l.byToken[token] = lines
}

// Forget drops token's lines (it was revoked).
func (l *ErrorLog) Forget(token string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byToken, token)
}

// Render returns the errors file of token.
func (l *ErrorLog) Render(token string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	for _, line := range l.byToken[token] {
		b.WriteString(line)
	}
	return b.Bytes()
}

// escapePath quotes a path that a user's mkdir made odd (spaces, control
// bytes, invalid UTF-8), so that it stays one space-free field.
func escapePath(p string) string {
	odd := func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f || !strconv.IsPrint(r) }
	if utf8.ValidString(p) && strings.IndexFunc(p, odd) < 0 {
		return p
	}
	return strings.ReplaceAll(strconv.QuoteToASCII(p), " ", `\x20`)
}
