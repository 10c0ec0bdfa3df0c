package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moreh-io/moreh/store"
)

// tokenKeyError is the one line of a daemon that refuses to start because
// token.key is missing or is not the key the tokens' secrets derive from. A
// key it made just now is removed again, so that the next start says the
// same instead of trusting it.
func tokenKeyError(keyPath string, keyNew bool, db string) error {
	fix := fmt.Sprintf("restore the token.key the tokens were made with (from a backup, or from another node of the cluster), or run 'morehd token rotate-key --db %s' to give every token a new secret", db)
	if keyNew {
		os.Remove(keyPath)
		return fmt.Errorf("the token key %s is missing, and tokens exist whose secrets derive from it: %s", keyPath, fix)
	}
	return fmt.Errorf("the token key %s does not match the key the tokens' secrets derive from: %s", keyPath, fix)
}

// rotateKey is "morehd token rotate-key": with every daemon of the state
// stopped, it makes a new token.key beside --db and re-derives every token's
// secret from it (users already bound stay bound; the old secrets stop
// binding), and prints each token's new secret.
func rotateKey(cfg config, stdout, stderr io.Writer) error {
	ctx := context.Background()
	eng, err := openToRotate(ctx, cfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	keyPath := filepath.Join(filepath.Dir(cfg.db), "token.key")
	if cfg.store == "etcd" {
		nodes, err := store.PoolNodes(ctx, eng)
		if err != nil {
			return err
		}
		if len(nodes) > 0 {
			return fmt.Errorf("morehd serves this etcd pool on %s: stop every node first (rotate-key rewrites every secret while no daemon serves them)", strings.Join(nodes, ", "))
		}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	tmp := keyPath + ".new"
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return fmt.Errorf("write the new token key: %w", err)
	}
	rotated, err := store.RotateKey(ctx, eng, key)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, keyPath); err != nil {
		return fmt.Errorf("the secrets were rotated, but the new key stays in %s: move it to %s before starting morehd: %w", tmp, keyPath, err)
	}
	for _, r := range rotated {
		fmt.Fprintf(stdout, "%s %s\n", r.Token, r.Secret)
	}
	fmt.Fprintf(stderr, "morehd token rotate-key: %d secrets changed and %s is new; users already bound stay bound. Hand the secrets out (root reads them again at admin/tokens/<name>/secret once morehd runs).\n", len(rotated), keyPath)
	if cfg.store == "etcd" {
		fmt.Fprintf(stderr, "morehd token rotate-key: copy %s beside every node's --db before starting it: each node checks its key against the pool's.\n", keyPath)
	}
	return nil
}

// openToRotate opens the state that cfg names for rotate-key, which needs it
// to itself: a bbolt file no daemon holds, or an etcd pool.
func openToRotate(ctx context.Context, cfg config) (store.Engine, error) {
	if cfg.store == "etcd" {
		return openEngine(ctx, cfg)
	}
	if _, err := os.Stat(cfg.db); err != nil {
		return nil, fmt.Errorf("the state file %s: %v (give --db the daemon's state file)", cfg.db, pathCause(err))
	}
	eng, err := store.OpenBolt(cfg.db, time.Second)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || err.Error() == "timeout" {
			return nil, fmt.Errorf("the state file %s is in use by a running morehd: stop it first (rotate-key rewrites every secret while no daemon serves them)", cfg.db)
		}
		return nil, fmt.Errorf("open the state file %s: %w", cfg.db, err)
	}
	return eng, nil
}
