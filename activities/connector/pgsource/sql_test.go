package pgsource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildQueries_Golden pins the SQL built for representative configs.
// Regenerate with UPDATE_GOLDEN=1 go test ./activities/connector/pgsource -run Golden
// and review the diff.
func TestBuildQueries_Golden(t *testing.T) {
	t.Parallel()
	info := tableInfo{kind: "r", columns: map[string]column{
		"tenant":     {name: "tenant", typ: "text", category: "S", collatable: true, notNull: true},
		"id":         {name: "id", typ: "bigint", category: "N", notNull: true},
		"code":       {name: "code", typ: "character varying", category: "S", collatable: true, notNull: true},
		"name":       {name: "name", typ: "text", category: "S", collatable: true},
		"updated_at": {name: "updated_at", typ: "timestamp with time zone", category: "D", notNull: true},
	}}
	tests := []struct {
		name string
		give Config
		file string
	}{
		{
			name: "full read, composite key, columns, where, schema",
			give: Config{Schema: "crm", Table: "Contacts", Key: []string{"tenant", "id"},
				Columns: []string{"tenant", "id", "name"}, Where: "deleted_at IS NULL -- live rows"},
			file: "full_composite.golden",
		},
		{
			name: "incremental, every column",
			give: Config{Table: "events", Key: []string{"id"}, CursorColumn: "updated_at"},
			file: "incremental.golden",
		},
		{
			name: "incremental, text key compared byte-wise",
			give: Config{Table: "codes", Key: []string{"code"}, CursorColumn: "updated_at", Where: "tenant = 'acme'"},
			file: "incremental_text_key.golden",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := buildQueries(tt.give, info)
			var b strings.Builder
			for _, s := range []struct{ name, sql string }{{"first", q.first}, {"after", q.after}, {"from", q.from}} {
				if s.sql == "" {
					continue
				}
				b.WriteString("-- " + s.name + "\n" + s.sql + ";\n\n")
			}
			got := b.String()
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
