package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const tok = "default"

// TestOpenDefaults: a fresh registry has the default token, limit 5, no
// device, no current device, and next id 2026.
func TestOpenDefaults(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	if reg.defaultToken() != "default" {
		t.Fatalf("DefaultToken() = %q, want default", reg.defaultToken())
	}
	v := mustView(t, reg, "default")
	want := Token{Name: "default", Number: 1, MaxDevices: 5}
	if !reflect.DeepEqual(v.Token, want) || len(v.Devices) != 0 {
		t.Fatalf("fresh view = %+v, want token %+v and no devices", v, want)
	}
	if _, ok := v.currentDevice(); ok {
		t.Fatalf("fresh token has a current device")
	}
	toks, err := reg.Tokens(ctx)
	if err != nil || len(toks) != 1 || !reflect.DeepEqual(toks[0], want) {
		t.Fatalf("Tokens() = %+v, %v; want [%+v]", toks, err, want)
	}
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	checkInvariants(t, reg)
}

// TestIDsStartAtFirstIDAndIncrease: ids are FirstID, FirstID+1, … in order
// of creation, whatever the model.
func TestIDsStartAtFirstIDAndIncrease(t *testing.T) {
	for _, first := range []uint64{0, 1, 2026, 7, 1 << 40} {
		t.Run(strconv.FormatUint(first, 10), func(t *testing.T) {
			reg, _ := openTestRegistry(t, Options{FirstID: first})
			start := first
			if start == 0 {
				start = 2026
			}
			for i, model := range []string{"Small.64GB", "large", "1.5xLarge.768GB", "24XLARGE", "medium"} {
				d := mustCreate(t, reg, tok, model, start+uint64(i))
				if d.Token != tok {
					t.Errorf("device %d token = %q", d.ID, d.Token)
				}
			}
			wantIDs(t, reg, tok, start, start+1, start+2, start+3, start+4)
			checkInvariants(t, reg)
		})
	}
}

// TestIDsNeverReused: a removed id is never handed out again, also after a
// reopen.
func TestIDsNeverReused(t *testing.T) {
	reg, path := openTestRegistry(t, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	mustCreate(t, reg, tok, "Small.64GB", 2027)
	mustRemove(t, reg, tok, 2027)
	mustCreate(t, reg, tok, "Small.64GB", 2028)
	mustRemove(t, reg, tok, 2028)
	mustRemove(t, reg, tok, 2026)
	wantIDs(t, reg, tok)

	reg = reopen(t, reg, path, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2029)
	wantIDs(t, reg, tok, 2029)
	checkInvariants(t, reg)
}

// TestFirstIDOnReopen: a higher FirstID on reopen jumps ahead; a lower one
// never goes back.
func TestFirstIDOnReopen(t *testing.T) {
	reg, path := openTestRegistry(t, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2026)

	reg = reopen(t, reg, path, Options{FirstID: 5000})
	mustCreate(t, reg, tok, "Small.64GB", 5000)

	reg = reopen(t, reg, path, Options{FirstID: 100})
	mustCreate(t, reg, tok, "Small.64GB", 5001)

	// Equal to the next id: nothing changes.
	reg = reopen(t, reg, path, Options{FirstID: 5002})
	mustCreate(t, reg, tok, "Small.64GB", 5002)

	// Default (0 → 2026) is below the next id: no step back either.
	reg = reopen(t, reg, path, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 5003)
	wantIDs(t, reg, tok, 2026, 5000, 5001, 5002, 5003)
	checkInvariants(t, reg)
}

// TestCreateMakesCurrent: each new device becomes current, with the
// canonical model name and a creation time from the registry's clock.
func TestCreateMakesCurrent(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("KST", 9*3600))
	reg.now = fixedClock(start, time.Minute)
	for i, model := range []string{"large", "SMALL.64GB", "1.5xlarge"} {
		id := uint64(2026 + i)
		d := mustCreate(t, reg, tok, model, id)
		wantCurrent(t, reg, tok, id)
		v := mustView(t, reg, tok)
		cur, ok := v.currentDevice()
		if !ok || cur.ID != id {
			t.Fatalf("currentDevice() = %+v %v, want %d", cur, ok, id)
		}
		if !reflect.DeepEqual(cur, d) {
			t.Fatalf("stored device %+v != returned %+v", cur, d)
		}
		wantCreated := start.Add(time.Duration(i) * time.Minute).UTC()
		if !d.Created.Equal(wantCreated) || d.Created.Location() != time.UTC {
			t.Fatalf("Created = %v, want %v in UTC", d.Created, wantCreated)
		}
		got, err := reg.Device(ctx, tok, id)
		if err != nil || !reflect.DeepEqual(got, d) {
			t.Fatalf("Device(%d) = %+v, %v; want %+v", id, got, err, d)
		}
	}
	v := mustView(t, reg, tok)
	models := []string{v.Devices[0].Model, v.Devices[1].Model, v.Devices[2].Model}
	if want := []string{"Large.256GB", "Small.64GB", "1.5xLarge.768GB"}; !reflect.DeepEqual(models, want) {
		t.Fatalf("models = %v, want %v", models, want)
	}
	if v.Token.UseCount != 3 {
		t.Fatalf("UseCount = %d, want 3", v.Token.UseCount)
	}
	checkInvariants(t, reg)
}

