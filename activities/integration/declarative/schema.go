package declarative

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"
	"go.yaml.in/yaml/v3"

	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/lib/suggest"
	"github.com/tetherflow/tether/schemas"
)

// fileSchema is integration.schema.json, compiled, with its document for
// the "errorMessage" annotations and the known keys of each object.
type fileSchema struct {
	schema *jsonschema.Schema
	doc    any
}

// compiledFileSchema compiles the embedded schema once; it cannot fail
// unless the embedded file is broken, which the tests catch.
var compiledFileSchema = sync.OnceValues(func() (*fileSchema, error) {
	const url = "https://tetherflow.dev/schemas/" + schemas.IntegrationFile
	raw := schemas.Integration()
	doc, err := schema.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", schemas.IntegrationFile, err)
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	if err := c.AddResource(url, bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("%s: %w", schemas.IntegrationFile, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", schemas.IntegrationFile, err)
	}
	return &fileSchema{schema: s, doc: doc}, nil
})

// checkDocument validates a decoded integration file against the schema
// and returns every violation as a *Problem, in the file's order.
func checkDocument(path string, doc map[string]any, root *yaml.Node) []error {
	fsch, err := compiledFileSchema()
	if err != nil {
		return []error{&Problem{File: path, Reason: err.Error()}}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return []error{&Problem{File: path, Reason: "not representable as JSON: " + err.Error()}}
	}
	inst, err := schema.Decode(b)
	if err != nil {
		return []error{&Problem{File: path, Reason: "not representable as JSON: " + err.Error()}}
	}
	err = fsch.schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []error{&Problem{File: path, Reason: err.Error()}}
	}
	var ps []*Problem
	for _, v := range fsch.violations(ve, inst, nil) {
		ps = append(ps, &Problem{File: path, Pointer: v.pointer, Line: lineOf(root, v.pointer), Reason: v.reason})
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Pointer < ps[j].Pointer
	})
	ps = slices.CompactFunc(ps, func(a, b *Problem) bool { return *a == *b })
	out := make([]error, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}

// violation is one problem found by the schema.
type violation struct {
	pointer string
	reason  string
}

// violations flattens the library's tree of errors into the errors that
// name a failed keyword themselves. A subschema with an "errorMessage"
// annotation reports that message, at the value it applies to (or at the
// one key it says is missing), instead of anything that failed inside it.
func (f *fileSchema) violations(ve *jsonschema.ValidationError, inst any, out []violation) []violation {
	if msg, ok := f.errorMessage(ve.AbsoluteKeywordLocation); ok {
		pointer := ve.InstanceLocation
		if p, ok := missingKey(ve); ok {
			pointer = p
		}
		return append(out, violation{pointer: pointer, reason: msg})
	}
	if len(ve.Causes) == 0 {
		return f.leaf(ve, inst, out)
	}
	for _, c := range ve.Causes {
		out = f.violations(c, inst, out)
	}
	return out
}

