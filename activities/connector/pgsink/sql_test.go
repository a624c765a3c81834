package pgsink

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStatements_Golden pins the SQL generated for a representative table.
// Regenerate with UPDATE_GOLDEN=1 go test ./activities/connector/pgsink -run Golden
// and review the diff.
func TestStatements_Golden(t *testing.T) {
	tests := []struct {
		name string
		give Table
		file string
	}{
		{
			name: "composite key, version column, schema",
			give: Table{
				Schema: "crm",
				Name:   "Contacts",
				Columns: []Column{
					{Name: "tenant", Type: TypeText, NotNull: true},
					{Name: "id", Type: TypeBigint, NotNull: true},
					{Name: "email", Type: TypeText, NotNull: true},
					{Name: "tags", Type: TypeTextArray},
					{Name: "attrs", Type: TypeJSONB},
					{Name: "updated_at", Type: TypeTimestamptz},
				},
				Key:           []string{"tenant", "id"},
				VersionColumn: "updated_at",
			},
			file: "contacts.golden",
		},
		{
			name: "key only",
			give: Table{Name: "tags", Columns: []Column{{Name: "tag", Type: TypeText}}, Key: []string{"tag"}},
			file: "key_only.golden",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewTableWriter(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			got := s.sql.golden()
			path := filepath.Join("testdata", tt.file)
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (UPDATE_GOLDEN=1 creates it): %v", err)
			}
			if got != string(want) {
				t.Errorf("generated SQL differs from %s (UPDATE_GOLDEN=1 to accept):\n%s", path, got)
			}
		})
	}
}
