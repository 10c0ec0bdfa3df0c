package store

import (
	"context"
	"crypto/rand"
	"slices"
	"time"
)

// MaxTokenNameLen bounds token names, which become directory names.
const MaxTokenNameLen = 32

// validTokenName accepts 1–32 of [a-z0-9._-], starting with a letter or
// digit, so a name can never escape its directory.
func validTokenName(name string) error {
	ok := len(name) >= 1 && len(name) <= MaxTokenNameLen
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		ok = alnum || i > 0 && (c == '.' || c == '_' || c == '-')
	}
	if !ok {
		return errorf(KindInvalid, "%s is not a token name: use 1-%d of a-z, 0-9, '.', '_', '-', starting with a letter or digit.", quoteInput(name), MaxTokenNameLen)
	}
	return nil
}

// CreateToken adds a token with a device limit and returns its secret.
func (r *Registry) CreateToken(ctx context.Context, name string, maxDevices int) (Token, string, error) {
	if err := validTokenName(name); err != nil {
		return Token{}, "", err
	}
	if err := validLimit(maxDevices); err != nil {
		return Token{}, "", err
	}
	if len(r.opts.Key) == 0 {
		return Token{}, "", errorf(KindIO, "No token key is loaded: tokens cannot be created.")
	}
	var t Token
	var secret string
	err := r.eng.Update(ctx, func(tx Tx) error {
		if tx.Get(bucketTokens, []byte(name)) != nil {
			return errorf(KindExists, "Token %s already exists.", quoteInput(name))
		}
		number, err := nextTokenNumber(tx)
		if err != nil {
			return err
		}
		t = Token{Name: name, Number: number, MaxDevices: maxDevices, Nonce: make([]byte, 16)}
		if _, err := rand.Read(t.Nonce); err != nil {
			return err
		}
		secret = deriveSecret(r.opts.Key, name, t.Nonce)
		if err := setSecretHash(tx, &t, hashSecret(secret)); err != nil {
			return err
		}
		return putJSON(tx, bucketTokens, []byte(name), t)
	})
	if err != nil {
		return Token{}, "", ioError(err)
	}
	// The token exists now: a failure to read it back is only retried by WatchJobs.
	if r.secretTokens.Add(1) == 1 {
		r.RefreshTokens(ctx) // the first token with a secret: every token's owner changes
	} else {
		r.refreshOwners(ctx, name)
	}
	return t, secret, nil
}

func setSecretHash(tx Tx, t *Token, hash []byte) error {
	if len(t.SecretHash) > 0 {
		if err := tx.Delete(bucketSecrets, t.SecretHash); err != nil {
			return err
		}
	}
	t.SecretHash = hash
	return tx.Put(bucketSecrets, hash, []byte(t.Name))
}

// TokenSecret shows a token's secret again (to root).
func (r *Registry) TokenSecret(ctx context.Context, name string) (string, error) {
	var t Token
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		t, err = loadToken(tx, name)
		return err
	})
	if err != nil {
		return "", ioError(err)
	}
	if len(t.Nonce) == 0 || len(r.opts.Key) == 0 {
		return "", errorf(KindNotFound, "Token %s has no secret that this node can show.", quoteInput(name))
	}
	return deriveSecret(r.opts.Key, name, t.Nonce), nil
}

// RevokeToken deletes a token and its users' bindings. A token that still
// holds devices is KindBusy; the default token cannot be revoked.
func (r *Registry) RevokeToken(ctx context.Context, name string) error {
	if name == r.opts.DefaultToken {
		return errorf(KindInvalid, "The default token cannot be revoked.")
	}
	err := r.eng.Update(ctx, func(tx Tx) error {
		v, err := loadView(tx, name)
		if err != nil {
			return err
		}
		if n := len(v.Devices); n > 0 {
			return errorf(KindBusy, "Token %s still has %d devices: remove them first.", name, n)
		}
		for _, uid := range v.Token.UIDs {
			if err := tx.Delete(bucketUIDs, u64(uint64(uid))); err != nil {
				return err
			}
		}
		if err := tx.Delete(bucketSecrets, v.Token.SecretHash); err != nil {
			return err
		}
		return tx.Delete(bucketTokens, []byte(name))
	})
	if err != nil {
		return ioError(err)
	}
	r.Errors.Forget(name) // a token created again under the name starts with none of these
	if r.secretTokens.Add(-1) <= 0 {
		r.RefreshTokens(ctx) // the last one: every caller shares the default token again
	} else {
		r.refreshOwners(ctx, name)
	}
	return nil
}

// SetMaxDevices changes a token's device limit; devices above it are kept.
func (r *Registry) SetMaxDevices(ctx context.Context, name string, n int) error {
	if err := validLimit(n); err != nil {
		return err
	}
	return r.updateToken(ctx, name, func(t *Token) { t.MaxDevices = n })
}

// SetIdleJobTimeout sets the token's override of --idle-job-timeout (0:
// the daemon's; IdleNever: off).
func (r *Registry) SetIdleJobTimeout(ctx context.Context, name string, d time.Duration) error {
	return r.updateToken(ctx, name, func(t *Token) { t.IdleJobTimeout = d })
}

