package store

import "strings"

// UnitMiB is the memory of one 64 GB GPU unit as the product reports it.
const UnitMiB = 65520

// Model is one entry of the device catalogue.
type Model struct {
	Number int    // position in the seed's menu, from 1
	Name   string // canonical spelling
	Units  int    // 64 GB GPU units
}

// MemoryMiB is the total memory the device of this model reports.
func (m Model) MemoryMiB() uint64 { return uint64(m.Units) * UnitMiB }

// DefaultModel is what a fresh token's menu shows as current.
const DefaultModel = "Medium.128GB"

// models is the catalogue in the seed's menu order.
var models = []Model{
	{1, "Small.64GB", 1},
	{2, "Medium.128GB", 2},
	{3, "Large.256GB", 4},
	{4, "xLarge.512GB", 8},
	{5, "2xLarge.1024GB", 16},
	{6, "3xLarge.1536GB", 24},
	{7, "4xLarge.2048GB", 32},
	{8, "6xLarge.3072GB", 48},
	{9, "8xLarge.4096GB", 64},
	{10, "12xLarge.6144GB", 96},
	{11, "24xLarge.12288GB", 192},
	{12, "1.5xLarge.768GB", 12},
}

// Models returns the catalogue in menu order.
func Models() []Model { return append([]Model(nil), models...) }

// LookupModel finds a model by its name or short form ("large", "1.5xlarge"),
// ignoring case.
func LookupModel(name string) (Model, bool) {
	for _, m := range models {
		if equalFoldASCII(name, m.Name) || equalFoldASCII(name, shortName(m.Name)) {
			return m, true
		}
	}
	return Model{}, false
}

// shortName drops the memory suffix: "1.5xLarge.768GB" → "1.5xLarge".
func shortName(name string) string {
	return name[:strings.LastIndexByte(name, '.')]
}

// equalFoldASCII compares ignoring ASCII case only: Unicode folding would let
// look-alikes such as "ſmall" name a model.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
