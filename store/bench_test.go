package store

// Benchmarks of the registry on bbolt, below FUSE: what one commit costs on
// this disk, whether concurrent creators share commits, and what the reads
// behind every file cost with 10,000 devices. The store is built in one
// transaction (the rules are not what is measured here), on the disk of the
// test's temporary directory, as /var/lib/moreh is. scripts/bench.sh runs
// them with the fs benchmarks.

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	benchTokens   = 1000
	benchPerToken = 10
	benchCreators = 16
)

// benchRegistry opens a registry over a new bbolt file holding tokens
// tokens (default, t0001…) of benchPerToken devices each, and creators
// more tokens without devices, named creator00….
func benchRegistry(b *testing.B, tokens, creators int) *Registry {
	ctx := b.Context()
	b.Helper()
	eng, err := OpenBolt(filepath.Join(b.TempDir(), "moreh.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	opts := Options{MaxDevices: benchPerToken, Key: []byte("a bench key of thirty-two bytes!")}
	reg, err := Open(ctx, eng, opts)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	err = eng.Update(ctx, func(tx Tx) error {
		names := []string{opts.DefaultToken}
		if names[0] == "" {
			names[0] = "default"
		}
		for i := 1; i < tokens; i++ {
			names = append(names, fmt.Sprintf("t%04d", i))
		}
		for i := range creators {
			names = append(names, fmt.Sprintf("creator%02d", i))
		}
		for i, name := range names {
			t, err := loadToken(tx, name)
			if err != nil { // a new token, with a secret as CreateToken gives it
				t = Token{Name: name, Number: must(nextTokenNumber(tx)), MaxDevices: benchPerToken, Nonce: []byte(fmt.Sprintf("nonce%011d", i))}
				if err := setSecretHash(tx, &t, hashSecret(deriveSecret(opts.Key, name, t.Nonce))); err != nil {
					return err
				}
			}
			for j := 0; j < benchPerToken && i < tokens; j++ {
				id := fromU64(tx.Get(bucketMeta, keyNextDeviceID))
				if err := tx.Put(bucketMeta, keyNextDeviceID, u64(id+1)); err != nil {
					return err
				}
				d := Device{ID: id, Token: name, Model: "Small.64GB", Created: now, Idle: now}
				if err := tx.Put(bucketTokenDevices, tokenDeviceKey(name, id), nil); err != nil {
					return err
				}
				if err := makeCurrent(tx, &t, &d); err != nil {
					return err
				}
			}
			if err := putJSON(tx, bucketTokens, []byte(name), t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := reg.RefreshTokens(ctx); err != nil {
		b.Fatal(err)
	}
	return reg
}

// BenchmarkStoreCommit is one bare bbolt commit of what a device creation
// writes: the device and token records, the index key and the next id.
func BenchmarkStoreCommit(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "commit.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	token, _ := json.Marshal(Token{Name: "creator00", Number: 1001, MaxDevices: benchPerToken, Current: 12026, UseCount: 7,
		SecretHash: make([]byte, 32), Nonce: make([]byte, 16)})
	b.ResetTimer()
	for i := range b.N {
		id := uint64(20000 + i)
		device, _ := json.Marshal(Device{ID: id, Token: "creator00", Model: "Small.64GB", Created: now, LastUsed: 7, Idle: now})
		err := db.Update(func(tx *bolt.Tx) error {
			return errors.Join(
				tx.Bucket(bucketDevices).Put(u64(id), device),
				tx.Bucket(bucketTokens).Put([]byte("creator00"), token),
				tx.Bucket(bucketTokenDevices).Put(tokenDeviceKey("creator00", id), nil),
				tx.Bucket(bucketMeta).Put(keyNextDeviceID, u64(id+1)),
			)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreCreate is CreateDevice + RemoveDevice (two transactions) by
// one creator and by 16 concurrent ones, each on a token of its own, in a
// store of 10,000 devices. ns/op is wall time per lifecycle: 16 creators
// that share commits divide it.
func BenchmarkStoreCreate(b *testing.B) {
	ctx := b.Context()
	for _, creators := range []int{1, benchCreators} {
		b.Run(strconv.Itoa(creators), func(b *testing.B) {
			reg := benchRegistry(b, benchTokens, benchCreators)
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, creators)
			b.ResetTimer()
			for c := range creators {
				wg.Add(1)
				go func() {
					defer wg.Done()
					token := fmt.Sprintf("creator%02d", c)
					for next.Add(1) <= int64(b.N) {
						d, err := reg.CreateDevice(ctx, token, "Small.64GB")
						if err == nil {
							err = reg.RemoveDevice(ctx, token, d.ID)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkStoreRead is what the reads of the tree ask the store, in a
// store of 10,000 devices over 1,000 tokens: a token's view (current,
// limit, status, and each lookup of tokens/<name>), the token record alone,
// one device (usage, lookups) and the caller's token (every lookup and
// getattr, once tokens have secrets).
func BenchmarkStoreRead(b *testing.B) {
	ctx := b.Context()
	reg := benchRegistry(b, benchTokens, 0)
	const id = 2026 + benchPerToken - 1 // the default token's last device
	b.Run("view", func(b *testing.B) {
		for range b.N {
			if v, err := reg.View(ctx, "default"); err != nil || len(v.Devices) != benchPerToken {
				b.Fatal(len(v.Devices), err)
			}
		}
	})
	// What tokens/<name> lookups need (the token's number), read alone: no
	// Registry method does that yet; tokensDir.Lookup reads the whole view.
	b.Run("token", func(b *testing.B) {
		for range b.N {
			err := reg.eng.View(ctx, func(tx Tx) error {
				_, err := loadToken(tx, "default")
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("device", func(b *testing.B) {
		for range b.N {
			if _, err := reg.Device(ctx, "default", id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("caller", func(b *testing.B) {
		for range b.N {
			if _, err := reg.CallerToken(ctx, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// must is a benchmark fixture's shortcut: the setup cannot fail quietly.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
