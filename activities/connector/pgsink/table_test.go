package pgsink

import (
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// validTable is a table definition every test can start from.
func validTable() Table {
	return Table{
		Name: "items",
		Columns: []Column{
			{Name: "id", Type: TypeBigint, NotNull: true},
			{Name: "name", Type: TypeText},
			{Name: "updated_at", Type: TypeTimestamptz},
		},
		Key:           []string{"id"},
		VersionColumn: "updated_at",
	}
}

func TestTable_Validate(t *testing.T) {
	tests := []struct {
		name string
		give func(*Table)
		want []string // substrings of the error; none means valid
	}{
		{name: "valid", give: func(*Table) {}},
		{name: "valid with schema and composite key", give: func(t *Table) {
			t.Schema = "crm"
			t.Key = []string{"id", "name"}
			t.VersionColumn = ""
		}},
		{name: "every allowed type", give: func(t *Table) {
			for i, typ := range allowedTypes() {
				t.Columns = append(t.Columns, Column{Name: "c" + string(rune('a'+i)), Type: typ})
			}
		}},
		{name: "injection in name", give: func(t *Table) { t.Name = "name; drop table x" },
			want: []string{`name: "name; drop table x" is not a valid identifier`}},
		{name: "injection in schema", give: func(t *Table) { t.Schema = `public"; --` },
			want: []string{`schema: "public\"; --" is not a valid identifier`}},
		{name: "missing name", give: func(t *Table) { t.Name = "" }, want: []string{"name: is required"}},
		{name: "name too long", give: func(t *Table) { t.Name = strings.Repeat("a", 64) },
			want: []string{"name: "}},
		{name: "reserved name", give: func(t *Table) { t.Name = BeforeImagesTable },
			want: []string{"name: \"tether_before_images\" is reserved"}},
		{name: "bad column name", give: func(t *Table) { t.Columns[1].Name = "1st name" },
			want: []string{`columns[1].name: "1st name" is not a valid identifier`}},
		{name: "unknown type", give: func(t *Table) { t.Columns[1].Type = "varchar(10)" },
			want: []string{`columns[1].type: "varchar(10)" is not a supported type`}},
		{name: "type injection", give: func(t *Table) { t.Columns[1].Type = "text); drop table x; --" },
			want: []string{`columns[1].type:`}},
		{name: "duplicate column", give: func(t *Table) { t.Columns[2].Name = "name"; t.VersionColumn = "" },
			want: []string{`columns[2].name: duplicate column "name"`}},
		{name: "no columns", give: func(t *Table) { t.Columns = nil; t.VersionColumn = "" },
			want: []string{"columns: at least one column", `key[0]: "id" is not a declared column`}},
		{name: "no key", give: func(t *Table) { t.Key = nil }, want: []string{"key: at least one key column"}},
		{name: "undeclared key", give: func(t *Table) { t.Key = []string{"id", "sku"} },
			want: []string{`key[1]: "sku" is not a declared column`}},
		{name: "duplicate key", give: func(t *Table) { t.Key = []string{"id", "id"} },
			want: []string{`key[1]: duplicate key column "id"`}},
		{name: "undeclared version", give: func(t *Table) { t.VersionColumn = "version" },
			want: []string{`version_column: "version" is not a declared column`}},
		{name: "version in key", give: func(t *Table) { t.VersionColumn = "id" },
			want: []string{`version_column: "id" is a key column`}},
		{name: "anonymised on erasure", give: func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "email", Type: TypeText, NotNull: true})
			t.OnErase, t.Anonymise = EraseAnonymise, map[string]string{"email": "erased@invalid"}
		}},
		{name: "anonymise without its mode", give: func(t *Table) { t.Anonymise = map[string]string{"name": "x"} },
			want: []string{"anonymise: is used only with on_erase: anonymise"}},
		{name: "unknown erase mode", give: func(t *Table) { t.OnErase = "forget" },
			want: []string{`on_erase: "forget" is not one of delete, anonymise`}},
		{name: "anonymised NOT NULL column without a value, key or unknown column", give: func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "email", Type: TypeText, NotNull: true})
			t.OnErase, t.Anonymise = EraseAnonymise, map[string]string{"id": "0", "mail": "x"}
		}, want: []string{`anonymise.id: "id" is the key or the version`, `anonymise.mail: "mail" is not a declared column`,
			`anonymise: column "email" is NOT NULL: give the value`}},
		{name: "every problem at once", give: func(t *Table) {
			t.Name = "x y"
			t.Columns[0].Type = "int"
			t.Key = []string{"nope"}
		}, want: []string{`name: "x y"`, `columns[0].type: "int"`, `key[0]: "nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := validTable()
			tt.give(&tab)
			err := tab.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*Table)
		wantErr bool
	}{
		{name: "valid", give: func(*Table) {}},
		{name: "invalid is a permanent SinkSQLError", give: func(t *Table) { t.Name = "drop table" }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := validTable()
			tt.give(&tab)
			s, err := NewTableWriter(tab)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("New() = %v", err)
				}
				got := s.Table()
				got.Columns[0].Name = "changed" // a copy: the sink is unaffected
				if s.Table().Columns[0].Name != "id" {
					t.Errorf("Table() shares its columns with the sink")
				}
				return
			}
			if err == nil {
				t.Fatal("New() = nil error, want one")
			}
			if !failure.IsType(err, failure.TypeSinkSQL) || !failure.IsPermanent(err) {
				t.Errorf("New() = %v, want a permanent %s", err, failure.TypeSinkSQL)
			}
		})
	}
}
