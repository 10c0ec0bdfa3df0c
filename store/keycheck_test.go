package store

import (
	"errors"
	"testing"
)

// TestTokenKeyCheck: with tokens, Open refuses a key other than the one
// their secrets derive from, and a key made just now; RotateKey gives every
// token a secret of a new key, which Open then takes.
func TestTokenKeyCheck(t *testing.T) {
	ctx := t.Context()
	keyA := []byte("key A of thirty-two bytes, or so")
	keyB := []byte("key B of thirty-two bytes, or so")
	path := t.TempDir() + "/state.db"
	eng, err := openTestEngine(path)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	// No token yet: any key is taken (and stamped).
	if _, err := Open(ctx, eng, Options{Key: keyB, KeyNew: true}); err != nil {
		t.Fatalf("a fresh store refused a new key: %v", err)
	}
	reg, err := Open(ctx, eng, Options{Key: keyA, KeyNew: true})
	if err != nil {
		t.Fatalf("a store without tokens refused a new key: %v", err)
	}
	_, old, err := reg.CreateToken(ctx, "alice", 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		opts   Options
		refuse bool
	}{
		{Options{Key: keyB}, true},                // a foreign key
		{Options{Key: keyB, KeyNew: true}, true},  // a key made anew
		{Options{Key: keyA, KeyNew: true}, false}, // the stamped check vouches for it
		{Options{Key: keyA}, false},
	} {
		if _, err := Open(ctx, eng, c.opts); errors.Is(err, ErrTokenKey) != c.refuse || !c.refuse && err != nil {
			t.Errorf("Open with key %.5q new=%v = %v, want refused %v", c.opts.Key, c.opts.KeyNew, err, c.refuse)
		}
	}
	rotated, err := RotateKey(ctx, eng, keyB)
	if err != nil || len(rotated) != 1 || rotated[0].Token != "alice" || rotated[0].Secret == old {
		t.Fatalf("RotateKey = %v, %v", rotated, err)
	}
	if _, err := Open(ctx, eng, Options{Key: keyA}); !errors.Is(err, ErrTokenKey) {
		t.Errorf("the old key after the rotation: %v, want ErrTokenKey", err)
	}
	reg, err = Open(ctx, eng, Options{Key: keyB})
	if err != nil {
		t.Fatalf("the new key after the rotation: %v", err)
	}
	if s, _ := reg.TokenSecret(ctx, "alice"); s != rotated[0].Secret {
		t.Errorf("TokenSecret = %q, want the rotated %q", s, rotated[0].Secret)
	}
	if _, err := reg.Bind(ctx, 0, old); KindOf(err) != KindKeyRejected { // root: not throttled
		t.Errorf("the old secret binds after the rotation: %v", err)
	}
	if _, err := reg.Bind(ctx, 1001, rotated[0].Secret); err != nil {
		t.Errorf("the rotated secret: %v", err)
	}
}
