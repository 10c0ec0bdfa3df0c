package store

import "context"

// What a caller may learn of tokens other than its own: nothing. Root sees
// every token, and while tokens are off (or one shared secret serves every
// caller) everyone shares the default one; otherwise a caller sees only
// the token it is bound to: tokens/ lists only that one, another name
// (existing or not: no oracle) is KindDenied, and pool shows the GPUs bound
// to another token's jobs without their device ids.

// SeesToken reports whether uid may see token: its name, its users and
// its device ids.
func (r *Registry) SeesToken(ctx context.Context, uid int, token string) (bool, error) {
	if uid == 0 || !r.tokensEnabled() {
		return true, nil
	}
	own, err := r.CallerToken(ctx, uid)
	if KindOf(err) == KindUnbound {
		return false, nil
	}
	return err == nil && own == token, err
}

// LookupToken is the rule of a caller's lookup of tokens/<name>: nil when
// uid may see it (whether it exists is the caller's next question),
// KindDenied otherwise.
func (r *Registry) LookupToken(ctx context.Context, uid int, name string) error {
	ok, err := r.SeesToken(ctx, uid, name)
	if err != nil {
		return err
	}
	if !ok {
		return errorf(KindDenied, "Permission denied: tokens/ shows only your own token.")
	}
	return nil
}

// ListedTokens are the names uid's readdir of tokens/ shows: every token
// for root (and while tokens are off), else the caller's own, or none.
func (r *Registry) ListedTokens(ctx context.Context, uid int) ([]string, error) {
	if uid == 0 || !r.tokensEnabled() {
		all, err := r.Tokens(ctx)
		names := make([]string, len(all))
		for i, t := range all {
			names[i] = t.Name
		}
		return names, err
	}
	own, err := r.CallerToken(ctx, uid)
	switch {
	case KindOf(err) == KindUnbound:
		return nil, nil
	case err != nil:
		return nil, err
	}
	return []string{own}, nil
}

// Admit is the rule of every request on a node of token number (its
// directory, devices and files): KindStale once that token is revoked (a
// token created again under its name has another number and is another
// token), else nil for root, for every caller while tokens are off, and for
// the users bound to it; KindDenied for anyone else. The tree asks it on
// each request rather than leaning on the kernel's check of one owner,
// because a token may be shared by several users.
func (r *Registry) Admit(ctx context.Context, uid int, token string, number uint64) error {
	if err := r.Live(ctx, token, number); err != nil {
		return err
	}
	if uid == 0 || !r.tokensEnabled() {
		return nil
	}
	own, err := r.CallerToken(ctx, uid)
	switch {
	case KindOf(err) == KindUnbound || err == nil && own != token:
		return errorf(KindDenied, "Permission denied: token %s is not yours.", quoteInput(token))
	case err != nil:
		return err
	}
	return nil
}

// Live is Admit without the caller: KindStale once token number is revoked.
// An open file answers it on each read and write (whoever holds the file
// was admitted when it was opened, as the kernel's modes are checked).
func (r *Registry) Live(ctx context.Context, token string, number uint64) error {
	o, err := r.TokenOwner(ctx, token)
	switch {
	case KindOf(err) == KindNotFound || err == nil && number != 0 && o.Number != number:
		return errorf(KindStale, "Stale: token %s was revoked; this file belonged to it.", quoteInput(token))
	}
	return err
}
