package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"strconv"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

func TestFS(t *testing.T) {
	names, err := fs.Glob(FS(), "*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"companies.schema.json", "contacts-table.schema.json", "contacts.schema.json"}
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

func TestFS_LeavesOutTheIntegrationFileSchema(t *testing.T) {
	if _, err := fs.ReadFile(FS(), IntegrationFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FS() serves %s (err %v): it is not a record schema", IntegrationFile, err)
	}
	if _, err := fs.Stat(FS(), IntegrationFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(%s) err = %v, want ErrNotExist", IntegrationFile, err)
	}
}

// TestIntegration checks the integration file schema is a valid draft
// 2020-12 schema that closes every object, so typos are caught. What it
// accepts and refuses is tested in activities/integration/declarative.
func TestIntegration(t *testing.T) {
	raw := Integration()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", doc["$schema"])
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("https://tetherflow.dev/schemas/"+IntegrationFile, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compile("https://tetherflow.dev/schemas/" + IntegrationFile); err != nil {
		t.Fatalf("does not compile: %v", err)
	}
	// Every object type with properties is closed.
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["properties"].(map[string]any); ok && x["type"] == "object" {
				if x["additionalProperties"] != false {
					t.Errorf("%s has properties but is not closed (additionalProperties: false)", p)
				}
			}
			for k, c := range x {
				walk(p+"/"+k, c)
			}
		case []any:
			for i, c := range x {
				walk(p+"/"+strconv.Itoa(i), c)
			}
		}
	}
	walk("", doc)
}
