package twoway

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestComputed_JoinsAndSplitsBack: a shared name is made of a side's
// first and last name when read, split back when written, and checked to
// make the same name again; a value it cannot make parks its record.
func TestComputed_JoinsAndSplitsBack(t *testing.T) {
	inner := &memEndpoint{feed: []Change{
		{Key: "1", Record: Record{"first": "Ada", "last": "Lovelace", "email": "ada@x"}},
		{Key: "2", Record: Record{"first": nil, "last": nil, "email": "nn@x"}},
		{Key: "3", Record: Record{"first": 7, "last": "Seven", "email": "7@x"}},
	}}
	e, err := withCasts(inner, map[string]Computed{"name": {Compute: "join", From: []string{"first", "last"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []Change
	if err := e.Changes(context.Background(), "", "", func(p []Change) error { got = p; return nil }); err != nil {
		t.Fatal(err)
	}
	if !Equal(got[0].Record, Record{"name": "Ada Lovelace", "email": "ada@x"}) || got[0].Invalid != "" {
		t.Errorf("record 1 read as %+v (invalid %q)", got[0].Record, got[0].Invalid)
	}
	if !Equal(got[1].Record, Record{"name": nil, "email": "nn@x"}) || got[1].Invalid != "" {
		t.Errorf("record 2 read as %+v (invalid %q)", got[1].Record, got[1].Invalid)
	}
	if !strings.Contains(got[2].Invalid, "field name (from first, last): 7 is not text") {
		t.Errorf("record 3: invalid %q, want the reason", got[2].Invalid)
	}
	for _, tc := range []struct {
		name  any
		first any
		last  any
	}{
		{"Grace Hopper", "Grace", "Hopper"},
		{"Mary Ann Evans", "Mary", "Ann Evans"},
		{"Cher", "Cher", nil},
		{nil, nil, nil},
	} {
		if _, err := e.Put(context.Background(), "1", Record{"name": tc.name, "email": "x@x"}, "", ""); err != nil {
			t.Fatalf("write %v: %v", tc.name, err)
		}
		if !Equal(inner.put, Record{"first": tc.first, "last": tc.last, "email": "x@x"}) {
			t.Errorf("%v written as %+v", tc.name, inner.put)
		}
	}
	// A name that would not come back the same is not written.
	for _, bad := range []any{" Ada", "", 42} {
		if _, err := e.Put(context.Background(), "1", Record{"name": bad}, "", ""); err == nil || !strings.Contains(err.Error(), "field name") {
			t.Errorf("write %q: %v; want it refused, naming the field", bad, err)
		}
	}
}

// TestComputed_Validate: a computed field names a known compute and at
// least two of the side's fields, each used once; the side's shared
// fields are then its own less those, with the computed one.
func TestComputed_Validate(t *testing.T) {
	own := map[string]string{"email": "email", "first": "first_name", "last": "last_name", "nick": "nick"}
	for _, tc := range []struct {
		name     string
		computed map[string]Computed
		want     string
	}{
		{"unknown compute", map[string]Computed{"name": {Compute: "concat", From: []string{"first", "last"}}}, `computed.name.compute: no compute "concat" (known: join`},
		{"one part", map[string]Computed{"name": {Compute: "join", From: []string{"first"}}}, "computed.name.from: name at least two"},
		{"not the side's", map[string]Computed{"name": {Compute: "join", From: []string{"first", "middle"}}}, `computed.name.from: "middle" is not one of the side's fields`},
		{"a part twice", map[string]Computed{"name": {Compute: "join", From: []string{"first", "last"}}, "short": {Compute: "join", From: []string{"first", "nick"}}}, `computed.short.from: "first" makes name already`},
		{"a field of the side", map[string]Computed{"email": {Compute: "join", From: []string{"first", "last"}}}, "computed.email: is mapped as a field of the side too"},
	} {
		errs := checkComputed(tc.computed, own)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, errs, tc.want)
		}
	}
	if errs := checkComputed(map[string]Computed{"name": {Compute: "join", From: []string{"first", "last"}}}, own); len(errs) != 0 {
		t.Errorf("a good one refused: %v", errs)
	}
	side := SideSpec{Name: "crm", Kind: "crm-api", Shared: []string{"email", "first", "last"},
		Computed: map[string]Computed{"name": {Compute: "join", From: []string{"first", "last"}}}}
	if got := strings.Join(slices.Sorted(maps.Keys(side.Fields())), ","); got != "email,name" {
		t.Errorf("shared fields %s, want email,name", got)
	}
}
