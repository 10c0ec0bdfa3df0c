package store

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// designModels is the Models table of DESIGN.md, in menu order.
var designModels = []struct {
	number int
	name   string
	short  string
	units  int
	mib    uint64
}{
	{1, "Small.64GB", "Small", 1, 65520},
	{2, "Medium.128GB", "Medium", 2, 131040},
	{3, "Large.256GB", "Large", 4, 262080},
	{4, "xLarge.512GB", "xLarge", 8, 524160},
	{5, "2xLarge.1024GB", "2xLarge", 16, 1048320},
	{6, "3xLarge.1536GB", "3xLarge", 24, 1572480},
	{7, "4xLarge.2048GB", "4xLarge", 32, 2096640},
	{8, "6xLarge.3072GB", "6xLarge", 48, 3144960},
	{9, "8xLarge.4096GB", "8xLarge", 64, 4193280},
	{10, "12xLarge.6144GB", "12xLarge", 96, 6289920},
	{11, "24xLarge.12288GB", "24xLarge", 192, 12579840},
	{12, "1.5xLarge.768GB", "1.5xLarge", 12, 786240},
}

// TestModelsMenuOrder: Models() is the DESIGN menu, in order, numbered 1..12,
// with the units and MiB columns; and it is a copy the caller may change.
func TestModelsMenuOrder(t *testing.T) {
	got := Models()
	if len(got) != len(designModels) {
		t.Fatalf("len(Models()) = %d, want %d", len(got), len(designModels))
	}
	for i, w := range designModels {
		m := got[i]
		if m.Number != i+1 || m.Number != w.number || m.Name != w.name || m.Units != w.units {
			t.Errorf("Models()[%d] = %+v, want {%d %s %d}", i, m, w.number, w.name, w.units)
		}
		if m.MemoryMiB() != w.mib || m.MemoryMiB() != uint64(w.units)*65520 {
			t.Errorf("%s MemoryMiB = %d, want %d (= %d×65520)", m.Name, m.MemoryMiB(), w.mib, w.units)
		}
	}
	if UnitMiB != 65520 {
		t.Errorf("UnitMiB = %d, want 65520", UnitMiB)
	}
	if m, ok := LookupModel(DefaultModel); !ok || m.Name != "Medium.128GB" {
		t.Errorf("DefaultModel %q looks up to %+v %v, want Medium.128GB", DefaultModel, m, ok)
	}
	// The slice is a copy: changing it leaves the catalogue alone.
	got[0].Name, got[0].Units = "Broken", 99
	if again := Models(); again[0].Name != "Small.64GB" || again[0].Units != 1 {
		t.Errorf("Models() shares its backing array: after a change it returns %+v", again[0])
	}
}

// TestLookupModelCatalogue: every row is found by its canonical name, lower
// and upper case, and its short form in any case, and answers with the
// canonical spelling, the units and the exact MiB of DESIGN.md.
func TestLookupModelCatalogue(t *testing.T) {
	for _, w := range designModels {
		inputs := []string{
			w.name,
			strings.ToLower(w.name),
			strings.ToUpper(w.name),
			w.short,
			strings.ToLower(w.short),
			strings.ToUpper(w.short),
			swapCase(w.name),
			swapCase(w.short),
		}
		for _, in := range inputs {
			m, ok := LookupModel(in)
			if !ok {
				t.Errorf("LookupModel(%q) not found, want %s", in, w.name)
				continue
			}
			if m.Name != w.name || m.Number != w.number || m.Units != w.units || m.MemoryMiB() != w.mib {
				t.Errorf("LookupModel(%q) = %+v (MiB %d), want %s units %d MiB %d",
					in, m, m.MemoryMiB(), w.name, w.units, w.mib)
			}
		}
	}
}

