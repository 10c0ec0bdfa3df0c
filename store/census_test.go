package store

import (
	"testing"
)

// TestCensus: root's census holds every token by name with its devices by
// id and their running jobs; a bound user's, its own token only; the pool
// only when asked. TokenNumbers names every token's number.
func TestCensus(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{MaxDevices: 3, Key: []byte("a test key of thirty-two bytes!!")})
	if _, err := reg.SetPool(ctx, []PoolGPU{{UUID: "GPU-0", Node: "local", Units: 1}, {UUID: "GPU-1", Node: "local", Index: 1, Units: 1}}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := reg.CreateToken(ctx, "alpha", 3)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.CreateDevice(ctx, "alpha", "Small.64GB")
	d1, _ := reg.CreateDevice(ctx, "default", "Large.256GB")
	d2, _ := reg.CreateDevice(ctx, "default", "Small.64GB")
	job, err := reg.Attach(ctx, "alpha", a.ID, Proc{PID: 4242, Start: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Bind(ctx, 1000, secret); err != nil {
		t.Fatal(err)
	}
	c, err := reg.Census(ctx, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tokens) != 2 || c.Tokens[0].Name != "alpha" || c.Tokens[0].Devices != 1 || c.Tokens[1].Name != "default" || c.Tokens[1].Devices != 2 {
		t.Fatalf("tokens = %+v", c.Tokens)
	}
	want := []struct {
		id, job uint64
		model   string
	}{{a.ID, job.ID, "Small.64GB"}, {d1.ID, 0, "Large.256GB"}, {d2.ID, 0, "Small.64GB"}}
	if len(c.Devices) != len(want) {
		t.Fatalf("devices = %+v", c.Devices)
	}
	for i, w := range want {
		if d := c.Devices[i]; d.ID != w.id || d.Job != w.job || d.Model().Name != w.model {
			t.Errorf("device %d = %+v (%s), want %+v", i, d, d.Model().Name, w)
		}
	}
	if j := c.Jobs[job.ID]; j.Device != a.ID || len(c.Jobs) != 1 || len(c.Pool) != 2 {
		t.Errorf("jobs %+v, pool %+v", c.Jobs, c.Pool)
	}
	own, err := reg.Census(ctx, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(own.Tokens) != 1 || own.Tokens[0].Name != "alpha" || len(own.Devices) != 1 || own.Pool != nil {
		t.Errorf("a bound user's census = %+v", own)
	}
	if _, err := reg.Census(ctx, 2000, false); KindOf(err) != KindUnbound {
		t.Errorf("an unbound user's census: %v, want KindUnbound", err)
	}
	numbers, err := reg.TokenNumbers(ctx)
	if err != nil || len(numbers) != 2 || numbers["alpha"] == 0 || numbers["default"] == 0 || numbers["alpha"] == numbers["default"] {
		t.Errorf("TokenNumbers = %v, %v", numbers, err)
	}
}
