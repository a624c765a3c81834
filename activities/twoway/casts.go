package twoway

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// Cast converts a field between a side's form and the shared one, both
// ways: FromShared must undo ToShared exactly, or a record would change
// each time it went round and be written back and forth for ever. A
// value that does not survive the round trip is refused for that record
// (it waits for a person), never written.
type Cast struct {
	ToShared   func(side any) (any, error)
	FromShared func(shared any) (any, error)
}

var (
	castsMu sync.RWMutex
	casts   = map[string]Cast{
		"cents":  {ToShared: centsToAmount, FromShared: amountToCents},
		"string": {ToShared: stringToScalar, FromShared: scalarToString},
		"unix":   {ToShared: unixToTime, FromShared: timeToUnix},
	}
)

// RegisterCast makes a cast of Go code usable by name in SideSpec.Casts
// (and integration files); the shipped ones are "cents" (integer cents on
// the side, an amount shared), "string" (a number or boolean kept as text
// on the side) and "unix" (Unix seconds on the side, an RFC 3339 time
// shared).
func RegisterCast(name string, c Cast) {
	castsMu.Lock()
	defer castsMu.Unlock()
	casts[name] = c
}

func castNamed(name string) (Cast, bool) {
	castsMu.RLock()
	defer castsMu.RUnlock()
	c, ok := casts[name]
	return c, ok
}

func castNames() []string {
	castsMu.RLock()
	defer castsMu.RUnlock()
	return slices.Sorted(maps.Keys(casts))
}

// number reads a JSON number (json.Number, float64, an integer or a
// numeric string) as an exact rational.
func ratOf(v any) (*big.Rat, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	default:
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

func centsToAmount(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	r, ok := ratOf(v)
	if !ok || !r.IsInt() {
		return nil, fmt.Errorf("%v is not a whole number of cents", v)
	}
	r.Quo(r, big.NewRat(100, 1))
	return json.Number(strings.TrimSuffix(strings.TrimRight(r.FloatString(2), "0"), ".")), nil
}

func amountToCents(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	r, ok := ratOf(v)
	if !ok {
		return nil, fmt.Errorf("%v is not an amount", v)
	}
	r.Mul(r, big.NewRat(100, 1))
	if !r.IsInt() {
		return nil, fmt.Errorf("%v has more than two decimals: not a whole number of cents", v)
	}
	return json.Number(r.Num().String()), nil
}

func stringToScalar(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return v, nil
	}
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if jsonNumber.MatchString(s) {
		return json.Number(s), nil
	}
	return nil, fmt.Errorf("%q is neither a JSON number nor true or false", s)
}

func scalarToString(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		return x.String(), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case string:
		return x, nil
	}
	return nil, fmt.Errorf("%v is neither a number nor a boolean", v)
}

func unixToTime(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	r, ok := ratOf(v)
	if !ok || !r.IsInt() {
		return nil, fmt.Errorf("%v is not a whole number of seconds", v)
	}
	// RFC 3339 has four-digit years: 0001-01-01 to 9999-12-31.
	if !r.Num().IsInt64() || r.Num().Int64() < minUnix || r.Num().Int64() > maxUnix {
		return nil, fmt.Errorf("%v seconds is not a time of years 1 to 9999", v)
	}
	return time.Unix(r.Num().Int64(), 0).UTC().Format(time.RFC3339), nil
}

// The Unix seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const (
	minUnix = -62135596800
	maxUnix = 253402300799
)

// jsonNumber is a number as JSON writes it (RFC 8259): text the "string"
// cast reads as a number must be one, or it would not encode.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func timeToUnix(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%v is not an RFC 3339 time", v)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	if t.Nanosecond() != 0 {
		return nil, fmt.Errorf("%q has fractions of a second: not a whole number of seconds", s)
	}
	return json.Number(strconv.FormatInt(t.Unix(), 10)), nil
}

// castEndpoint applies a side's computed fields and casts around its
// endpoint: records read are converted to the shared form, records
// written to the side's, each value checked to come back unchanged.
type castEndpoint struct {
	Endpoint
	computed []computer
	casts    []fieldCast // by shared field, sorted: the same field's error first every time
}

// fieldCast is a shared field's cast.
type fieldCast struct {
	field string
	cast  Cast
}

// withCasts wraps e with its computed fields and the casts named by field
// (shared field → cast).
func withCasts(e Endpoint, computed map[string]Computed, named map[string]string) (Endpoint, error) {
	if len(named) == 0 && len(computed) == 0 {
		return e, nil
	}
	cs, err := computers(computed)
	if err != nil {
		return nil, err
	}
	ce := &castEndpoint{Endpoint: e, computed: cs}
	for _, f := range slices.Sorted(maps.Keys(named)) {
		c, ok := castNamed(named[f])
		if !ok {
			return nil, fmt.Errorf("casts.%s: no cast %q (known: %s)", f, named[f], strings.Join(castNames(), ", "))
		}
		ce.casts = append(ce.casts, fieldCast{field: f, cast: c})
	}
	return ce, nil
}

func (e *castEndpoint) Changes(ctx context.Context, cursor, key string, fn func([]Change) error) error {
	return e.Endpoint.Changes(ctx, cursor, key, func(page []Change) error {
		for i := range page {
			if page[i].Record == nil {
				continue
			}
			rec := maps.Clone(page[i].Record)
			var problems []string // this record waits for a person; the others go on
			for _, c := range e.computed {
				if err := c.toShared(rec); err != nil {
					problems = append(problems, err.Error())
				}
			}
			for _, fc := range e.casts {
				v, ok := rec[fc.field]
				if !ok {
					continue
				}
				shared, err := fc.cast.ToShared(v)
				if err != nil {
					problems = append(problems, fmt.Sprintf("field %s: %v", fc.field, err))
					continue
				}
				rec[fc.field] = shared
			}
			page[i].Record = rec
			if len(problems) > 0 {
				page[i].Invalid = strings.Join(problems, "; ")
			}
		}
		return fn(page)
	})
}

func (e *castEndpoint) Put(ctx context.Context, key string, rec Record, expect, idem string) (Written, error) {
	out := maps.Clone(rec)
	for _, fc := range e.casts {
		f, c := fc.field, fc.cast
		v, ok := rec[f]
		if !ok {
			continue
		}
		side, err := c.FromShared(v)
		if err != nil {
			return Written{}, failure.Permanent(failure.TypeConfig, fmt.Errorf("field %s: %w", f, err))
		}
		back, err := c.ToShared(side)
		if err != nil || !equal(back, v) {
			return Written{}, failure.Permanent(failure.TypeConfig, fmt.Errorf("field %s: %v does not come back unchanged from its cast (becomes %v): it would be written back and forth", f, v, back))
		}
		out[f] = side
	}
	for _, c := range e.computed {
		if err := c.fromShared(out); err != nil {
			return Written{}, failure.Permanent(failure.TypeConfig, err)
		}
	}
	return e.Endpoint.Put(ctx, key, out, expect, idem)
}
