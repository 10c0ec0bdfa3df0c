// Command moreh-fill fills a new state directory (moreh.db and token.key)
// with tokens and devices through the store's API, for the scale bench
// (scripts/bench.sh scale): a store of any size in seconds, with records
// exactly as the daemon writes them.
//
//	moreh-fill --dir DIR --tokens 20000 --devices 100000
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/moreh-io/moreh/store"
)

func main() {
	dir := pflag.String("dir", "", "the state directory to create (it must not hold a moreh.db)")
	tokens := pflag.Int("tokens", 100, "tokens, the default one included")
	devices := pflag.Int("devices", 1000, "devices, spread evenly over the tokens")
	limit := pflag.Int("limit", 0, "each token's device limit (0: its share of --devices plus 2, room for a mkdir)")
	model := pflag.String("model", "Small.64GB", "every device's model")
	workers := pflag.Int("workers", 64, "concurrent creators (they share commits)")
	pflag.Parse()
	if *dir == "" || *tokens < 1 || *devices < 0 || *workers < 1 {
		fmt.Fprintln(os.Stderr, "usage: moreh-fill --dir DIR [--tokens N] [--devices N] [--limit N] [--model NAME] [--workers N]")
		os.Exit(2)
	}
	start := time.Now()
	if err := fill(*dir, *tokens, *devices, *limit, *model, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "moreh-fill:", err)
		os.Exit(1)
	}
	fmt.Printf("%d devices over %d tokens in %s: %s\n", *devices, *tokens, *dir, time.Since(start).Round(time.Millisecond))
}

// tokenName is the name of the i-th token; the 0th is the default token.
func tokenName(i int) string {
	if i == 0 {
		return "default"
	}
	return fmt.Sprintf("t%05d", i)
}

func fill(dir string, tokens, devices, limit int, model string, workers int) error {
	ctx := context.Background()
	path := filepath.Join(dir, "moreh.db")
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists: fill only a new state directory", path)
	}
	share := (devices + tokens - 1) / tokens
	if limit == 0 {
		limit = share + 2
	}
	key, err := store.LoadKey(filepath.Join(dir, "token.key"))
	if err != nil {
		return err
	}
	eng, err := store.OpenBolt(path, time.Second)
	if err != nil {
		return err
	}
	defer eng.Close()
	reg, err := store.Open(ctx, eng, store.Options{MaxDevices: limit, Key: key})
	if err != nil {
		return err
	}
	// Workers take tokens in turn: each creates the token (but the default),
	// then its share of the devices.
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= tokens {
					return
				}
				name := tokenName(i)
				if i > 0 {
					if _, _, err := reg.CreateToken(ctx, name, limit); err != nil {
						errs <- err
						return
					}
				}
				n := devices / tokens
				if i < devices%tokens {
					n++
				}
				for range n {
					if _, err := reg.CreateDevice(ctx, name, model); err != nil {
						errs <- fmt.Errorf("token %s: %w", name, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return eng.Close()
}