// TestCreateUnknownModel: an unknown model is KindInvalid and creates
// nothing, not even an id.
func TestCreateUnknownModel(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	before := mustView(t, reg, tok)
	_, err := reg.CreateDevice(ctx, tok, "Huge.1TB")
	wantErr(t, err, KindInvalid, `Unknown model "Huge.1TB": the models file lists them (e.g. Large.256GB).`)
	if after := mustView(t, reg, tok); !reflect.DeepEqual(before, after) {
		t.Fatalf("view changed: %+v → %+v", before, after)
	}
	mustCreate(t, reg, tok, "large", 2026)
	checkInvariants(t, reg)
}

// TestCreateUnknownToken: creating for a token that does not exist is
// KindNotFound and creates nothing.
func TestCreateUnknownToken(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	_, err := reg.CreateDevice(ctx, "nobody", "large")
	wantErr(t, err, KindNotFound, `Token "nobody" does not exist.`)
	_, err = reg.View(ctx, "nobody")
	wantErr(t, err, KindNotFound, `Token "nobody" does not exist.`)
	mustCreate(t, reg, tok, "large", 2026)
	checkInvariants(t, reg)
}

// TestLimit: MaxDevices creates succeed; the next fails with KindQuota and the
// exact message and changes nothing; after a remove the next create gets the
// next id, not one the refused create skipped.
func TestLimit(t *testing.T) {
	ctx := t.Context()
	for _, max := range []int{1, 3, 5} {
		t.Run(strconv.Itoa(max), func(t *testing.T) {
			reg, _ := openTestRegistry(t, Options{MaxDevices: max})
			for i := 0; i < max; i++ {
				mustCreate(t, reg, tok, "Small.64GB", 2026+uint64(i))
			}
			before := mustView(t, reg, tok)
			for i := 0; i < 3; i++ {
				_, err := reg.CreateDevice(ctx, tok, "Large.256GB")
				wantErr(t, err, KindQuota, fmt.Sprintf("Maximum number of devices (%d) reached.", max))
			}
			if after := mustView(t, reg, tok); !reflect.DeepEqual(before, after) {
				t.Fatalf("refused create changed the view:\nbefore %+v\nafter  %+v", before, after)
			}
			last := 2026 + uint64(max) - 1
			mustRemove(t, reg, tok, last)
			mustCreate(t, reg, tok, "Small.64GB", last+1)
			_, err := reg.CreateDevice(ctx, tok, "Small.64GB")
			wantErr(t, err, KindQuota, fmt.Sprintf("Maximum number of devices (%d) reached.", max))
			checkInvariants(t, reg)
		})
	}
}

// TestLimitDefaultIsFive: with no MaxDevices the sixth create fails.
func TestLimitDefaultIsFive(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	for i := 0; i < 5; i++ {
		mustCreate(t, reg, tok, "Small.64GB", 2026+uint64(i))
	}
	_, err := reg.CreateDevice(ctx, tok, "Small.64GB")
	wantErr(t, err, KindQuota, "Maximum number of devices (5) reached.")
	checkInvariants(t, reg)
}

