package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
)

// The store keeps a check value of the token key (HMAC(key, "moreh key
// check"), under keyTokenKeyCheck) so that a daemon started with another
// key, or with a key made anew because the old one was lost, refuses to
// serve tokens whose secrets it would reject, rather than lock their users
// out in silence.

// ErrTokenKey is Open's failure when tokens with secrets exist and the
// loaded key is not the one their secrets derive from (or the check cannot
// vouch for a key made just now). The daemon names the fix.
var ErrTokenKey = &Error{Kind: KindIO, Msg: "The token key is not the one the tokens' secrets derive from."}

func keyCheck(key []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("moreh key check"))
	return mac.Sum(nil)
}

// checkTokenKey refuses a key that does not match the stored check while
// tokens with secrets exist, and otherwise stamps the check of opts.Key.
func checkTokenKey(tx Tx, opts Options) error {
	if len(opts.Key) == 0 {
		return nil
	}
	want := keyCheck(opts.Key)
	stored := tx.Get(bucketMeta, keyTokenKeyCheck)
	if hmac.Equal(stored, want) {
		return nil
	}
	secrets := false
	err := tx.ForEachPrefix(bucketTokens, nil, func(k, v []byte) error {
		var t Token
		if err := decodeJSON(bucketTokens, k, v, &t); err != nil {
			return err
		}
		secrets = secrets || len(t.Nonce) > 0
		return nil
	})
	if err != nil {
		return err
	}
	// A store from before the check is trusted with a key it already had.
	if secrets && (stored != nil || opts.KeyNew) {
		return ErrTokenKey
	}
	return tx.Put(bucketMeta, keyTokenKeyCheck, want)
}

// RotatedSecret is one token's new secret after RotateKey.
type RotatedSecret struct {
	Token  string
	Secret string
}

// RotateKey re-derives every token's secret from newKey with a fresh nonce,
// in one transaction, and stamps newKey's check: the old secrets stop
// binding, users already bound stay bound. It runs on the engine alone,
// while no daemon serves it, so that it also recovers a lost key.
func RotateKey(ctx context.Context, eng Engine, newKey []byte) ([]RotatedSecret, error) {
	if len(newKey) < 32 {
		return nil, errorf(KindInvalid, "A token key is at least 32 bytes.")
	}
	var out []RotatedSecret
	err := eng.Update(ctx, func(tx Tx) error {
		out = nil
		var tokens []Token
		err := tx.ForEachPrefix(bucketTokens, nil, func(k, v []byte) error {
			var t Token
			err := decodeJSON(bucketTokens, k, v, &t)
			if len(t.Nonce) > 0 {
				tokens = append(tokens, t)
			}
			return err
		})
		if err != nil {
			return err
		}
		for _, t := range tokens {
			t.Nonce = make([]byte, 16)
			if _, err := rand.Read(t.Nonce); err != nil {
				return err
			}
			secret := deriveSecret(newKey, t.Name, t.Nonce)
			if err := setSecretHash(tx, &t, hashSecret(secret)); err != nil {
				return err
			}
			if err := putJSON(tx, bucketTokens, []byte(t.Name), t); err != nil {
				return err
			}
			out = append(out, RotatedSecret{Token: t.Name, Secret: secret})
		}
		return tx.Put(bucketMeta, keyTokenKeyCheck, keyCheck(newKey))
	})
	if err != nil {
		return nil, ioError(fmt.Errorf("rotate the token key: %w", err))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Token < out[j].Token })
	return out, nil
}

// PoolNodes names the nodes whose GPUs are in the pool: on etcd, the daemons
// alive now (their GPUs leave with their lease), which RotateKey must not
// run under.
func PoolNodes(ctx context.Context, eng Engine) ([]string, error) {
	var nodes []string
	err := eng.View(ctx, func(tx Tx) error {
		return tx.ForEachPrefix(bucketGPUs, nil, func(k, v []byte) error {
			var g PoolGPU
			if err := decodeJSON(bucketGPUs, k, v, &g); err != nil {
				return err
			}
			if !slices.Contains(nodes, g.Node) {
				nodes = append(nodes, g.Node)
			}
			return nil
		})
	})
	sort.Strings(nodes)
	return nodes, ioError(err)
}