// leaf words one failed keyword for the person editing the file.
func (f *fileSchema) leaf(ve *jsonschema.ValidationError, inst any, out []violation) []violation {
	// The keyword's own subschema, or one around it, may say it better.
	for loc := ve.AbsoluteKeywordLocation; strings.Contains(loc, "#/"); {
		loc = loc[:strings.LastIndex(loc, "/")]
		if msg, ok := f.errorMessage(loc); ok {
			return append(out, violation{pointer: ve.InstanceLocation, reason: msg})
		}
	}
	kw := keywordOf(ve.KeywordLocation)
	at := func(name string) string {
		return ve.InstanceLocation + "/" + strings.ReplaceAll(strings.ReplaceAll(name, "~", "~0"), "/", "~1")
	}
	switch kw {
	case "additionalProperties":
		known := f.knownKeys(ve.AbsoluteKeywordLocation)
		for _, name := range schema.QuotedNames(ve.Message) {
			reason := fmt.Sprintf("unknown key %q", name)
			if s := suggest.Closest(name, known); s != "" {
				reason += fmt.Sprintf(" (did you mean %q?)", s)
			} else if len(known) > 0 {
				reason += " (known keys: " + strings.Join(known, ", ") + ")"
			}
			out = append(out, violation{pointer: at(name), reason: reason})
		}
		return out
	case "required":
		for _, name := range schema.QuotedNames(ve.Message) {
			out = append(out, violation{pointer: at(name), reason: fmt.Sprintf("required key %q is missing", name)})
		}
		return out
	case "dependentRequired":
		// "property 'a' is required, if 'b' property exists"
		if names := schema.QuotedNames(ve.Message); len(names) == 2 {
			return append(out, violation{pointer: at(names[0]), reason: fmt.Sprintf("%q is required when %q is set", names[0], names[1])})
		}
	case "false":
		return append(out, violation{pointer: ve.InstanceLocation, reason: "not allowed here"})
	case "enum", "const":
		// Enumerated values are never secrets: say which value is wrong.
		if v, ok := lookup(inst, ve.InstanceLocation); ok {
			if b, err := json.Marshal(v); err == nil {
				return append(out, violation{pointer: ve.InstanceLocation, reason: fmt.Sprintf("%s is not allowed: %s", b, ve.Message)})
			}
		}
	}
	return append(out, violation{pointer: ve.InstanceLocation, reason: ve.Message})
}

// missingKey returns the pointer of the key ve is about when all that
// failed inside it is "required" naming that one key, as when a
// conditional "then" requires it: the message then points at the key, as
// a plain missing key's does.
func missingKey(ve *jsonschema.ValidationError) (string, bool) {
	key := ""
	only := true
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		names := schema.QuotedNames(e.Message)
		if keywordOf(e.KeywordLocation) != "required" || len(names) != 1 {
			only = false
			return
		}
		p := e.InstanceLocation + "/" + strings.ReplaceAll(strings.ReplaceAll(names[0], "~", "~0"), "/", "~1")
		if key != "" && key != p {
			only = false
		}
		key = p
	}
	walk(ve)
	return key, only && key != ""
}

// keywordOf returns the keyword at the end of a keyword location such as
// "/properties/name/pattern" or "/dependentRequired/initial_cursor/0".
func keywordOf(loc string) string {
	segs := strings.Split(loc, "/")
	last := segs[len(segs)-1]
	if _, err := strconv.Atoi(last); err == nil && len(segs) >= 3 && segs[len(segs)-3] == "dependentRequired" {
		return "dependentRequired"
	}
	return last
}

// lookup returns the value at a JSON pointer in a decoded document.
func lookup(doc any, pointer string) (any, bool) {
	if pointer == "" {
		return doc, true
	}
	n := doc
	for _, seg := range strings.Split(pointer[1:], "/") {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		switch x := n.(type) {
		case map[string]any:
			c, ok := x[seg]
			if !ok {
				return nil, false
			}
			n = c
		case []any:
			k, err := strconv.Atoi(seg)
			if err != nil || k < 0 || k >= len(x) {
				return nil, false
			}
			n = x[k]
		default:
			return nil, false
		}
	}
	return n, true
}

// node returns the schema value at an absolute keyword location.
func (f *fileSchema) node(absLoc string) (any, bool) {
	i := strings.IndexByte(absLoc, '#')
	if i < 0 {
		return nil, false
	}
	frag, err := url.PathUnescape(absLoc[i+1:])
	if err != nil {
		return nil, false
	}
	return lookup(f.doc, frag)
}

// errorMessage returns the "errorMessage" of the subschema at absLoc.
func (f *fileSchema) errorMessage(absLoc string) (string, bool) {
	n, ok := f.node(absLoc)
	if !ok {
		return "", false
	}
	m, _ := n.(map[string]any)
	msg, ok := m["errorMessage"].(string)
	return msg, ok
}

// knownKeys returns the properties of the object schema whose
// additionalProperties keyword is at absLoc, sorted.
func (f *fileSchema) knownKeys(absLoc string) []string {
	n, ok := f.node(strings.TrimSuffix(absLoc, "/additionalProperties"))
	if !ok {
		return nil
	}
	m, _ := n.(map[string]any)
	props, _ := m["properties"].(map[string]any)
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