// TestRemoveCurrentFallsBackToMostRecentlyUsed: the seed's rule, step by step.
func TestRemoveCurrentFallsBackToMostRecentlyUsed(t *testing.T) {
	reg, _ := openTestRegistry(t, Options{})
	a := mustCreate(t, reg, tok, "Small.64GB", 2026).ID
	b := mustCreate(t, reg, tok, "Small.64GB", 2027).ID
	c := mustCreate(t, reg, tok, "Small.64GB", 2028).ID
	mustSwitch(t, reg, tok, a)
	mustSwitch(t, reg, tok, c)
	wantCurrent(t, reg, tok, c)

	mustRemove(t, reg, tok, c)
	wantCurrent(t, reg, tok, a)
	wantIDs(t, reg, tok, a, b)
	checkInvariants(t, reg)

	// Among the rest, B's most recent use is its creation.
	mustRemove(t, reg, tok, a)
	wantCurrent(t, reg, tok, b)
	wantIDs(t, reg, tok, b)
	checkInvariants(t, reg)

	mustRemove(t, reg, tok, b)
	wantCurrent(t, reg, tok, 0)
	wantIDs(t, reg, tok)
	if _, ok := mustView(t, reg, tok).currentDevice(); ok {
		t.Fatalf("currentDevice() found one on an empty token")
	}
	checkInvariants(t, reg)
}

// TestRemoveFallbackIgnoresIDOrder: the fallback follows use, not id order.
func TestRemoveFallbackIgnoresIDOrder(t *testing.T) {
	reg, _ := openTestRegistry(t, Options{})
	for i := uint64(0); i < 5; i++ {
		mustCreate(t, reg, tok, "Small.64GB", 2026+i)
	}
	// Use order, oldest first: 2028 2030 2026 2029 2027.
	for _, id := range []uint64{2028, 2030, 2026, 2029, 2027} {
		mustSwitch(t, reg, tok, id)
	}
	for _, step := range []struct{ remove, current uint64 }{
		{2027, 2029}, {2029, 2026}, {2026, 2030}, {2030, 2028}, {2028, 0},
	} {
		mustRemove(t, reg, tok, step.remove)
		wantCurrent(t, reg, tok, step.current)
		checkInvariants(t, reg)
	}
}

