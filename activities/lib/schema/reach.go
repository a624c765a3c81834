package schema

import (
	"slices"
	"strconv"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// Reach is what a schema says of a path in the records it accepts.
type Reach int

const (
	// Undescribed: a record may hold a value there, but the schema does
	// not describe it (an open object, a property with no schema of its
	// own).
	Undescribed Reach = iota
	// Described: a property, item, pattern or additional-properties schema
	// describes the value there.
	Described
	// Unreachable: no record the schema accepts has a value there: the
	// path goes into a closed object (additionalProperties: false) by a
	// name it does not list, or into a string, number or boolean.
	Unreachable
)

// PathReach is what Validator.Reach found.
type PathReach struct {
	Reach Reach
	// At is the index of the first segment the schema does not describe
	// (len(path) when it describes them all).
	At int
	// Known are the property names the object at segment At lists, sorted,
	// for a "did you mean" (empty when it is not an object schema).
	Known []string
}

// opinion is one schema's say on a path: like Reach, plus none when the
// schema has no keyword about objects, arrays or types.
type opinion struct {
	PathReach
	none bool
}

// maxDepth bounds the walk through $refs, so a recursive schema ends.
const maxDepth = 64

// Reach reports whether the records the schema accepts can hold a value at
// path (dot-path segments, a number indexing an array), and whether the
// schema describes it. Composition is read conservatively: a path is
// Unreachable only when every record the schema accepts lacks it.
func (v *Validator) Reach(path []string) PathReach {
	o := reach(v.schema, path, 0, 0)
	if o.none {
		o.Reach, o.At = Undescribed, 0
	}
	return o.PathReach
}

// reach is the opinion of s on path, whose first segment is path[at:]'s.
func reach(s *jsonschema.Schema, path []string, at, depth int) opinion {
	if s == nil || depth > maxDepth {
		return opinion{none: true}
	}
	if at == len(path) {
		return opinion{PathReach: PathReach{Reach: Described, At: at}}
	}
	own := ownReach(s, path, at, depth)
	var all, any []opinion // conjunctive and disjunctive branches
	for _, b := range append([]*jsonschema.Schema{s.Ref, s.RecursiveRef, s.DynamicRef}, s.AllOf...) {
		if b != nil {
			all = append(all, reach(b, path, at, depth+1))
		}
	}
	for _, b := range append(slices.Clone(s.AnyOf), s.OneOf...) {
		any = append(any, reach(b, path, at, depth+1))
	}
	return combine(append([]opinion{own}, all...), any)
}

// combine joins the opinions of a schema's own keywords and its
// conjunctive branches (all: $ref, allOf) with those of its disjunctive
// ones (any: anyOf, oneOf). Described anywhere wins (a wrong "cannot be
// there" would refuse a good integration); then Unreachable in a
// conjunctive branch, or in every disjunctive one; then Undescribed.
func combine(all, any []opinion) opinion {
	both := append(slices.Clone(all), any...)
	if i := slices.IndexFunc(both, func(o opinion) bool { return has(o, Described) }); i >= 0 {
		return both[i]
	}
	if i := slices.IndexFunc(all, func(o opinion) bool { return has(o, Unreachable) }); i >= 0 {
		return all[i]
	}
	if len(any) > 0 && !slices.ContainsFunc(any, func(o opinion) bool { return !has(o, Unreachable) }) {
		return any[0]
	}
	best := opinion{none: true}
	for _, o := range both {
		if has(o, Undescribed) && (best.none || o.At > best.At) {
			best = o
		}
	}
	return best
}

// has reports whether o is an opinion, of reach r.
func has(o opinion, r Reach) bool { return !o.none && o.Reach == r }

// ownReach is the opinion of s's own keywords (properties, patterns,
// items, additionalProperties, type) on path[at:].
func ownReach(s *jsonschema.Schema, path []string, at, depth int) opinion {
	seg := path[at]
	if p, ok := s.Properties[seg]; ok {
		return deeper(reach(p, path, at+1, depth+1), at)
	}
	for re, p := range s.PatternProperties {
		if re.MatchString(seg) {
			return deeper(reach(p, path, at+1, depth+1), at)
		}
	}
	if item := itemSchema(s, seg); item != nil {
		return deeper(reach(item, path, at+1, depth+1), at)
	}
	known := make([]string, 0, len(s.Properties))
	for name := range s.Properties {
		known = append(known, name)
	}
	slices.Sort(known)
	stop := func(r Reach) opinion { return opinion{PathReach: PathReach{Reach: r, At: at, Known: known}} }
	switch ap := s.AdditionalProperties.(type) {
	case *jsonschema.Schema:
		return deeper(reach(ap, path, at+1, depth+1), at)
	case bool:
		if !ap {
			return stop(Unreachable)
		}
	}
	_, notIndex := strconv.Atoi(seg)
	if len(s.Types) > 0 && !slices.Contains(s.Types, "object") && (notIndex != nil || !slices.Contains(s.Types, "array")) {
		return stop(Unreachable) // a scalar, or an array by a name
	}
	if len(s.Properties) > 0 || len(s.PatternProperties) > 0 || len(s.Types) > 0 || s.AdditionalProperties != nil {
		return stop(Undescribed)
	}
	return opinion{none: true}
}

// deeper is a subschema's opinion on the rest of a path: a subschema with
// no opinion leaves the value at segment at described and what is below
// it not.
func deeper(o opinion, at int) opinion {
	if o.none {
		return opinion{PathReach: PathReach{Reach: Undescribed, At: at + 1}}
	}
	return o
}

// itemSchema is the schema of array item seg (a decimal index), if s
// describes one.
func itemSchema(s *jsonschema.Schema, seg string) *jsonschema.Schema {
	i, err := strconv.Atoi(seg)
	if err != nil || i < 0 {
		return nil
	}
	if i < len(s.PrefixItems) {
		return s.PrefixItems[i]
	}
	if s.Items2020 != nil {
		return s.Items2020
	}
	switch it := s.Items.(type) {
	case *jsonschema.Schema:
		return it
	case []*jsonschema.Schema:
		if i < len(it) {
			return it[i]
		}
		if ai, ok := s.AdditionalItems.(*jsonschema.Schema); ok {
			return ai
		}
	}
	return nil
}
