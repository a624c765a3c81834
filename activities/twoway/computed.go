package twoway

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Compute makes one shared field of several of a side's fields, and
// splits it back: ToShared gets the side's values in the order of
// Computed.From, FromShared gives as many. ToShared must undo FromShared
// exactly for every shared value written (each one is checked, and one
// that does not come back unchanged parks its record instead of being
// written back and forth). How the side's values are split may change
// (two first names may become one first name and a longer last name);
// the shared value does not.
type Compute struct {
	ToShared   func(parts []any) (any, error)
	FromShared func(shared any, n int) ([]any, error)
}

// Computed is a shared field computed from several of the side's fields:
// Compute names a compute ("join", or one registered with
// RegisterCompute), From the side's fields it is made of, each mapped in
// the side's fields like a shared field and not shared itself.
type Computed struct {
	Compute string   `yaml:"compute" json:"compute"`
	From    []string `yaml:"from" json:"from"`
}

var (
	computesMu sync.RWMutex
	computes   = map[string]Compute{"join": {ToShared: joinWords, FromShared: splitWords}}
)

// RegisterCompute makes a compute of Go code usable by name in
// SideSpec.Computed (and integration files); the shipped one is "join"
// (the parts' text joined by spaces, split back at the first spaces: a
// name from a first and a last name).
func RegisterCompute(name string, c Compute) {
	computesMu.Lock()
	defer computesMu.Unlock()
	computes[name] = c
}

func computeNamed(name string) (Compute, bool) {
	computesMu.RLock()
	defer computesMu.RUnlock()
	c, ok := computes[name]
	return c, ok
}

func computeNames() []string {
	computesMu.RLock()
	defer computesMu.RUnlock()
	return slices.Sorted(maps.Keys(computes))
}

// joinWords joins the parts' text with spaces, leaving out empty ones;
// no text at all is null.
func joinWords(parts []any) (any, error) {
	var words []string
	for _, p := range parts {
		switch x := p.(type) {
		case nil:
		case string:
			if x != "" {
				words = append(words, x)
			}
		default:
			return nil, fmt.Errorf("%v is not text", p)
		}
	}
	if len(words) == 0 {
		return nil, nil
	}
	return strings.Join(words, " "), nil
}

// splitWords splits text at its first n-1 spaces; null is n nulls.
func splitWords(shared any, n int) ([]any, error) {
	out := make([]any, n)
	if shared == nil {
		return out, nil
	}
	s, ok := shared.(string)
	if !ok {
		return nil, fmt.Errorf("%v is not text", shared)
	}
	for i, w := range strings.SplitN(s, " ", n) {
		out[i] = w
	}
	return out, nil
}

// checkComputed says what is wrong with a side's computed fields: each
// names a known compute and at least two of the side's own fields, used
// by no other computed field and not a shared field as well.
func checkComputed(computed map[string]Computed, own map[string]string) []error {
	var errs []error
	used := map[string]string{}
	for _, f := range slices.Sorted(maps.Keys(computed)) {
		c := computed[f]
		if _, ok := computeNamed(c.Compute); !ok {
			errs = append(errs, fmt.Errorf("computed.%s.compute: no compute %q (known: %s)", f, c.Compute, strings.Join(computeNames(), ", ")))
		}
		if len(c.From) < 2 {
			errs = append(errs, fmt.Errorf("computed.%s.from: name at least two of the side's fields (one field is a cast)", f))
		}
		if _, ok := own[f]; ok {
			errs = append(errs, fmt.Errorf("computed.%s: is mapped as a field of the side too", f))
		}
		for _, p := range c.From {
			switch {
			case own[p] == "":
				errs = append(errs, fmt.Errorf("computed.%s.from: %q is not one of the side's fields", f, p))
			case used[p] != "":
				errs = append(errs, fmt.Errorf("computed.%s.from: %q makes %s already", f, p, used[p]))
			}
			used[p] = f
		}
	}
	return errs
}

// sharedFields are a side's shared fields: its own fields, less those that
// make computed ones, and the computed ones.
func sharedFields(own map[string]string, computed map[string]Computed) map[string]string {
	if len(computed) == 0 {
		return own
	}
	out := maps.Clone(own)
	for f, c := range computed {
		for _, p := range c.From {
			delete(out, p)
		}
		out[f] = strings.Join(c.From, "+")
	}
	return out
}

// computer applies a side's computed fields to records read and written.
type computer struct {
	field   string
	from    []string
	compute Compute
}

// toShared replaces the parts in rec (the side's record) by the field.
func (c computer) toShared(rec Record) error {
	parts := make([]any, len(c.from))
	for i, p := range c.from {
		parts[i] = rec[p]
		delete(rec, p)
	}
	v, err := c.compute.ToShared(parts)
	if err != nil {
		return fmt.Errorf("field %s (from %s): %w", c.field, strings.Join(c.from, ", "), err)
	}
	rec[c.field] = v
	return nil
}

// fromShared replaces the field in rec (a shared record being written) by
// its parts, checked to make the same field again.
func (c computer) fromShared(rec Record) error {
	v, ok := rec[c.field]
	if !ok {
		return nil
	}
	parts, err := c.compute.FromShared(v, len(c.from))
	if err == nil && len(parts) != len(c.from) {
		err = fmt.Errorf("split into %d values, want %d", len(parts), len(c.from))
	}
	if err != nil {
		return fmt.Errorf("field %s: %w", c.field, err)
	}
	back, err := c.compute.ToShared(parts)
	if err != nil || !equal(back, v) {
		return fmt.Errorf("field %s: %v does not come back unchanged from its parts %v (becomes %v): it would be written back and forth", c.field, v, parts, back)
	}
	delete(rec, c.field)
	for i, p := range c.from {
		rec[p] = parts[i]
	}
	return nil
}

func computers(computed map[string]Computed) ([]computer, error) {
	var out []computer
	for _, f := range slices.Sorted(maps.Keys(computed)) {
		c, ok := computeNamed(computed[f].Compute)
		if !ok {
			return nil, errors.New("computed." + f + ": no compute " + computed[f].Compute)
		}
		out = append(out, computer{field: f, from: computed[f].From, compute: c})
	}
	return out, nil
}
