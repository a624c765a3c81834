// Package twoway decides what a two-way sync does with one record: given
// the record's last synced state (the base) and what each side holds now,
// it tells which side changed, whether that is a conflict, how the
// integration's policy resolves it, and what must be written where.
//
// The comparison is three-way and by content: a side changed when its
// record differs from the base, so a change tether wrote itself comes back
// equal to the base and is not echoed, and a quiet pair stays quiet. The
// decision is a pure function of its input (no clock, no map order), so
// the same code runs in steps, in workflow code and in an Update's
// validator.
package twoway

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tetherflow/tether/activities/connector"
)

// Side names one system of a two-way pair.
type Side string

// The two sides of a pair, as the integration declares them.
const (
	A Side = "a"
	B Side = "b"
)

// Other is the other side.
func (s Side) Other() Side {
	if s == A {
		return B
	}
	return A
}

// Valid reports whether s is A or B.
func (s Side) Valid() bool { return s == A || s == B }

// Record is a record's fields in the pair's shared shape (each side's
// record mapped to it), as JSON decodes them.
type Record = connector.Row

// Observed is what one side holds of the record now.
type Observed struct {
	// Record is the side's record in the shared shape; nil when the side
	// has none (never had it, or deleted it).
	Record Record
	// Deleted says the side deleted the record (a delete event, a
	// tombstone, or a record the side had and no longer has).
	Deleted bool
	// At is when the side last changed it, by the side's trusted
	// timestamp (updated_at, the delete's time): last writer wins
	// compares these.
	At time.Time
}

// Has reports whether the side holds the record.
func (o *Observed) Has() bool { return o != nil && !o.Deleted && o.Record != nil }

// Pair is one record as the two sides and the last synced state hold it.
type Pair struct {
	// Base is the record as it was when the pair was last in sync; nil
	// before the first sync of the record.
	Base Record
	// A and B are what each side holds now; nil means the side has no
	// record and never had one since the base.
	A, B *Observed
}

// The conflict policies (Policy.Kind).
const (
	// LastWriterWins takes the whole record of the side whose trusted
	// timestamp is later; TieBreak decides equal ones.
	LastWriterWins = "last_writer_wins"
	// FieldOwner takes each field from the side that owns it (Owners);
	// the other fields are merged, Fallback deciding those both sides
	// changed.
	FieldOwner = "field_owner"
	// Merge keeps the edits of both sides to different fields; Fallback
	// decides a field both sides changed differently.
	Merge = "merge"
	// Custom asks the integration's Go resolver.
	Custom = "custom"
	// Manual parks the record until a person resolves it.
	Manual = "manual"
)

// The delete policies (Policy.Deletes).
const (
	// Propagate deletes the record on the other side.
	Propagate = "propagate"
	// Tombstone marks the record deleted on the other side instead.
	Tombstone = "tombstone"
	// DeleteConflicts treats a delete on one side against an edit on the
	// other as a conflict, resolved by the conflict policy (a merge or
	// field-owner policy uses its Fallback: a delete has no fields to
	// merge); a delete against no edit is propagated.
	DeleteConflicts = "conflict"
)

// Resolver is a custom resolution, in Go: given the conflict it returns
// the record both sides must hold, or nil to delete it on both.
type Resolver func(c Conflict) (Record, error)

// Policy is how an integration resolves conflicts and deletes.
type Policy struct {
	Kind string
	// Owners names the side that owns each field (FieldOwner).
	Owners map[string]Side
	// Fallback decides a field both sides changed differently under Merge
	// and FieldOwner, and a delete against an edit under those:
	// LastWriterWins, Manual, or a side ("a", "b") that wins.
	Fallback string
	// TieBreak wins when both trusted timestamps are equal (default A).
	TieBreak Side
	// Deletes is the delete policy (default Propagate).
	Deletes string
	// Resolver is the Custom resolution.
	Resolver Resolver
}

