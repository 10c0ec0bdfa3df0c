package fs

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"github.com/moreh-io/moreh/store"
)

// TestRecentEntriesKeepTheLast: past its bound, the name looked up longest
// ago is dropped, each once; a name looked up again is recent again.
func TestRecentEntriesKeepTheLast(t *testing.T) {
	dropped := make(chan string, 10)
	r := newRecentEntries(3, func(name string) { dropped <- name })
	for _, name := range []string{"a", "b", "c", "a", "d", "a", "e", "d"} {
		r.touch(name)
	}
	var got []string
	for range 2 {
		select {
		case name := <-dropped:
			got = append(got, name)
		case <-time.After(10 * time.Second):
			t.Fatalf("dropped only %v", got)
		}
	}
	if !slices.Equal(got, []string{"b", "c"}) || r.held() != 3 {
		t.Errorf("dropped %v, holding %d; want b then c dropped and 3 held (a, d, e)", got, r.held())
	}
	select {
	case name := <-dropped:
		t.Errorf("%s dropped too", name)
	default:
	}
}

// TestKernelForgetsOldTokens: after a walk of more tokens than the kernel
// may keep, the daemon holds inodes for the recent ones only (the kernel
// forgot the rest), and a forgotten token works as before.
func TestKernelForgetsOldTokens(t *testing.T) {
	tt := mountTree(t, store.Options{})
	n := maxKernelTokens + 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() { // concurrent creators share commits
			defer wg.Done()
			if _, _, err := tt.reg.CreateToken(t.Context(), fmt.Sprintf("t%04d", i), 5); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := os.Stat(tt.path("tokens", fmt.Sprintf("t%04d", i), "devices")); err != nil {
			t.Fatal(err)
		}
	}
	morehdtest.Eventually(t, 10*time.Second, "the kernel forgets the tokens looked up longest ago", func() bool {
		return len(tt.tree.tokens.Children()) <= maxKernelTokens
	})
	if _, err := os.Stat(tt.path("tokens", "t0000", "devices")); err != nil {
		t.Errorf("a forgotten token: %v", err)
	}
}
