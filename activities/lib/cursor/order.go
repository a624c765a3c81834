package cursor

import (
	"cmp"
	"math/big"
	"regexp"
	"strings"
	"time"
)

// Compare orders (cursor, key) positions: by cursor, then by
// key, with CompareValues. The pipeline skips records at or before the
// checkpoint by this order, and sources that filter on their side (such as
// pgsource) must agree with it.
func Compare(a, b Checkpoint) int {
	if c := CompareValues(a.Cursor, b.Cursor, true); c != 0 {
		return c
	}
	return CompareValues(a.Key, b.Key, false)
}

// Kinds of cursor and key values, in the order values of different kinds
// sort: a field mixing kinds still gets one total order.
const (
	kindEmpty = iota // "": no value, before everything (a checkpoint without a key)
	kindNumber
	kindInstant
	kindText
)

// numberRE is a JSON number with a bounded exponent (so parsing stays cheap).
var numberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$`)

// CompareValues orders two cursor or key values. The empty value comes
// first (an initial cursor has no key: every record at that cursor is after
// it). Numbers compare exactly as numbers (big.Rat: ids beyond 2^53 and long
// decimals included), RFC 3339 timestamps as instants when times is set (a
// cursor), anything else as text, byte by byte; values of different kinds
// by kind. Equal numbers or instants spelled differently ("1.0" and "1",
// "Z" and "+00:00") are equal.
func CompareValues(a, b string, times bool) int {
	if a == b {
		return 0
	}
	ka, ra, ta := valueKind(a, times)
	kb, rb, tb := valueKind(b, times)
	if ka != kb {
		return cmp.Compare(ka, kb)
	}
	switch ka {
	case kindNumber:
		return ra.Cmp(rb)
	case kindInstant:
		return ta.Compare(tb)
	}
	return strings.Compare(a, b)
}

func valueKind(s string, times bool) (int, *big.Rat, time.Time) {
	if s == "" {
		return kindEmpty, nil, time.Time{}
	}
	if numberRE.MatchString(s) {
		if r, ok := new(big.Rat).SetString(s); ok {
			return kindNumber, r, time.Time{}
		}
	}
	if times {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return kindInstant, nil, t
		}
	}
	return kindText, nil, time.Time{}
}
