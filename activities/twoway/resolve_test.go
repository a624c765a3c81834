package twoway

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
	t2 = t0.Add(2 * time.Minute)
)

func rec(kv ...any) Record {
	r := Record{}
	for i := 0; i < len(kv); i += 2 {
		r[kv[i].(string)] = kv[i+1]
	}
	return r
}

func at(r Record, when time.Time) *Observed { return &Observed{Record: r, At: when} }
func gone(when time.Time) *Observed         { return &Observed{Deleted: true, At: when} }

var base = rec("name", "Ada", "email", "ada@example.com", "balance", json.Number("10"))

func TestResolve(t *testing.T) {
	lww := Policy{Kind: LastWriterWins}
	merge := func(fallback string) Policy { return Policy{Kind: Merge, Fallback: fallback} }
	tests := []struct {
		name   string
		pair   Pair
		policy Policy
		// want: the result, the writes, deletes and tombstones, parked,
		// and the conflict's fields (nil: no conflict).
		result           Record
		write, del, tomb []Side
		parked           bool
		conflictFields   []string
		resolution       string
	}{
		{name: "quiet pair: nothing written", policy: lww,
			pair:   Pair{Base: base, A: at(base, t0), B: at(base, t0)},
			result: base},
		{name: "our own write comes back (numbers as the other side spells them): no echo", policy: lww,
			pair:   Pair{Base: base, A: at(base, t0), B: at(rec("name", "Ada", "email", "ada@example.com", "balance", 10.0), t1)},
			result: base},
		{name: "an edit on one side goes to the other", policy: lww,
			pair:   Pair{Base: base, A: at(rec("name", "Ada L", "email", "ada@example.com", "balance", json.Number("10")), t1), B: at(base, t0)},
			result: rec("name", "Ada L", "email", "ada@example.com", "balance", json.Number("10")), write: []Side{B}},
		{name: "last writer wins: B later", policy: lww,
			pair:   Pair{Base: base, A: at(rec("name", "Ada A", "email", "ada@example.com", "balance", 10), t1), B: at(rec("name", "Ada B", "email", "ada@example.com", "balance", 10), t2)},
			result: rec("name", "Ada B", "email", "ada@example.com", "balance", 10), write: []Side{A},
			conflictFields: []string{"name"}, resolution: "last_writer_wins: b"},
		{name: "last writer wins: a tie goes to the tie-break side", policy: Policy{Kind: LastWriterWins, TieBreak: B},
			pair:   Pair{Base: base, A: at(rec("name", "Ada A"), t1), B: at(rec("name", "Ada B"), t1)},
			result: rec("name", "Ada B"), write: []Side{A},
			conflictFields: []string{"name"}, resolution: "last_writer_wins: b"},
		{name: "field owner: email from A, balance from B, the rest merged", policy: Policy{Kind: FieldOwner, Owners: map[string]Side{"email": A, "balance": B}, Fallback: LastWriterWins},
			pair: Pair{Base: base,
				A: at(rec("name", "Ada A", "email", "a@example.com", "balance", 11), t2),
				B: at(rec("name", "Ada", "email", "b@example.com", "balance", 12), t1)},
			result: rec("name", "Ada A", "email", "a@example.com", "balance", 12), write: []Side{A, B},
			conflictFields: []string{"balance", "email"}, resolution: "field_owner: merge"},
		{name: "merge: edits to different fields both survive", policy: merge(Manual),
			pair: Pair{Base: base,
				A: at(rec("name", "Ada A", "email", "ada@example.com", "balance", 10), t1),
				B: at(rec("name", "Ada", "email", "ada@example.com", "balance", 99), t2)},
			result: rec("name", "Ada A", "email", "ada@example.com", "balance", 99), write: []Side{A, B},
			conflictFields: []string{}, resolution: "merge: merge"},
		{name: "merge: the same field falls back to a side", policy: merge("b"),
			pair: Pair{Base: base,
				A: at(rec("name", "Ada A", "email", "ada@example.com", "balance", 5), t2),
				B: at(rec("name", "Ada B", "email", "ada@example.com", "balance", 10), t1)},
			result: rec("name", "Ada B", "email", "ada@example.com", "balance", 5), write: []Side{A, B},
			conflictFields: []string{"name"}, resolution: "merge: merge"},
		{name: "merge: the same field falls back to a person", policy: merge(Manual),
			pair: Pair{Base: base,
				A: at(rec("name", "Ada A", "email", "ada@example.com", "balance", 10), t2),
				B: at(rec("name", "Ada B", "email", "ada@example.com", "balance", 10), t1)},
			parked: true, conflictFields: []string{"name"}},
		{name: "merge: a field one side removed is removed", policy: merge(LastWriterWins),
			pair: Pair{Base: base,
				A: at(rec("name", "Ada", "email", "ada@example.com"), t1),
				B: at(rec("name", "Ada B", "email", "ada@example.com", "balance", 10), t1)},
			result: rec("name", "Ada B", "email", "ada@example.com"), write: []Side{A, B},
			conflictFields: []string{}, resolution: "merge: merge"},
		{name: "custom resolver", policy: Policy{Kind: Custom, Resolver: func(c Conflict) (Record, error) {
			return rec("name", fmt.Sprint(c.A["name"], "+", c.B["name"])), nil
		}},
			pair:   Pair{Base: base, A: at(rec("name", "A"), t1), B: at(rec("name", "B"), t2)},
			result: rec("name", "A+B"), write: []Side{A, B}, conflictFields: []string{"name"}, resolution: "custom"},
		{name: "manual: parked, nothing written", policy: Policy{Kind: Manual},
			pair:   Pair{Base: base, A: at(rec("name", "A"), t1), B: at(rec("name", "B"), t2)},
			parked: true, conflictFields: []string{"name"}},
		{name: "the same edit on both sides: no conflict, nothing written", policy: Policy{Kind: Manual},
			pair:   Pair{Base: base, A: at(rec("name", "Z"), t1), B: at(rec("name", "Z"), t2)},
			result: rec("name", "Z")},
		{name: "a delete propagates", policy: lww,
			pair: Pair{Base: base, A: gone(t1), B: at(base, t0)},
			del:  []Side{B}},
		{name: "a delete becomes a tombstone", policy: Policy{Kind: LastWriterWins, Deletes: Tombstone},
			pair: Pair{Base: base, A: at(base, t0), B: gone(t1)},
			tomb: []Side{A}},
		{name: "deleted on both: nothing to do", policy: lww,
			pair: Pair{Base: base, A: gone(t1), B: gone(t2)}},
		{name: "a delete against an edit, propagated: the delete wins", policy: lww,
			pair: Pair{Base: base, A: gone(t1), B: at(rec("name", "B"), t2)},
			del:  []Side{B}, conflictFields: []string{}, resolution: "delete (propagate)"},
		{name: "a delete against a later edit, as a conflict, last writer wins: the edit comes back", policy: Policy{Kind: LastWriterWins, Deletes: DeleteConflicts},
			pair:   Pair{Base: base, A: gone(t1), B: at(rec("name", "B"), t2)},
			result: rec("name", "B"), write: []Side{A}, conflictFields: []string{}, resolution: "last_writer_wins: b"},
		{name: "a delete against an edit, as a conflict, merge falls back to a person", policy: Policy{Kind: Merge, Fallback: Manual, Deletes: DeleteConflicts},
			pair:   Pair{Base: base, A: at(rec("name", "A"), t2), B: gone(t1)},
			parked: true, conflictFields: []string{}},
		{name: "created on A before the first sync: created on B", policy: lww,
			pair:   Pair{A: at(base, t0)},
			result: base, write: []Side{B}},
		{name: "created on both before the first sync, the same: linked, nothing written", policy: lww,
			pair:   Pair{A: at(base, t0), B: at(rec("balance", 10.0, "email", "ada@example.com", "name", "Ada"), t1)},
			result: base},
		{name: "created on both before the first sync, different: the fields both hold differently conflict", policy: merge("a"),
			pair:   Pair{A: at(rec("name", "Ada", "email", "ada@example.com"), t0), B: at(rec("name", "Ada L", "email", "ada@example.com", "phone", "1"), t1)},
			result: rec("name", "Ada", "email", "ada@example.com", "phone", "1"), write: []Side{A, B},
			conflictFields: []string{"name"}, resolution: "merge: merge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.pair, tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got.Result, tt.result) && !(got.Result == nil && tt.result == nil) {
				t.Errorf("result %v, want %v", got.Result, tt.result)
			}
			if !slices.Equal(got.Write, tt.write) || !slices.Equal(got.Delete, tt.del) || !slices.Equal(got.Tombstone, tt.tomb) {
				t.Errorf("write %v delete %v tombstone %v, want %v %v %v", got.Write, got.Delete, got.Tombstone, tt.write, tt.del, tt.tomb)
			}
			if got.Parked != tt.parked {
				t.Errorf("parked %v, want %v", got.Parked, tt.parked)
			}
			if got.Parked && got.Quiet() {
				t.Errorf("a parked record counts as quiet")
			}
			switch {
			case tt.conflictFields == nil && got.Conflict != nil:
				t.Errorf("a conflict %+v, want none", got.Conflict)
			case tt.conflictFields != nil && got.Conflict == nil:
				t.Errorf("no conflict, want one on %v", tt.conflictFields)
			case got.Conflict != nil && strings.Join(got.Conflict.Fields, ",") != strings.Join(tt.conflictFields, ","):
				t.Errorf("conflict on %v, want %v", got.Conflict.Fields, tt.conflictFields)
			}
			if got.Resolution != tt.resolution && !(got.Parked && got.Resolution == Manual) {
				t.Errorf("resolution %q, want %q", got.Resolution, tt.resolution)
			}
			// Applying the outcome and looking again is quiet: no echo.
			if got.Parked {
				return
			}
			after := Pair{Base: got.Result}
			for _, s := range []Side{A, B} {
				o := tt.pair.side(s)
				switch {
				case slices.Contains(got.Write, s):
					o = at(got.Result, t2)
				case slices.Contains(got.Delete, s), slices.Contains(got.Tombstone, s):
					o = nil
				}
				if s == A {
					after.A = o
				} else {
					after.B = o
				}
			}
			if again, err := Resolve(after, tt.policy); err != nil || !again.Quiet() {
				t.Errorf("after the writes the pair is not quiet: %+v, %v", again, err)
			}
		})
	}
}