// TestRemoveNonCurrentKeepsCurrent: removing another device leaves current
// and the token record as they were.
func TestRemoveNonCurrentKeepsCurrent(t *testing.T) {
	reg, _ := openTestRegistry(t, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	mustCreate(t, reg, tok, "Small.64GB", 2027)
	mustCreate(t, reg, tok, "Small.64GB", 2028)
	mustSwitch(t, reg, tok, 2027)
	before := mustView(t, reg, tok).Token
	mustRemove(t, reg, tok, 2028)
	mustRemove(t, reg, tok, 2026)
	if after := mustView(t, reg, tok).Token; !reflect.DeepEqual(after, before) {
		t.Fatalf("token changed: %+v → %+v", before, after)
	}
	wantIDs(t, reg, tok, 2027)
	checkInvariants(t, reg)
}

// TestRemoveUnknown: removing an unknown or already removed id is
// KindNotFound with the exact message, and changes nothing.
func TestRemoveUnknown(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	mustCreate(t, reg, tok, "Small.64GB", 2027)
	mustRemove(t, reg, tok, 2027)
	before := mustView(t, reg, tok)
	for _, id := range []uint64{2027, 2028, 0, 1, 1<<64 - 1} {
		wantErr(t, reg.RemoveDevice(ctx, tok, id), KindNotFound, fmt.Sprintf("Device %d does not exist.", id))
	}
	if after := mustView(t, reg, tok); !reflect.DeepEqual(before, after) {
		t.Fatalf("view changed: %+v → %+v", before, after)
	}
	checkInvariants(t, reg)
}

// TestSwitch: switching makes the device current; switching to the current
// one is allowed; an unknown id is KindNotFound and changes nothing.
func TestSwitch(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	mustCreate(t, reg, tok, "Small.64GB", 2027)
	mustSwitch(t, reg, tok, 2026)
	wantCurrent(t, reg, tok, 2026)
	mustSwitch(t, reg, tok, 2026)
	wantCurrent(t, reg, tok, 2026)

	before := mustView(t, reg, tok)
	for _, id := range []uint64{2028, 2025, 0, 99999} {
		wantErr(t, reg.Switch(ctx, tok, id), KindNotFound, fmt.Sprintf("Device %d does not exist.", id))
	}
	mustRemove(t, reg, tok, 2027)
	wantErr(t, reg.Switch(ctx, tok, 2027), KindNotFound, "Device 2027 does not exist.")
	after := mustView(t, reg, tok)
	if !reflect.DeepEqual(after.Token, before.Token) || !reflect.DeepEqual(ids(after), []uint64{2026}) {
		t.Fatalf("failed switches changed the token: %+v → %+v", before.Token, after.Token)
	}
	wantErr(t, reg.Switch(ctx, "nobody", 2026), KindNotFound, `Token "nobody" does not exist.`)
	checkInvariants(t, reg)
}

// TestSetModel: a model change stores the canonical name and keeps the
// rest of the device; an unknown model is KindInvalid; an unknown device
// KindNotFound.
func TestSetModel(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	d := mustCreate(t, reg, tok, "Small.64GB", 2026)
	mustCreate(t, reg, tok, "Small.64GB", 2027)
	before := mustView(t, reg, tok).Token

	for _, c := range []struct{ in, want string }{
		{"large", "Large.256GB"},
		{"XLARGE.512gb", "xLarge.512GB"},
		{"1.5xlarge", "1.5xLarge.768GB"},
		{"24xLarge.12288GB", "24xLarge.12288GB"},
	} {
		got, err := reg.SetModel(ctx, tok, 2026, c.in)
		if err != nil {
			t.Fatalf("SetModel(%q): %v", c.in, err)
		}
		want := d
		want.Model = c.want
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("SetModel(%q) = %+v, want %+v", c.in, got, want)
		}
		if stored, _ := reg.Device(ctx, tok, 2026); !reflect.DeepEqual(stored, want) {
			t.Fatalf("stored after SetModel(%q) = %+v, want %+v", c.in, stored, want)
		}
		if got.ModelInfo().Name != c.want {
			t.Fatalf("ModelInfo() = %+v, want %s", got.ModelInfo(), c.want)
		}
	}
	// A model change is not a use: current and use order stay.
	if after := mustView(t, reg, tok).Token; !reflect.DeepEqual(after, before) {
		t.Fatalf("SetModel changed the token: %+v → %+v", before, after)
	}

	snap := mustView(t, reg, tok)
	_, err := reg.SetModel(ctx, tok, 2026, "large.512GB")
	wantErr(t, err, KindInvalid, `Unknown model "large.512GB": the models file lists them (e.g. Large.256GB).`)
	_, err = reg.SetModel(ctx, tok, 2026, strings.Repeat("x", 100))
	wantErr(t, err, KindInvalid, `Unknown model "`+strings.Repeat("x", 64)+`…": the models file lists them (e.g. Large.256GB).`)
	_, err = reg.SetModel(ctx, tok, 2099, "large")
	wantErr(t, err, KindNotFound, "Device 2099 does not exist.")
	if after := mustView(t, reg, tok); !reflect.DeepEqual(snap, after) {
		t.Fatalf("failed SetModel changed the view: %+v → %+v", snap, after)
	}
	checkInvariants(t, reg)
}

