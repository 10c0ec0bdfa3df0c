package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
)

// Numeric flags take one spelling of each number, as the tree's files do:
// plain decimal digits, no sign, no leading zero, no 0x or 0o prefix
// (pflag's own would read --first-id 010 as 8 and accept +7).

// decimalUint64 is a uint64 flag in canonical decimal.
type decimalUint64 struct{ p *uint64 }

func (d decimalUint64) String() string { return strconv.FormatUint(*d.p, 10) }
func (d decimalUint64) Type() string   { return "uint" }
func (d decimalUint64) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return fmt.Errorf("%q is not a number: write plain decimal digits, such as 2026", s)
	}
	*d.p = n
	return nil
}

// decimalInt is an int flag in canonical decimal (a leading '-' allowed).
type decimalInt struct{ p *int }

func (d decimalInt) String() string { return strconv.Itoa(*d.p) }
func (d decimalInt) Type() string   { return "int" }
func (d decimalInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return fmt.Errorf("%q is not a number: write plain decimal digits, such as 5", s)
	}
	*d.p = n
	return nil
}

// uint64Flag defines a strict decimal uint64 flag with its default.
func uint64Flag(f *pflag.FlagSet, p *uint64, name string, value uint64, usage string) {
	*p = value
	f.Var(decimalUint64{p}, name, usage)
}

// intFlag defines a strict decimal int flag with its default.
func intFlag(f *pflag.FlagSet, p *int, name string, value int, usage string) {
	*p = value
	f.Var(decimalInt{p}, name, usage)
}
