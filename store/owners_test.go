package store

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestOwnerOf(t *testing.T) {
	for _, c := range []struct {
		name    string
		uids    []int
		enabled bool
		want    Owner
	}{
		{"tokens off", []int{1001}, false, Owner{Uniform: true, Everyone: true}},
		{"nobody bound", nil, true, Owner{Uniform: true}},
		{"root alone", []int{0}, true, Owner{Uniform: true}},
		{"one user", []int{1001}, true, Owner{UID: 1001, Uniform: true}},
		{"one user and root", []int{0, 1001}, true, Owner{UID: 1001, Uniform: true}},
		{"one user twice", []int{1001, 1001}, true, Owner{UID: 1001, Uniform: true}},
		{"two users", []int{1001, 1002}, true, Owner{}},
	} {
		if got := ownerOf(Token{UIDs: c.uids}, c.enabled); got != c.want {
			t.Errorf("%s: ownerOf(%v, %v) = %+v, want %+v", c.name, c.uids, c.enabled, got, c.want)
		}
	}
}

// ownerChanges collects what OnOwnerChange reports.
type ownerChanges struct {
	mu    sync.Mutex
	calls [][]string
}

func (c *ownerChanges) note(tokens []string) {
	c.mu.Lock()
	c.calls = append(c.calls, slices.Clone(tokens))
	c.mu.Unlock()
}

// take returns the calls so far and forgets them.
func (c *ownerChanges) take() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls = nil
	return calls
}

// TestOwnerChanges: each change that moves a token's owner reports exactly
// the tokens it moved, once, and TokenOwner answers the new owner.
func TestOwnerChanges(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{Key: []byte("a test key of thirty-two bytes!!")})
	var changes ownerChanges
	reg.OnOwnerChange(changes.note)
	want := func(step string, calls [][]string, owners map[string]Owner) {
		t.Helper()
		if got := changes.take(); !slices.EqualFunc(got, calls, slices.Equal) {
			t.Errorf("%s: changes %v, want %v", step, got, calls)
		}
		for name, o := range owners {
			if got, err := reg.TokenOwner(ctx, name); err != nil || sansNumber(got) != o {
				t.Errorf("%s: TokenOwner(%s) = %+v, %v; want %+v", step, name, got, err, o)
			}
		}
	}
	want("fresh", nil, map[string]Owner{"default": {Uniform: true, Everyone: true}})

	_, alice, err := reg.CreateToken(ctx, "alice", 5)
	if err != nil {
		t.Fatal(err)
	}
	// The first token turns tokens on: the default token changes too.
	want("first token", [][]string{{"alice", "default"}}, map[string]Owner{"alice": {Uniform: true}, "default": {Uniform: true}})
	_, bob, err := reg.CreateToken(ctx, "bob", 5)
	if err != nil {
		t.Fatal(err)
	}
	want("second token", [][]string{{"bob"}}, map[string]Owner{"bob": {Uniform: true}})

	mustBind := func(uid int, secret string) {
		t.Helper()
		if _, err := reg.Bind(ctx, uid, secret); err != nil {
			t.Fatal(err)
		}
	}
	mustBind(1001, alice)
	want("alice binds", [][]string{{"alice"}}, map[string]Owner{"alice": {UID: 1001, Uniform: true}})
	mustBind(1001, alice)
	want("alice binds again", nil, nil)
	mustBind(0, alice)
	want("root binds to alice", nil, map[string]Owner{"alice": {UID: 1001, Uniform: true}})
	mustBind(1002, bob)
	want("bob binds", [][]string{{"bob"}}, map[string]Owner{"bob": {UID: 1002, Uniform: true}})
	mustBind(1002, alice)
	want("bob joins alice", [][]string{{"alice", "bob"}}, map[string]Owner{"alice": {}, "bob": {Uniform: true}})

	if err := reg.RevokeToken(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	want("bob revoked", [][]string{{"bob"}}, nil)
	if _, err := reg.TokenOwner(ctx, "bob"); KindOf(err) != KindNotFound {
		t.Errorf("TokenOwner of a revoked token: %v, want KindNotFound", err)
	}
	// The last token with a secret: tokens are off again, for every token.
	if err := reg.RevokeToken(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	want("last token revoked", [][]string{{"alice", "default"}}, map[string]Owner{"default": {Uniform: true, Everyone: true}})
}

// TestOwnerChangesFromElsewhere: a change that another registry (another
// node, or morehd token) makes on the same store is reported by the next
// refresh, which WatchJobs runs on every tick.
func TestOwnerChangesFromElsewhere(t *testing.T) {
	ctx := t.Context()
	opts := Options{Key: []byte("a test key of thirty-two bytes!!")}
	reg, path := openTestRegistry(t, opts)
	_, secret, err := reg.CreateToken(ctx, "alice", 5)
	if err != nil {
		t.Fatal(err)
	}
	var changes ownerChanges
	reg.OnOwnerChange(changes.note)
	var other *Registry
	if etcdCluster != nil {
		other = openRegistryAt(t, path, opts) // a second node on the same keys
	} else {
		other = &Registry{eng: reg.eng, opts: reg.opts, Errors: NewErrorLog(), now: reg.now} // bbolt has one writer: share it
	}
	if _, err := other.Bind(ctx, 1001, secret); err != nil {
		t.Fatal(err)
	}
	if got := changes.take(); got != nil {
		t.Fatalf("changes before the refresh: %v", got)
	}
	if err := reg.RefreshTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if got := changes.take(); !slices.EqualFunc(got, [][]string{{"alice"}}, slices.Equal) {
		t.Errorf("changes after the refresh: %v, want [[alice]]", got)
	}
	if got, err := reg.TokenOwner(ctx, "alice"); err != nil || sansNumber(got) != (Owner{UID: 1001, Uniform: true}) {
		t.Errorf("TokenOwner(alice) = %+v, %v", got, err)
	}
}

// TestFollowOthers: on etcd, a token created and bound through another node
// reaches this registry through the engine's watch, with no refresh called:
// the hook fires and tokens become per-uid.
func TestFollowOthers(t *testing.T) {
	if etcdCluster == nil {
		t.Skip("etcd only: bbolt has one writer")
	}
	ctx := t.Context()
	opts := Options{Key: []byte("a test key of thirty-two bytes!!")}
	reg, path := openTestRegistry(t, opts)
	fired := make(chan []string, 16)
	reg.OnOwnerChange(func(tokens []string) { fired <- slices.Clone(tokens) })
	follow, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { reg.FollowOthers(follow); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	other := openRegistryAt(t, path, opts)
	_, secret, err := other.CreateToken(ctx, "alice", 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Bind(ctx, 1001, secret); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for sawAlice := false; ; {
		if got, err := reg.TokenOwner(ctx, "alice"); sawAlice && err == nil && sansNumber(got) == (Owner{UID: 1001, Uniform: true}) && reg.tokensEnabled() {
			break
		}
		select {
		case tokens := <-fired:
			sawAlice = sawAlice || slices.Contains(tokens, "alice")
		case <-deadline:
			got, err := reg.TokenOwner(ctx, "alice")
			t.Fatalf("the other node's bind never arrived: owner %+v, %v; tokens enabled %v", got, err, reg.tokensEnabled())
		}
	}
}

// sansNumber is o without the token's number, which these tests do not follow.
func sansNumber(o Owner) Owner {
	o.Number = 0
	return o
}
