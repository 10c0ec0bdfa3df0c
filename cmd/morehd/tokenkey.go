package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// rotateKey is "morehd token rotate-key": with the daemon stopped, it makes
// a new token.key beside db and re-derives every token's secret from it
// (users already bound stay bound; the old secrets stop binding), and
// prints each token's new secret.
func rotateKey(db string, stdout, stderr io.Writer) error {
	if _, err := os.Stat(db); err != nil {
		return fmt.Errorf("the state file %s: %v (give --db the daemon's state file)", db, pathCause(err))
	}
	eng, err := store.OpenBolt(db, time.Second)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || err.Error() == "timeout" {
			return fmt.Errorf("the state file %s is in use by a running morehd: stop it first (rotate-key rewrites every secret while no daemon serves them)", db)
		}
		return fmt.Errorf("open the state file %s: %w", db, err)
	}
	defer eng.Close()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	keyPath := filepath.Join(filepath.Dir(db), "token.key")
	tmp := keyPath + ".new"
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return fmt.Errorf("write the new token key: %w", err)
	}
	rotated, err := store.RotateKey(context.Background(), eng, key)
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
	return nil
}