// TestOtherTokensDevicesAreNotFound: a device of another token is reported
// exactly like a missing one by every operation, and is left alone.
func TestOtherTokensDevicesAreNotFound(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	other, err := Open(ctx, reg.eng, Options{DefaultToken: "other", MaxDevices: 2})
	if err != nil {
		t.Fatal(err)
	}
	if other.defaultToken() != "other" {
		t.Fatalf("DefaultToken() = %q", other.defaultToken())
	}
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	mustCreate(t, other, "other", "Large.256GB", 2027)
	mustCreate(t, reg, tok, "Small.64GB", 2028)

	beforeD, beforeO := mustView(t, reg, tok), mustView(t, reg, "other")
	const notFound = "Device 2027 does not exist."
	wantErr(t, reg.Switch(ctx, tok, 2027), KindNotFound, notFound)
	wantErr(t, reg.RemoveDevice(ctx, tok, 2027), KindNotFound, notFound)
	_, err = reg.SetModel(ctx, tok, 2027, "small")
	wantErr(t, err, KindNotFound, notFound)
	_, err = reg.Device(ctx, tok, 2027)
	wantErr(t, err, KindNotFound, notFound)
	_, err = other.Device(ctx, "other", 2026)
	wantErr(t, err, KindNotFound, "Device 2026 does not exist.")
	if a, b := mustView(t, reg, tok), mustView(t, reg, "other"); !reflect.DeepEqual(a, beforeD) || !reflect.DeepEqual(b, beforeO) {
		t.Fatalf("refused operations changed a view")
	}
	wantIDs(t, reg, tok, 2026, 2028)
	wantIDs(t, reg, "other", 2027)
	wantCurrent(t, reg, "other", 2027)

	// Limits are per token: "other" has 2, "default" 5.
	mustCreate(t, other, "other", "Small.64GB", 2029)
	_, err = other.CreateDevice(ctx, "other", "Small.64GB")
	wantErr(t, err, KindQuota, "Maximum number of devices (2) reached.")
	mustCreate(t, reg, tok, "Small.64GB", 2030)

	toks, err := reg.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(toks, func(i, j int) bool { return toks[i].Name < toks[j].Name })
	if len(toks) != 2 || toks[0].Name != "default" || toks[0].Number != 1 || toks[0].MaxDevices != 5 ||
		toks[1].Name != "other" || toks[1].Number != 2 || toks[1].MaxDevices != 2 {
		t.Fatalf("Tokens() = %+v", toks)
	}
	checkInvariants(t, reg)
}

// TestPersistence: devices, models, current, next id, token numbers and use
// order all survive a reopen.
func TestPersistence(t *testing.T) {
	ctx := t.Context()
	reg, path := openTestRegistry(t, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	mustCreate(t, reg, tok, "large", 2027)
	mustCreate(t, reg, tok, "1.5xlarge", 2028)
	mustCreate(t, reg, tok, "medium", 2029)
	mustRemove(t, reg, tok, 2029)
	if _, err := reg.SetModel(ctx, tok, 2026, "xlarge"); err != nil {
		t.Fatal(err)
	}
	mustSwitch(t, reg, tok, 2026)
	mustSwitch(t, reg, tok, 2028)
	before := mustView(t, reg, tok)

	reg = reopen(t, reg, path, Options{})
	after := mustView(t, reg, tok)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("reopen changed the view:\nbefore %+v\nafter  %+v", before, after)
	}
	checkInvariants(t, reg)

	// Next id and use order survive: use order is now 2027 < 2026 < 2030 <
	// 2028, so removing the current device walks back through it.
	mustCreate(t, reg, tok, "Small.64GB", 2030)
	mustSwitch(t, reg, tok, 2028)
	reg = reopen(t, reg, path, Options{})
	mustRemove(t, reg, tok, 2028)
	wantCurrent(t, reg, tok, 2030)
	mustRemove(t, reg, tok, 2030)
	wantCurrent(t, reg, tok, 2026)
	mustRemove(t, reg, tok, 2026)
	wantCurrent(t, reg, tok, 2027)
	if d, _ := reg.Device(ctx, tok, 2027); d.Model != "Large.256GB" {
		t.Fatalf("2027 model = %q after reopen", d.Model)
	}
	checkInvariants(t, reg)
}