// Validate says what is wrong with p, naming the setting.
func (p Policy) Validate() error {
	switch p.Kind {
	case LastWriterWins, Merge, Manual:
	case FieldOwner:
		if len(p.Owners) == 0 {
			return fmt.Errorf("conflicts.owners: a field_owner policy names the side that owns each field it decides")
		}
		for _, f := range slices.Sorted(maps.Keys(p.Owners)) {
			if !p.Owners[f].Valid() {
				return fmt.Errorf("conflicts.owners.%s: %q is not a side (a or b)", f, p.Owners[f])
			}
		}
	case Custom:
		if p.Resolver == nil {
			return fmt.Errorf("conflicts: a custom policy needs a Go resolver (integration.Definition.TwoWay.Resolver)")
		}
	default:
		return fmt.Errorf("conflicts.policy: %q is not one of %s, %s, %s, %s, %s", p.Kind, LastWriterWins, FieldOwner, Merge, Custom, Manual)
	}
	switch p.Fallback {
	case "":
		if p.Kind == Merge || p.Kind == FieldOwner {
			return fmt.Errorf("conflicts.fallback: a %s policy says who wins a field both sides changed: %s, %s, a or b", p.Kind, LastWriterWins, Manual)
		}
	case LastWriterWins, Manual, string(A), string(B):
	default:
		return fmt.Errorf("conflicts.fallback: %q is not one of %s, %s, a, b", p.Fallback, LastWriterWins, Manual)
	}
	if p.TieBreak != "" && !p.TieBreak.Valid() {
		return fmt.Errorf("conflicts.tie_break: %q is not a side (a or b)", p.TieBreak)
	}
	switch p.Deletes {
	case "", Propagate, Tombstone, DeleteConflicts:
	default:
		return fmt.Errorf("deletes: %q is not one of %s, %s, %s", p.Deletes, Propagate, Tombstone, DeleteConflicts)
	}
	return nil
}

// Conflict is a record both sides changed since the base, differently.
type Conflict struct {
	Base, A, B         Record
	ADeleted, BDeleted bool
	AAt, BAt           time.Time
	// Fields are the fields both sides changed, to different values
	// (sorted); empty for a delete against an edit.
	Fields []string
}

// Outcome is what to do with the record.
type Outcome struct {
	// Result is the record both sides hold after the writes, the next
	// base; nil when the record is deleted on both.
	Result Record
	// Write lists the sides to write Result to (created when they have no
	// record), Delete those to delete it from, Tombstone those to mark it
	// deleted on: a side that already holds Result is never written.
	Write, Delete, Tombstone []Side
	// Changed lists the sides whose record differs from the base.
	Changed []Side
	// Conflict is set when both sides changed the record differently.
	Conflict *Conflict
	// Resolution says how the conflict was resolved: the policy, and the
	// winning side or "merge".
	Resolution string
	// Parked says the record waits for a person (manual): nothing is
	// written and the base stays.
	Parked bool
}

// Quiet reports whether the outcome writes nothing.
func (o Outcome) Quiet() bool {
	return len(o.Write)+len(o.Delete)+len(o.Tombstone) == 0 && !o.Parked
}

// Resolve decides what to do with the pair under p.
func Resolve(pr Pair, p Policy) (Outcome, error) {
	changedA, changedB := changed(pr.Base, pr.A), changed(pr.Base, pr.B)
	var out Outcome
	if changedA {
		out.Changed = append(out.Changed, A)
	}
	if changedB {
		out.Changed = append(out.Changed, B)
	}
	switch {
	case !changedA && !changedB:
		out.Result = pr.Base
		if pr.Base == nil {
			out.Result = first(pr.A, pr.B)
		}
		return out.settle(pr, p), nil
	case changedA != changedB:
		from := A
		if changedB {
			from = B
		}
		out.Result = pr.side(from).Record
		if !pr.side(from).Has() {
			out.Result = nil
		}
		return out.settle(pr, p), nil
	}
	// Both changed.
	a, b := pr.A, pr.B
	if a.Has() == b.Has() && (!a.Has() || equal(a.Record, b.Record)) {
		// The same edit, or a delete, on both: nothing to resolve.
		out.Result = nil
		if a.Has() {
			out.Result = a.Record
		}
		return out.settle(pr, p), nil
	}
	c := &Conflict{Base: pr.Base, ADeleted: !a.Has(), BDeleted: !b.Has(), AAt: a.At, BAt: b.At}
	if a.Has() {
		c.A = a.Record
	}
	if b.Has() {
		c.B = b.Record
	}
	if a.Has() && b.Has() {
		c.Fields = bothChanged(pr.Base, a.Record, b.Record)
	}
	out.Conflict = c
	if !a.Has() || !b.Has() { // a delete against an edit
		switch p.Deletes {
		case "", Propagate, Tombstone:
			out.Result, out.Resolution = nil, "delete ("+deletesOf(p)+")"
			return out.settle(pr, p), nil
		}
	}
	res, how, parked, err := p.resolve(c)
	if err != nil {
		return Outcome{}, err
	}
	if parked {
		out.Parked, out.Resolution = true, Manual
		return out, nil
	}
	out.Result, out.Resolution = res, how
	return out.settle(pr, p), nil
}

