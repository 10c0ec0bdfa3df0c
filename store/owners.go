package store

import (
	"context"
	"slices"
	"sync"
)

// Owner is whom stat shows as the owner of a token's files. When Uniform it
// is the same for every caller, so the kernel may cache the attributes.
type Owner struct {
	UID      int    // the one user bound to the token; root when none is
	Uniform  bool   // false while several users share the token: each sees itself
	Everyone bool   // tokens are off: every local user shares this token
	Number   uint64 // the token's number: a token revoked and created again under its name is another
}

// ownerOf applies the rule: with tokens off every local user shares the
// default token (root owns it, its modes open to all); root is never counted
// as a user (the kernel lets it in anyway).
func ownerOf(t Token, enabled bool) Owner {
	if !enabled {
		return Owner{Uniform: true, Everyone: true, Number: t.Number}
	}
	var users []int
	for _, uid := range t.UIDs {
		if uid != 0 && !slices.Contains(users, uid) {
			users = append(users, uid)
		}
	}
	switch len(users) {
	case 0:
		return Owner{Uniform: true, Number: t.Number}
	case 1:
		return Owner{UID: users[0], Uniform: true, Number: t.Number}
	}
	return Owner{Number: t.Number}
}

// owners remembers every token's Owner, to tell the tree which changed.
type owners struct {
	mu     sync.Mutex
	byName map[string]Owner
	hook   func(tokens []string)
}

// TokenOwner is the owner of token's files, from memory (kept by every
// change made here and by WatchJobs for changes made elsewhere), else from
// the store.
func (r *Registry) TokenOwner(ctx context.Context, token string) (Owner, error) {
	r.owners.mu.Lock()
	o, ok := r.owners.byName[token]
	r.owners.mu.Unlock()
	if ok {
		return o, nil
	}
	var t Token
	err := r.eng.View(ctx, func(tx Tx) error {
		var err error
		t, err = loadToken(tx, token)
		return err
	})
	if err != nil {
		return Owner{}, ioError(err)
	}
	return ownerOf(t, r.tokensEnabled()), nil
}

// OnOwnerChange sets fn to be called with the tokens whose Owner changed
// (a bind, a revoke, the first or last token with a secret, or another
// node's change seen by WatchJobs), after the change commits and never
// under the registry's locks.
func (r *Registry) OnOwnerChange(fn func(tokens []string)) {
	r.owners.mu.Lock()
	r.owners.hook = fn
	r.owners.mu.Unlock()
}

// noteOwners records seen owners; complete says seen holds every token, so
// that the ones missing from it are gone. It calls the hook with the
// tokens that changed.
func (r *Registry) noteOwners(seen map[string]Owner, gone []string, complete bool) {
	var changed []string
	r.owners.mu.Lock()
	if r.owners.byName == nil {
		r.owners.byName = map[string]Owner{}
	}
	for name, o := range seen {
		if old, ok := r.owners.byName[name]; !ok || old != o {
			changed = append(changed, name)
			r.owners.byName[name] = o
		}
	}
	if complete {
		for name := range r.owners.byName {
			if _, ok := seen[name]; !ok {
				gone = append(gone, name)
			}
		}
	}
	for _, name := range gone {
		if _, ok := r.owners.byName[name]; ok {
			changed = append(changed, name)
			delete(r.owners.byName, name)
		}
	}
	hook := r.owners.hook
	r.owners.mu.Unlock()
	if hook != nil && len(changed) > 0 {
		slices.Sort(changed)
		hook(changed)
	}
}

// RefreshTokens reads every token: how many have a secret of their own
// (none: every caller shares the default token) and who owns each.
func (r *Registry) RefreshTokens(ctx context.Context) error {
	var owners []namedOwner // the rule needs the count first: keep what it reads, not whole tokens
	var secrets int64
	err := r.eng.View(ctx, func(tx Tx) error {
		owners, secrets = owners[:0], 0
		return tx.ForEachPrefix(bucketTokens, nil, func(k, v []byte) error {
			var t Token
			if err := decodeJSON(bucketTokens, k, v, &t); err != nil {
				return err
			}
			if len(t.Nonce) > 0 {
				secrets++
			}
			owners = append(owners, namedOwner{t.Name, ownerOf(t, true)})
			return nil
		})
	})
	if err != nil {
		return ioError(err)
	}
	r.secretTokens.Store(secrets)
	enabled := r.tokensEnabled()
	seen := make(map[string]Owner, len(owners))
	for _, o := range owners {
		if !enabled {
			o.owner = ownerOf(Token{Number: o.owner.Number}, false)
		}
		seen[o.name] = o.owner
	}
	r.noteOwners(seen, nil, true)
	return nil
}

// namedOwner is a token's owner while tokens are on.
type namedOwner struct {
	name  string
	owner Owner
}

// refreshOwners reads the named tokens after a change to them; a failure
// leaves the change for WatchJobs's next refreshTokens.
func (r *Registry) refreshOwners(ctx context.Context, names ...string) {
	seen := map[string]Owner{}
	var gone []string
	enabled := r.tokensEnabled()
	err := r.eng.View(ctx, func(tx Tx) error {
		for _, name := range names {
			if name == "" {
				continue
			}
			t, err := loadToken(tx, name)
			switch {
			case KindOf(err) == KindNotFound:
				gone = append(gone, name)
			case err != nil:
				return err
			default:
				seen[name] = ownerOf(t, enabled)
			}
		}
		return nil
	})
	if err == nil {
		r.noteOwners(seen, gone, false)
	}
}
