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
