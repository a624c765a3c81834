package schema

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestValidator_Reach(t *testing.T) {
	reg, err := NewRegistry(fstest.MapFS{
		"open.json": {Data: []byte(`{
			"type": "object",
			"properties": {
				"email": {"type": "string"},
				"address": {"type": ["object", "null"], "properties": {"city": {"type": "string"}}},
				"tags": {"type": "array", "items": {"type": "string"}},
				"pair": {"type": "array", "prefixItems": [{"type": "object", "properties": {"x": {}}}]},
				"meta": {},
				"name": {"$ref": "#/$defs/name"},
				"labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {}}, "additionalProperties": false}},
				"either": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"a": {}}}]}
			},
			"$defs": {"name": {"type": "object", "properties": {"first": {}}, "additionalProperties": false}}
		}`)},
		"closed.json": {Data: []byte(`{
			"type": "object",
			"properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
			"additionalProperties": false,
			"patternProperties": {"^x-": {}}
		}`)},
		"composed.json": {Data: []byte(`{
			"allOf": [{"$ref": "closed.json"}]
		}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		schema, path string
		want         Reach
		wantAt       int
		wantKnown    string
	}{
		{"open.json", "email", Described, 1, ""},
		{"open.json", "address.city", Described, 2, ""},
		{"open.json", "tags.0", Described, 2, ""},
		{"open.json", "pair.0.x", Described, 3, ""},
		{"open.json", "name.first", Described, 2, ""},
		{"open.json", "labels.any.v", Described, 3, ""},
		{"open.json", "either.a", Described, 2, ""},
		{"open.json", "emial", Undescribed, 0, "address,either,email,labels,meta,name,pair,tags"},
		{"open.json", "address.town", Undescribed, 1, "city"},
		{"open.json", "meta.anything", Undescribed, 1, ""},
		{"open.json", "email.domain", Unreachable, 1, ""},
		{"open.json", "tags.first", Unreachable, 1, ""},
		{"open.json", "name.last", Unreachable, 1, "first"},
		{"open.json", "labels.any.w", Unreachable, 2, "v"},
		{"closed.json", "emial", Unreachable, 0, "email,id"},
		{"closed.json", "x-trace", Described, 1, ""},
		{"composed.json", "emial", Unreachable, 0, "email,id"},
		{"composed.json", "id", Described, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.schema+"/"+tt.path, func(t *testing.T) {
			v, err := reg.Get(tt.schema)
			if err != nil {
				t.Fatal(err)
			}
			got := v.Reach(strings.Split(tt.path, "."))
			if got.Reach != tt.want || got.At != tt.wantAt || strings.Join(got.Known, ",") != tt.wantKnown {
				t.Errorf("Reach(%s) = %+v, want reach %d at %d known %q", tt.path, got, tt.want, tt.wantAt, tt.wantKnown)
			}
		})
	}
}
