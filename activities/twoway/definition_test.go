package twoway

import (
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
