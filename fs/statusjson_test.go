package fs

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// TestStatusJSONEncoding: status.json's own encoder writes exactly what
// json.MarshalIndent writes, for every shape and for strings that need
// escaping; a field added to the types without the encoder fails here.
func TestStatusJSONEncoding(t *testing.T) {
	strs := []string{"", "default", "KT AI Accelerator", "24xLarge.12288GB", "2022-10-17T13:40:41Z",
		"<b", "a & b", "x > y", `say "hi"`, `back\slash`, "tab\t", "nul\x00", "del\x7f", "héllo 日本", "bad \xff", "sep \u2028"}
	uints := []uint64{0, 1, 2026, math.MaxUint64}
	ints := []int{0, 1, -1, 100, math.MaxInt, math.MinInt}
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string { return strs[r.IntN(len(strs))] }
	u64 := func() uint64 { return uints[r.IntN(len(uints))] }
	num := func() int { return ints[r.IntN(len(ints))] }
	for range 2000 {
		s := statusJSON{Time: str(), SMIVersion: str(), ClientVersion: str(), ServerVersion: str(), Token: str(),
			Limit: limitJSON{Max: num(), Used: num()}}
		if r.IntN(2) == 0 {
			c := u64()
			s.Current = &c
		}
		if r.IntN(8) > 0 {
			s.Devices = []deviceJSON{}
		}
		for range r.IntN(4) {
			d := deviceJSON{ID: u64(), Current: r.IntN(2) == 0, Name: str(), Model: str(), Units: num(),
				MemoryUsedMiB: u64(), MemoryTotalMiB: u64()}
			if r.IntN(2) == 0 {
				u := num()
				d.Utilization = &u
			}
			s.Devices = append(s.Devices, d)
		}
		if r.IntN(8) > 0 {
			s.Processes = []processJSON{}
		}
		for range r.IntN(4) {
			s.Processes = append(s.Processes, processJSON{Device: u64(), JobID: u64(), PID: num(), Name: str(), MemoryMiB: u64()})
		}
		want, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.appendIndented(nil); string(got) != string(want) {
			t.Fatalf("appendIndented differs from json.MarshalIndent for %+v:\n--- got\n%s\n--- want\n%s", s, got, want)
		}
	}
}
