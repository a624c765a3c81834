package schemas

import (
	"encoding/json"
	"io/fs"
	"reflect"
	"testing"
)

func TestFS(t *testing.T) {
	names, err := fs.Glob(FS(), "*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"companies.schema.json", "contacts.schema.json"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("schema files = %v, want %v", names, want)
	}
	tests := []struct {
		give       string
		wantSchema string
	}{
		{give: "contacts.schema.json", wantSchema: "https://json-schema.org/draft/2020-12/schema"},
		{give: "companies.schema.json", wantSchema: "http://json-schema.org/draft-07/schema#"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			raw, err := fs.ReadFile(FS(), tt.give)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Schema      string `json:"$schema"`
				Description string `json:"description"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Schema != tt.wantSchema {
				t.Errorf("$schema = %q, want %q", doc.Schema, tt.wantSchema)
			}
			if doc.Description == "" {
				t.Error("no description")
			}
		})
	}
}