// TestMaxDevicesReappliedOnReopen: the limit comes from the options at every
// open; lowering it below the held count keeps the devices but refuses
// creates until enough are removed.
func TestMaxDevicesReappliedOnReopen(t *testing.T) {
	ctx := t.Context()
	reg, path := openTestRegistry(t, Options{MaxDevices: 4})
	for i := uint64(0); i < 4; i++ {
		mustCreate(t, reg, tok, "Small.64GB", 2026+i)
	}
	reg = reopen(t, reg, path, Options{MaxDevices: 2})
	if v := mustView(t, reg, tok); v.Token.MaxDevices != 2 || len(v.Devices) != 4 || v.Token.Current != 2029 {
		t.Fatalf("after lowering: %+v", v)
	}
	checkInvariantsOverLimit(t, reg)
	_, err := reg.CreateDevice(ctx, tok, "Small.64GB")
	wantErr(t, err, KindQuota, "Maximum number of devices (2) reached.")
	mustRemove(t, reg, tok, 2029)
	mustRemove(t, reg, tok, 2028)
	_, err = reg.CreateDevice(ctx, tok, "Small.64GB")
	wantErr(t, err, KindQuota, "Maximum number of devices (2) reached.")
	mustRemove(t, reg, tok, 2027)
	mustCreate(t, reg, tok, "Small.64GB", 2030)
	checkInvariants(t, reg)

	reg = reopen(t, reg, path, Options{MaxDevices: 6})
	for i := uint64(0); i < 4; i++ {
		mustCreate(t, reg, tok, "Small.64GB", 2031+i)
	}
	_, err = reg.CreateDevice(ctx, tok, "Small.64GB")
	wantErr(t, err, KindQuota, "Maximum number of devices (6) reached.")
	if got := mustView(t, reg, tok).Token.MaxDevices; got != 6 {
		t.Fatalf("MaxDevices = %d, want 6", got)
	}
	checkInvariants(t, reg)

	// Default again on a plain reopen.
	reg = reopen(t, reg, path, Options{})
	if got := mustView(t, reg, tok).Token.MaxDevices; got != 5 {
		t.Fatalf("MaxDevices = %d, want 5", got)
	}
	checkInvariantsOverLimit(t, reg)
}

// TestConcurrentCreates: concurrent creates never exceed the limit and hand
// out distinct consecutive ids.
func TestConcurrentCreates(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{MaxDevices: 5})
	const n = 32
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		got   = make([]Device, n)
		errs  = make([]error, n)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			got[i], errs[i] = reg.CreateDevice(ctx, tok, "Small.64GB")
		}(i)
	}
	close(start)
	wg.Wait()

	var created []uint64
	quota := 0
	for i := range errs {
		switch {
		case errs[i] == nil:
			created = append(created, got[i].ID)
		case KindOf(errs[i]) == KindQuota && errs[i].Error() == "Maximum number of devices (5) reached.":
			quota++
		default:
			t.Errorf("create %d: %v (kind %d)", i, errs[i], KindOf(errs[i]))
		}
	}
	sort.Slice(created, func(i, j int) bool { return created[i] < created[j] })
	if want := []uint64{2026, 2027, 2028, 2029, 2030}; !reflect.DeepEqual(created, want) || quota != n-5 {
		t.Fatalf("created %v with %d quota refusals; want %v and %d", created, quota, want, n-5)
	}
	wantIDs(t, reg, tok, 2026, 2027, 2028, 2029, 2030)
	// The last create to commit is current.
	v := mustView(t, reg, tok)
	if cur, ok := v.currentDevice(); !ok || cur.LastUsed != v.Token.UseCount || v.Token.UseCount != 5 {
		t.Fatalf("current %+v, token %+v", cur, v.Token)
	}
	checkInvariants(t, reg)
}