func TestResolve_CustomResolverErrorStopsTheRecord(t *testing.T) {
	p := Policy{Kind: Custom, Resolver: func(Conflict) (Record, error) { return nil, errors.New("no rule for VIP accounts") }}
	_, err := Resolve(Pair{Base: base, A: at(rec("name", "A"), t1), B: at(rec("name", "B"), t2)}, p)
	if err == nil || !strings.Contains(err.Error(), "custom resolver: no rule for VIP accounts") {
		t.Errorf("error %v", err)
	}
}

func TestPolicy_Validate(t *testing.T) {
	for _, tt := range []struct {
		p    Policy
		want string
	}{
		{Policy{Kind: LastWriterWins}, ""},
		{Policy{Kind: Merge, Fallback: "a", Deletes: DeleteConflicts}, ""},
		{Policy{Kind: FieldOwner, Owners: map[string]Side{"email": A}, Fallback: Manual}, ""},
		{Policy{Kind: "newest"}, `conflicts.policy: "newest" is not one of`},
		{Policy{Kind: Merge}, "conflicts.fallback: a merge policy says who wins"},
		{Policy{Kind: Merge, Fallback: "crm"}, `conflicts.fallback: "crm" is not one of`},
		{Policy{Kind: FieldOwner, Fallback: Manual}, "conflicts.owners: a field_owner policy names"},
		{Policy{Kind: FieldOwner, Owners: map[string]Side{"email": "crm"}, Fallback: Manual}, `conflicts.owners.email: "crm" is not a side`},
		{Policy{Kind: Custom}, "a custom policy needs a Go resolver"},
		{Policy{Kind: LastWriterWins, TieBreak: "c"}, `conflicts.tie_break: "c" is not a side`},
		{Policy{Kind: LastWriterWins, Deletes: "ignore"}, `deletes: "ignore" is not one of propagate, tombstone, conflict`},
	} {
		err := tt.p.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: Validate() = %v, want %q", tt.p, err, tt.want)
		}
	}
}

func TestEqual_NumbersByValueObjectsWhateverTheirOrder(t *testing.T) {
	for _, c := range []struct {
		a, b any
		want bool
	}{
		{1, 1.0, true},
		{json.Number("1.0"), int64(1), true},
		{json.Number("9007199254740993"), json.Number("9007199254740993"), true},
		{json.Number("9007199254740993"), json.Number("9007199254740992"), false},
		{map[string]any{"a": 1, "b": []any{"x"}}, Record{"b": []any{"x"}, "a": 1.0}, true},
		{"1", 1, false},
		{nil, false, false},
	} {
		if got := equal(c.a, c.b); got != c.want {
			t.Errorf("equal(%#v, %#v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