// IdleJobTimeouts returns the overrides of --idle-job-timeout that the named
// tokens set (tokens without one, or gone, are left out).
func (r *Registry) IdleJobTimeouts(ctx context.Context, names []string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	err := r.eng.View(ctx, func(tx Tx) error {
		for _, name := range names {
			var t Token
			found, err := getJSON(tx, bucketTokens, []byte(name), &t)
			if err != nil {
				return err
			}
			if found && t.IdleJobTimeout != 0 {
				out[name] = t.IdleJobTimeout
			}
		}
		return nil
	})
	return out, ioError(err)
}

func validLimit(n int) error {
	if n < 1 || n > 1_000_000 {
		return errorf(KindInvalid, "A device limit is a number from 1 to 1000000, not %d.", n)
	}
	return nil
}

// Bind binds uid to the token whose secret is given. The secret is never
// repeated in an error.
//
// Attempts are throttled per uid (throttle.go): after a rejected secret,
// the uid's attempts are refused unchecked (KindKeyRejected, as a wrong
// secret: the errno tells nothing of the throttle) for a delay that
// doubles with each further rejection. A rejected secret is found in a read
// transaction: guessing never writes to the store.
func (r *Registry) Bind(ctx context.Context, uid int, secret string) (string, error) {
	if ok, wait := r.binds.admit(uid, r.now()); !ok {
		return "", errorf(KindKeyRejected, "The token was not checked: too many were rejected from your user; try again in %v.", wait.Round(time.Millisecond))
	}
	hash := hashSecret(secret)
	known := func(tx Tx) (Token, error) {
		name := string(tx.Get(bucketSecrets, hash))
		t, err := loadToken(tx, name)
		if name == "" || err != nil || !sameHash(t.SecretHash, hash) {
			return t, errorf(KindKeyRejected, "The token was rejected: it is unknown or revoked.")
		}
		return t, nil
	}
	err := r.eng.View(ctx, func(tx Tx) error {
		_, err := known(tx)
		return err
	})
	if KindOf(err) == KindKeyRejected {
		r.binds.rejected(uid, r.now())
	}
	if err != nil {
		return "", ioError(err)
	}
	r.binds.bound(uid)
	var name, old string
	err = r.eng.Update(ctx, func(tx Tx) error {
		t, err := known(tx) // again: a revoke may have come in between
		if err != nil {
			return err
		}
		name = t.Name
		if r.opts.SharedSecret != "" {
			return nil // every caller is bound to the shared token already
		}
		if old = string(tx.Get(bucketUIDs, u64(uint64(uid)))); old != "" && old != name {
			if prev, err := loadToken(tx, old); err == nil {
				prev.UIDs = slices.DeleteFunc(prev.UIDs, func(u int) bool { return u == uid })
				if err := putJSON(tx, bucketTokens, []byte(old), prev); err != nil {
					return err
				}
			}
		}
		if !slices.Contains(t.UIDs, uid) {
			t.UIDs = append(t.UIDs, uid)
		}
		if err := tx.Put(bucketUIDs, u64(uint64(uid)), []byte(name)); err != nil {
			return err
		}
		return putJSON(tx, bucketTokens, []byte(name), t)
	})
	if err != nil {
		return "", ioError(err)
	}
	r.refreshOwners(ctx, name, old)
	return name, nil
}

// CallerToken is the token of uid: the default token while no token has a
// secret (or with a shared secret); otherwise the uid's binding, root
// falling back to the default token.
func (r *Registry) CallerToken(ctx context.Context, uid int) (string, error) {
	if r.opts.SharedSecret != "" || r.secretTokens.Load() == 0 {
		return r.opts.DefaultToken, nil
	}
	var name string
	err := r.eng.View(ctx, func(tx Tx) error {
		name = string(tx.Get(bucketUIDs, u64(uint64(uid))))
		return nil
	})
	switch {
	case err != nil:
		return "", ioError(err)
	case name != "":
		return name, nil
	case uid == 0:
		return r.opts.DefaultToken, nil
	}
	return "", errorf(KindUnbound, "You are bound to no token: write yours to /moreh/token (the moreh-smi shims do so from MOREH_SDA_TOKEN, ~/.moreh/token or /etc/moreh/token).")
}

// tokensEnabled reports whether callers are bound per uid (tokens with
// secrets exist and no shared secret is set).
func (r *Registry) tokensEnabled() bool {
	return r.opts.SharedSecret == "" && r.secretTokens.Load() > 0
}

// VisibleTokens are the tokens whose figures uid may see: every token for
// root, else the caller's own.
func (r *Registry) VisibleTokens(ctx context.Context, uid int) ([]string, error) {
	if uid != 0 {
		own, err := r.CallerToken(ctx, uid)
		if err != nil {
			return nil, err
		}
		return []string{own}, nil
	}
	all, err := r.Tokens(ctx)
	names := make([]string, len(all))
	for i, t := range all {
		names[i] = t.Name
	}
	return names, err
}
