package schema

import (
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

const idSchema = `{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}`

func TestRegistry_Add(t *testing.T) {
	reg, err := NewRegistry(fstest.MapFS{"contacts.schema.json": {Data: []byte(`{"type": "object"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Add("ids.json@1", []byte(idSchema)); err != nil {
		t.Fatalf("Add: %v", err)
	}
	v, err := reg.Get("ids.json@1")
	if err != nil {
		t.Fatal(err)
	}
	if errs := v.Validate(mustDecode(t, `{"id": "x"}`)); len(errs) != 1 || errs[0].Pointer != "/id" {
		t.Errorf("Validate = %v, want one error at /id", errs)
	}
	if err := reg.Add("ids.json@1", []byte(idSchema)); err != nil {
		t.Errorf("adding the same document again: %v", err)
	}

	tests := []struct {
		name    string
		give    string
		doc     string
		wantErr string
	}{
		{name: "another document under an added name", give: "ids.json@1", doc: `{"type": "string"}`, wantErr: "already registered with another document"},
		{name: "a name from the directory", give: "contacts.schema.json", doc: `{"type": "object"}`, wantErr: "already registered"},
		{name: "not JSON", give: "bad.json", doc: "{\n", wantErr: "schema bad.json: not valid JSON"},
		{name: "not a schema", give: "bad.json", doc: `{"type": "int"}`, wantErr: "schema bad.json: not a valid schema for its draft"},
		{name: "a reference to another file", give: "ref.json", doc: `{"$ref": "contacts.schema.json"}`, wantErr: "cannot load contacts.schema.json"},
		{name: "empty name", give: "", doc: `{}`, wantErr: "empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reg.Add(tt.give, []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Add(%q) error = %v, want one containing %q", tt.give, err, tt.wantErr)
			}
		})
	}
	if got := strings.Join(reg.Names(), ","); got != "contacts.schema.json,ids.json@1" {
		t.Errorf("Names() = %s", got)
	}
}

func TestRegistry_AddWhileValidating(t *testing.T) {
	reg, err := NewRegistry(fstest.MapFS{"a.json": {Data: []byte(idSchema)}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if i%2 == 0 {
					_ = reg.Add(strings.Repeat("x", i+1)+string(rune('a'+j%26)), []byte(idSchema))
					continue
				}
				if _, err := reg.Get("a.json"); err != nil {
					t.Error(err)
				}
				_ = reg.Names()
			}
		}()
	}
	wg.Wait()
}