// TestLookupModelShortForms: the short forms DESIGN.md and users write.
func TestLookupModelShortForms(t *testing.T) {
	cases := map[string]string{
		"large":       "Large.256GB",
		"xlarge":      "xLarge.512GB",
		"XLARGE":      "xLarge.512GB",
		"1.5xlarge":   "1.5xLarge.768GB",
		"1.5XLARGE":   "1.5xLarge.768GB",
		"2XLARGE":     "2xLarge.1024GB",
		"24xlarge":    "24xLarge.12288GB",
		"small":       "Small.64GB",
		"medium":      "Medium.128GB",
		"large.256gb": "Large.256GB",
		"LARGE.256GB": "Large.256GB",
		"12xLarge":    "12xLarge.6144GB",
	}
	for in, want := range cases {
		m, ok := LookupModel(in)
		if !ok || m.Name != want {
			t.Errorf("LookupModel(%q) = %q, %v; want %q", in, m.Name, ok, want)
		}
	}
}

// TestLookupModelRejects: near misses are unknown models.
func TestLookupModelRejects(t *testing.T) {
	rejects := []string{
		"",
		" large",
		"large ",
		"\tlarge",
		"Large.256",
		"256GB",
		"Large.256GB\n",
		"Large.256GB\x00",
		"3", // a menu number is not a model name
		"12",
		"medium.128gb.x",
		"Large.512GB", // name and memory of different rows
		"Large.256MB",
		"xxLarge",
		"1,5xLarge",
		"1.5",
		".",
		"Large.",
		".256GB",
		"GB",
		"Large .256GB",
		"Large..256GB",
		"large\u200b",       // zero-width space
		"Lаrge",             // Cyrillic а
		"Ｌarge",             // fullwidth L
		"Large.256ＧＢ",       // fullwidth GB
		"Large.２５６GB",       // fullwidth digits
		"Large\u00a0",       // no-break space
		"Large.256GB\u0301", // combining acute accent
		"\ufeffLarge.256GB", // byte-order mark
		"Large.256GB\xff",   // invalid UTF-8
		"\xffLarge",         // invalid UTF-8
		"medium.128gb.medium.128gb",
	}
	for _, in := range rejects {
		if m, ok := LookupModel(in); ok {
			t.Errorf("LookupModel(%q) = %+v, want not found", in, m)
		}
	}
}

// TestLookupModelRejectsUnicodeFolds: names match case-insensitively in
// ASCII only. Unicode simple folding also maps U+017F (ſ, long s) to 's' and
// U+212A (K, Kelvin sign) to 'k'; mkdir devices/ſmall must not create a
// Small.64GB device.
func TestLookupModelRejectsUnicodeFolds(t *testing.T) {
	for _, in := range []string{
		"ſmall", // U+017F LATIN SMALL LETTER LONG S
		"ſmall.64GB",
		"ſMALL.64gb",
	} {
		if m, ok := LookupModel(in); ok {
			t.Errorf("LookupModel(%q) = %+v, want not found (non-ASCII input)", in, m)
		}
	}
}

// swapCase inverts the case of every ASCII letter.
func swapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// FuzzLookupModel: LookupModel never panics, and what it finds is a row of
// the catalogue whose name or short form equals the input ignoring case.
func FuzzLookupModel(f *testing.F) {
	for _, s := range []string{"Large.256GB", "large", "1.5xLarge.768GB", "", "Large.256GB\n", "ſmall", "3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, ok := LookupModel(in)
		if !ok {
			if m != (Model{}) {
				t.Fatalf("LookupModel(%q) not found but returned %+v", in, m)
			}
			return
		}
		var row *Model
		for _, c := range Models() {
			if c == m {
				c := c
				row = &c
			}
		}
		if row == nil {
			t.Fatalf("LookupModel(%q) = %+v, not a catalogue row", in, m)
		}
		short := m.Name[:strings.LastIndexByte(m.Name, '.')]
		if !strings.EqualFold(in, m.Name) && !strings.EqualFold(in, short) {
			t.Fatalf("LookupModel(%q) = %s, which neither %q nor %q equals ignoring case", in, m.Name, m.Name, short)
		}
		if !utf8.ValidString(in) {
			t.Fatalf("LookupModel(%q) accepted invalid UTF-8", in)
		}
		if m.MemoryMiB() != uint64(m.Units)*UnitMiB {
			t.Fatalf("%s MemoryMiB %d != %d×%d", m.Name, m.MemoryMiB(), m.Units, UnitMiB)
		}
	})
}
