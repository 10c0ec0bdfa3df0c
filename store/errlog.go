package store

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"time"
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

// Add records that op on path failed with err, as one line:
// "<RFC3339 time> <op> <path>: <message>". The path never holds a space, so
// a reader can split the line on its first three spaces.
func (l *ErrorLog) Add(token, op, path string, err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	line := l.now().UTC().Format(time.RFC3339) + " " + op + " " + escapePath(path) + ": " + msg + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append(l.byToken[token], line)
	if len(lines) > errorLogSize {
		lines = lines[len(lines)-errorLogSize:]
	}
	l.byToken[token] = lines
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

// escapePath quotes a path that a user's mkdir made odd (spaces, control bytes).
func escapePath(p string) string {
	for _, r := range p {
		if r <= ' ' || r == '"' || r == 0x7f || !strconv.IsPrint(r) {
			q := strconv.QuoteToASCII(p)
			return strings.ReplaceAll(q, " ", `\x20`)
		}
	}
	return p
}