// resolve applies the conflict policy to c.
func (p Policy) resolve(c *Conflict) (res Record, how string, parked bool, err error) {
	deleteVsEdit := c.ADeleted || c.BDeleted
	switch {
	case p.Kind == Manual:
		return nil, "", true, nil
	case p.Kind == LastWriterWins:
		w := p.later(c)
		return c.of(w), LastWriterWins + ": " + string(w), false, nil
	case p.Kind == Custom:
		r, err := p.Resolver(*c)
		if err != nil {
			return nil, "", false, fmt.Errorf("custom resolver: %w", err)
		}
		return r, Custom, false, nil
	case deleteVsEdit: // merge, field owner: a delete has no fields
		return p.fallback(c, func(w Side) (Record, string) { return c.of(w), p.Kind + ", " + fallbackName(p, w) })
	}
	// Merge, or field owner: field by field.
	out := Record{}
	parkedField := false
	for _, f := range unionKeys(c.Base, c.A, c.B) {
		va, inA := c.A[f]
		vb, inB := c.B[f]
		vbase, inBase := c.Base[f]
		if owner, ok := p.Owners[f]; ok && p.Kind == FieldOwner {
			v, in := va, inA
			if owner == B {
				v, in = vb, inB
			}
			if in {
				out[f] = v
			}
			continue
		}
		chA := inA != inBase || (inA && !equal(va, vbase))
		chB := inB != inBase || (inB && !equal(vb, vbase))
		switch {
		case chA && chB && (inA != inB || (inA && !equal(va, vb))):
			w, park := p.fallbackSide(c)
			if park {
				parkedField = true
				continue
			}
			v, in := va, inA
			if w == B {
				v, in = vb, inB
			}
			if in {
				out[f] = v
			}
		case chA:
			if inA {
				out[f] = va
			}
		case chB:
			if inB {
				out[f] = vb
			}
		case inBase:
			out[f] = vbase
		}
	}
	if parkedField {
		return nil, "", true, nil
	}
	return out, p.Kind + ": merge", false, nil
}

// fallback resolves c as a whole by the Fallback rule.
func (p Policy) fallback(c *Conflict, take func(Side) (Record, string)) (Record, string, bool, error) {
	w, park := p.fallbackSide(c)
	if park {
		return nil, "", true, nil
	}
	r, how := take(w)
	return r, how, false, nil
}

// fallbackSide is the side the Fallback rule picks, or park.
func (p Policy) fallbackSide(c *Conflict) (Side, bool) {
	switch p.Fallback {
	case Manual:
		return "", true
	case string(A), string(B):
		return Side(p.Fallback), false
	default:
		return p.later(c), false
	}
}

func fallbackName(p Policy, w Side) string {
	if p.Fallback == LastWriterWins {
		return LastWriterWins + ": " + string(w)
	}
	return "fallback: " + string(w)
}

// later is the side whose trusted timestamp is later; the tie-break side
// when they are equal.
func (p Policy) later(c *Conflict) Side {
	switch {
	case c.AAt.After(c.BAt):
		return A
	case c.BAt.After(c.AAt):
		return B
	case p.TieBreak != "":
		return p.TieBreak
	default:
		return A
	}
}

// of is side w's record in c (nil when it deleted it).
func (c *Conflict) of(w Side) Record {
	if w == A {
		return c.A
	}
	return c.B
}

func deletesOf(p Policy) string {
	if p.Deletes == "" {
		return Propagate
	}
	return p.Deletes
}

// settle fills in the writes that bring both sides to out.Result: a side
// that already holds it is left alone.
func (out Outcome) settle(pr Pair, p Policy) Outcome {
	for _, s := range []Side{A, B} {
		o := pr.side(s)
		switch {
		case out.Result != nil && (!o.Has() || !equal(o.Record, out.Result)):
			out.Write = append(out.Write, s)
		case out.Result == nil && o.Has():
			if p.Deletes == Tombstone {
				out.Tombstone = append(out.Tombstone, s)
			} else {
				out.Delete = append(out.Delete, s)
			}
		}
	}
	return out
}

func (pr Pair) side(s Side) *Observed {
	if s == A {
		return pr.A
	}
	return pr.B
}

// changed reports whether o differs from base: a record the base does not
// have, a record deleted since the base, or different content.
func changed(base Record, o *Observed) bool {
	switch {
	case base == nil:
		return o.Has()
	case !o.Has():
		return o != nil && o.Deleted
	default:
		return !equal(base, o.Record)
	}
}

// first is the record of the first side that has one.
func first(os ...*Observed) Record {
	for _, o := range os {
		if o.Has() {
			return o.Record
		}
	}
	return nil
}

// bothChanged lists the fields a and b both changed since base, to
// different values.
func bothChanged(base, a, b Record) []string {
	var out []string
	for _, f := range unionKeys(base, a, b) {
		va, inA := a[f]
		vb, inB := b[f]
		vbase, inBase := base[f]
		chA := inA != inBase || (inA && !equal(va, vbase))
		chB := inB != inBase || (inB && !equal(vb, vbase))
		if chA && chB && (inA != inB || (inA && !equal(va, vb))) {
			out = append(out, f)
		}
	}
	return out
}

func unionKeys(rs ...Record) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rs {
		for k := range r {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}