// TestConcurrentMixed: creates, switches and removes racing on one token
// keep every invariant.
func TestConcurrentMixed(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{MaxDevices: 3})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				switch (g + i) % 3 {
				case 0:
					_, err := reg.CreateDevice(ctx, tok, "Small.64GB")
					if err != nil && KindOf(err) != KindQuota {
						t.Errorf("create: %v", err)
					}
				case 1:
					v, err := reg.View(ctx, tok)
					if err != nil {
						t.Errorf("view: %v", err)
						return
					}
					if len(v.Devices) > 3 {
						t.Errorf("view holds %d devices", len(v.Devices))
					}
					if len(v.Devices) > 0 {
						err := reg.Switch(ctx, tok, v.Devices[i%len(v.Devices)].ID)
						if err != nil && KindOf(err) != KindNotFound {
							t.Errorf("switch: %v", err)
						}
					}
				case 2:
					v, err := reg.View(ctx, tok)
					if err != nil {
						t.Errorf("view: %v", err)
						return
					}
					if len(v.Devices) > 0 {
						err := reg.RemoveDevice(ctx, tok, v.Devices[0].ID)
						if err != nil && KindOf(err) != KindNotFound {
							t.Errorf("remove: %v", err)
						}
					}
				}
			}
		}(g)
	}
	wg.Wait()
	checkInvariants(t, reg)
}

// failEngine wraps an Engine; once failing is set, Update (and View when
// failView is set) return an engine error without running fn.
type failEngine struct {
	Engine
	mu       sync.Mutex
	failing  bool
	failView bool
}

var errDiskGone = errors.New("disk on fire")

func (e *failEngine) set(update, view bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failing, e.failView = update, view
}

func (e *failEngine) Update(ctx context.Context, fn func(Tx) error) error {
	e.mu.Lock()
	fail := e.failing
	e.mu.Unlock()
	if fail {
		return errDiskGone
	}
	return e.Engine.Update(ctx, fn)
}

func (e *failEngine) View(ctx context.Context, fn func(Tx) error) error {
	e.mu.Lock()
	fail := e.failView
	e.mu.Unlock()
	if fail {
		return errDiskGone
	}
	return e.Engine.View(ctx, fn)
}

// putFailTx fails every Put, as a full disk does inside a transaction.
type putFailEngine struct{ Engine }
type putFailTx struct{ Tx }

func (e putFailEngine) Update(ctx context.Context, fn func(Tx) error) error {
	return e.Engine.Update(ctx, func(tx Tx) error { return fn(putFailTx{tx}) })
}
func (putFailTx) Put(bucket, key, value []byte) error { return errDiskGone }

