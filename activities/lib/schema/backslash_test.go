package schema

// A property name ending in a backslash: the jsonschema library's quoting
// of it in its message is lossy ('a\' for "a\"), yet the error is
// neither dropped nor garbled (found by FuzzValidate_PropertyNames: the
// records below used to validate).

import (
	"encoding/json"
	"testing"
)

func TestValidate_NamesEndingInABackslash(t *testing.T) {
	r := NewEmptyRegistry()
	if err := r.Add("req.json", []byte(`{"type":"object","required":["a\\"]}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("closed.json", []byte(`{"type":"object","properties":{"id":{}},"additionalProperties":false}`)); err != nil {
		t.Fatal(err)
	}
	req, _ := r.Get("req.json")
	closed, _ := r.Get("closed.json")
	if errs := req.Validate(map[string]any{}); len(errs) == 0 {
		t.Errorf(`{} lacks the required property "a\\" but validates`)
	}
	if errs := closed.Validate(map[string]any{"id": json.Number("1"), `x\`: json.Number("1")}); len(errs) == 0 {
		t.Errorf(`a property "x\\" that is not allowed validates`)
	}
	if errs := closed.Validate(map[string]any{"id": json.Number("1"), `x\`: json.Number("1"), "y": json.Number("1")}); len(errs) != 2 {
		t.Errorf("two properties not allowed give %q", errs)
	}
}
