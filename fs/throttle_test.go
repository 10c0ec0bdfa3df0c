package fs

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/gpu"
	"github.com/moreh-io/moreh/store"
)

// syncBuffer is a log destination that tests read while the tree writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(match string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, match) {
			out = append(out, l)
		}
	}
	return out
}

// TestGuessingIsThrottled: an unbound user writing 1000 wrong secrets to
// token gets EKEYREJECTED for each (all but a few refused unchecked, for a
// doubling delay: TestBindThrottle counts them), the log gets two lines (the first rejection and the
// window's sum), and the state does not change; the right secret binds once
// the delay has passed.
func TestGuessingIsThrottled(t *testing.T) {
	var logs syncBuffer
	probe, err := gpu.NewSim("sim:4x64GB")
	if err != nil {
		t.Fatal(err)
	}
	const window = 4 * time.Second
	tt := mountTreeConfig(t, store.Options{}, probe, func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
		c.RejectLogEvery = window
	})
	secret := newToken(t, tt, "alice")
	before := treeState(t, tt)
	start := time.Now()
	out := runAs(t, tt, eveUID, `for i in $(seq 1000); do echo "mrh_guess$i" > "$M/token"; done 2>&1 | sed 's/line [0-9]*: //' | sort | uniq -c`)
	took := time.Since(start)
	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\d+) .*write error: (.*)$`).FindAllStringSubmatch(out, -1) {
		n := 0
		for _, c := range m[1] {
			n = n*10 + int(c-'0')
		}
		counts[m[2]] = n
	}
	rejected := counts["Key was rejected by service"]
	if rejected != 1000 || len(counts) != 1 {
		t.Errorf("1000 guesses: %v; want 1000 EKEYREJECTED:\n%s", counts, out)
	}
	if after := treeState(t, tt); after != before {
		t.Errorf("guessing changed the state:\nbefore %s\nafter  %s", before, after)
	}
	morehdtest.Eventually(t, 2*window, "the window's sum in the log", func() bool {
		return len(logs.lines("rejected secrets from uid 1003")) > 0
	})
	lines := logs.lines("rejected")
	t.Logf("1000 guesses in %v (%.0f attempts/s): %d EKEYREJECTED; %d log lines in a %v window (the daemon's is a minute: at most 2 lines a minute per uid):\n%s",
		took.Round(time.Millisecond), 1000/took.Seconds(), rejected, len(lines), window, strings.Join(lines, "\n"))
	if len(lines) > 2 || took < window && len(lines) != 2 {
		t.Errorf("%d log lines for 1000 guesses, want 2 (the first and the sum)", len(lines))
	}
	if sum := logs.lines("999 rejected secrets from uid 1003 in the last " + window.String()); took < window && len(sum) != 1 {
		t.Errorf("the sum line does not count 999 more: %q", lines)
	}
	morehdtest.Eventually(t, 10*time.Second, "eve binds with the right secret once the delay has passed", func() bool {
		return runAs(t, tt, eveUID, `echo "`+secret+`" > "$M/token"`) == ""
	})
	if got := runAs(t, tt, eveUID, `readlink "$M/devices"`); got != "tokens/alice/devices\n" {
		t.Errorf("eve after binding: %q", got)
	}
}