// TestEngineFailureIsIO: an engine error becomes KindIO with the cause in
// the message, for every operation, and leaves the store as it was.
func TestEngineFailureIsIO(t *testing.T) {
	ctx := t.Context()
	reg0, _ := openTestRegistry(t, Options{})
	mustCreate(t, reg0, tok, "Small.64GB", 2026)
	const msg = "The state store failed: disk on fire"

	// Open itself.
	_, err := Open(ctx, &failEngine{Engine: reg0.eng, failing: true}, Options{})
	wantErr(t, err, KindIO, msg)
	_, err = Open(ctx, putFailEngine{reg0.eng}, Options{FirstID: 9000})
	wantErr(t, err, KindIO, msg)

	fe := &failEngine{Engine: reg0.eng}
	reg, err := Open(ctx, fe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fe.set(true, false)
	_, err = reg.CreateDevice(ctx, tok, "large")
	wantErr(t, err, KindIO, msg)
	wantErr(t, reg.RemoveDevice(ctx, tok, 2026), KindIO, msg)
	wantErr(t, reg.Switch(ctx, tok, 2026), KindIO, msg)
	_, err = reg.SetModel(ctx, tok, 2026, "large")
	wantErr(t, err, KindIO, msg)
	// Rule errors still win over a failing engine where they come first.
	_, err = reg.CreateDevice(ctx, tok, "nope")
	wantErr(t, err, KindInvalid, "")

	fe.set(true, true)
	_, err = reg.View(ctx, tok)
	wantErr(t, err, KindIO, msg)
	_, err = reg.Device(ctx, tok, 2026)
	wantErr(t, err, KindIO, msg)
	_, err = reg.Tokens(ctx)
	wantErr(t, err, KindIO, msg)

	// Puts failing inside a real transaction: rolled back, KindIO.
	pf, err := Open(ctx, reg0.eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pf.eng = putFailEngine{reg0.eng}
	_, err = pf.CreateDevice(ctx, tok, "large")
	wantErr(t, err, KindIO, msg)
	_, err = pf.SetModel(ctx, tok, 2026, "large")
	wantErr(t, err, KindIO, msg)

	// Nothing changed underneath.
	wantIDs(t, reg0, tok, 2026)
	if d, _ := reg0.Device(ctx, tok, 2026); d.Model != "Small.64GB" {
		t.Fatalf("model = %q", d.Model)
	}
	mustCreate(t, reg0, tok, "Small.64GB", 2027)
	checkInvariants(t, reg0)
}

// TestDamagedRecordIsIO: a record that is not JSON is reported as KindIO,
// not as a missing device or a panic.
func TestDamagedRecordIsIO(t *testing.T) {
	ctx := t.Context()
	reg, _ := openTestRegistry(t, Options{})
	mustCreate(t, reg, tok, "Small.64GB", 2026)
	if err := reg.eng.Update(ctx, func(tx Tx) error { return tx.Put(bucketDevices, u64(2026), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	_, err := reg.Device(ctx, tok, 2026)
	wantErr(t, err, KindIO, "")
	_, err = reg.View(ctx, tok)
	wantErr(t, err, KindIO, "")
	wantErr(t, reg.Switch(ctx, tok, 2026), KindIO, "")
}

// TestParseDeviceID: only a positive decimal number, with nothing around it.
func TestParseDeviceID(t *testing.T) {
	ok := map[string]uint64{
		"2026":                 2026,
		"1":                    1,
		"9":                    9,
		"18446744073709551615": 1<<64 - 1,
	}
	for in, want := range ok {
		got, err := ParseDeviceID(in)
		if err != nil || got != want {
			t.Errorf("ParseDeviceID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := []string{
		"0", "-1", "+5", " 5", "5 ", "abc", "",
		"99999999999999999999999", "18446744073709551616",
		"2026\n", "0x10", "1_000", "1e3", "2026.0", "٢٠٢٦", "２０２６", "2026\x00", "\t2026",
	}
	for _, in := range bad {
		id, err := ParseDeviceID(in)
		if err == nil {
			t.Errorf("ParseDeviceID(%q) = %d, want KindInvalid", in, id)
			continue
		}
		if id != 0 || KindOf(err) != KindInvalid {
			t.Errorf("ParseDeviceID(%q) = %d, kind %d; want 0, KindInvalid", in, id, KindOf(err))
		}
		if want := strconv.Quote(in) + " is not a device id: write a number such as 2026."; err.Error() != want {
			t.Errorf("ParseDeviceID(%q) message %q, want %q", in, err.Error(), want)
		}
	}
	// A long input is cut in the message.
	long := strings.Repeat("9", 100)
	_, err := ParseDeviceID(long)
	if want := `"` + strings.Repeat("9", 64) + `…" is not a device id: write a number such as 2026.`; err == nil || err.Error() != want {
		t.Errorf("ParseDeviceID(100 nines) = %v, want %q", err, want)
	}
}

// TestParseDeviceIDCanonical: an id has one spelling, as devices/ lists it
// (and as /proc/<pid> works: /proc/01 does not exist). "02026" is not 2026.
func TestParseDeviceIDCanonical(t *testing.T) {
	for _, in := range []string{"02026", "00", "01", "0002026"} {
		if id, err := ParseDeviceID(in); err == nil {
			t.Errorf("ParseDeviceID(%q) = %d, want KindInvalid (leading zero)", in, id)
		}
	}
}

// FuzzParseDeviceID: never panics; a success is the number's only spelling.
func FuzzParseDeviceID(f *testing.F) {
	f.Add("2026")
	f.Fuzz(func(t *testing.T, in string) {
		id, err := ParseDeviceID(in)
		if err != nil {
			if id != 0 || KindOf(err) != KindInvalid {
				t.Fatalf("ParseDeviceID(%q) = %d, %v (kind %d)", in, id, err, KindOf(err))
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("ParseDeviceID(%q) message spans lines: %q", in, err.Error())
			}
			return
		}
		if id == 0 || strconv.FormatUint(id, 10) != in {
			t.Fatalf("ParseDeviceID(%q) = %d, which formats as %q", in, id, strconv.FormatUint(id, 10))
		}
	})
}
