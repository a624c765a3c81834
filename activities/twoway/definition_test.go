package twoway

import (
	"fmt"
	"strings"
	"testing"
)

// TestDefinition_ValidateSides: each side is exactly one of a table, an
// API or a kind registered in Go, a registered kind lists its shared
// fields, and both sides share the same fields; every problem names its
// setting.
func TestDefinition_ValidateSides(t *testing.T) {
	table := SideSpec{Name: "app", Postgres: &PostgresSide{Table: "accounts", Key: "id", UpdatedAt: "updated_at",
		Fields: map[string]string{"email": "email", "name": "name"}}}
	for _, tc := range []struct {
		name string
		b    SideSpec
		want string // "" for valid
	}{
		{"a registered kind", SideSpec{Name: "crm", Kind: "crm-api", Shared: []string{"email", "name"}}, ""},
		{"no system", SideSpec{Name: "crm"}, "b: set exactly one of postgres, http and kind"},
		{"two systems", SideSpec{Name: "crm", Kind: "crm-api", HTTP: &HTTPSide{}, Shared: []string{"email", "name"}}, "b: set exactly one of postgres, http and kind"},
		{"no shared fields", SideSpec{Name: "crm", Kind: "crm-api"}, `b.shared: list the shared fields the crm-api side maps`},
		{"a field the other side lacks", SideSpec{Name: "crm", Kind: "crm-api", Shared: []string{"email", "name", "phone"}}, `a.fields: shared field "phone" of b has no member on a`},
		{"a cast of a field not shared", SideSpec{Name: "crm", Kind: "crm-api", Shared: []string{"email", "name"}, Casts: map[string]string{"plan": "cents"}}, "b.casts.plan: not a shared field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Definition{Name: "accounts-crm", A: table, B: tc.b, Policy: Policy{Kind: LastWriterWins}}.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v; want one naming %q", err, tc.want)
			}
		})
	}
}

// TestRegistry_Replace: a new set of integrations replaces the current one
// only when every definition is valid, and says what was added, changed
// and removed; a changed integration's sides are opened again.
func TestRegistry_Replace(t *testing.T) {
	def := func(name, owner string) Definition {
		return Definition{Name: name, Policy: Policy{Kind: LastWriterWins},
			A: SideSpec{Name: "app", Kind: "k", Shared: []string{"email", owner}},
			B: SideSpec{Name: "crm", Kind: "k", Shared: []string{"email", owner}}}
	}
	r, err := NewRegistry(def("one", "name"), def("two", "name"))
	if err != nil {
		t.Fatal(err)
	}
	_, gen1, _ := r.current("one")
	ch, err := r.Replace(nil, def("one", "plan"), def("three", "name"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ch.Added, ch.Changed, ch.Removed); got != "[three] [one] [two]" {
		t.Errorf("changes %s, want [three] [one] [two]", got)
	}
	if _, gen2, _ := r.current("one"); gen2 == gen1 {
		t.Errorf("a changed integration kept its generation %d", gen1)
	}
	if _, err := r.Get("two"); err == nil {
		t.Error("a removed integration is still there")
	}
	if ch, err := r.Replace(nil, def("one", "plan"), def("three", "name")); err != nil || !ch.Empty() {
		t.Errorf("the same set again: %+v, %v; want no change", ch, err)
	}
	bad := def("one", "plan")
	bad.B.Shared = []string{"email"}
	if _, err := r.Replace(nil, bad); err == nil || !strings.Contains(err.Error(), `shared field "plan" of a has no member on b`) {
		t.Errorf("an invalid set: %v", err)
	}
	if names := r.Names(); fmt.Sprint(names) != "[one three]" {
		t.Errorf("after an invalid set the registry holds %v, want the last good [one three]", names)
	}
}
