package store

import "testing"

// admitRow is one request on a token's node and the kind it gets.
type admitRow struct {
	name   string
	uid    int
	token  string
	number uint64
	want   Kind // KindIO: admitted
}

// TestAdmit: the rule of every request on a token's nodes, row by row.
func TestAdmit(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{Key: []byte("a test key of thirty-two bytes!!")})
	def, err := reg.Token(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Admit(ctx, 1001, "default", def.Number); err != nil {
		t.Errorf("tokens off: uid 1001 refused the default token: %v", err)
	}
	alice, aliceSecret, err := reg.CreateToken(ctx, "alice", 5)
	if err != nil {
		t.Fatal(err)
	}
	bob, bobSecret, err := reg.CreateToken(ctx, "bob", 5)
	if err != nil {
		t.Fatal(err)
	}
	for uid, secret := range map[int]string{1001: aliceSecret, 1002: aliceSecret, 1003: bobSecret} {
		if _, err := reg.Bind(ctx, uid, secret); err != nil {
			t.Fatal(err)
		}
	}
	rows := []admitRow{
		{"root", 0, "alice", alice.Number, KindIO},
		{"alice's first user", 1001, "alice", alice.Number, KindIO},
		{"alice's second user", 1002, "alice", alice.Number, KindIO},
		{"bob's user", 1003, "alice", alice.Number, KindDenied},
		{"unbound", 1004, "alice", alice.Number, KindDenied},
		{"unbound in the default token", 1004, "default", def.Number, KindDenied},
		{"root in the default token", 0, "default", def.Number, KindIO},
		{"another token's number", 1001, "alice", bob.Number, KindStale},
		{"number not checked", 1001, "alice", 0, KindIO},
		{"no such token", 0, "carol", 7, KindStale},
	}
	check := func(step string) {
		for _, r := range rows {
			err := reg.Admit(ctx, r.uid, r.token, r.number)
			if got := KindOf(err); err == nil && r.want != KindIO || err != nil && got != r.want {
				t.Errorf("%s: %s: Admit(%d, %s, %d) = %v, want kind %d", step, r.name, r.uid, r.token, r.number, err, r.want)
			}
		}
	}
	check("bound")
	// alice revoked and created again: the old number is stale for
	// everyone, root included; the new one admits only its users.
	if _, err := reg.Bind(ctx, 1001, bobSecret); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Bind(ctx, 1002, bobSecret); err != nil {
		t.Fatal(err)
	}
	if err := reg.RevokeToken(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	again, _, err := reg.CreateToken(ctx, "alice", 5)
	if err != nil {
		t.Fatal(err)
	}
	rows = rows[:0]
	for _, uid := range []int{0, 1001, 1003} {
		rows = append(rows, admitRow{"old alice", uid, "alice", alice.Number, KindStale})
	}
	rows = append(rows, admitRow{"new alice, root", 0, "alice", again.Number, KindIO}, admitRow{"new alice, a former user", 1001, "alice", again.Number, KindDenied})
	check("revoked and created again")
	if err := reg.Live(ctx, "alice", alice.Number); KindOf(err) != KindStale {
		t.Errorf("Live(old alice) = %v, want KindStale", err)
	}
	if err := reg.Live(ctx, "alice", again.Number); err != nil {
		t.Errorf("Live(new alice) = %v", err)
	}
}
