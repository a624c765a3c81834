package declarative

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// minimalYAML is a small valid integration file.
const minimalYAML = `name: people
description: people from a test API
source:
  http:
    base_url: https://api.example.com
    path: /v1/people
    records_path: data
    pagination: {style: page}
    incremental: {param: updated_since}
    auth:
      kind: bearer
      token: {env: PEOPLE_TOKEN}
schema: contacts.schema.json
key_field: id
cursor_field: updated_at
mapping:
  - {to: id, from: id, cast: int, required: true}
  - {to: email, from: email, normalize: [email]}
  - {to: updated_at, from: updated_at, cast: timestamp}
destination:
  postgres:
    name: people
    columns:
      - {name: id, type: bigint, not_null: true}
      - {name: email, type: text}
      - {name: updated_at, type: timestamptz}
    key: [id]
    version_column: updated_at
`

// writeFile writes body to name in dir (created when empty) and returns
// its path.
func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// edited returns minimalYAML with edits applied: a JSON pointer to a
// value (YAML text, parsed), or to nil to delete the key.
func edited(t *testing.T, edits map[string]any) string {
	t.Helper()
	return editedYAML(t, minimalYAML, edits)
}

// editedYAML returns base with edits applied, as edited does.
func editedYAML(t *testing.T, base string, edits map[string]any) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(base), &doc); err != nil {
		t.Fatal(err)
	}
	for ptr, v := range edits {
		segs := strings.Split(ptr[1:], "/")
		var cur any = doc
		for _, s := range segs[:len(segs)-1] {
			switch c := cur.(type) {
			case map[string]any:
				cur = c[s]
			case []any:
				i, _ := strconv.Atoi(s)
				cur = c[i]
			}
		}
		last := segs[len(segs)-1]
		switch c := cur.(type) {
		case map[string]any:
			if v == nil {
				delete(c, last)
			} else {
				c[last] = v
			}
		case []any:
			i, _ := strconv.Atoi(last)
			c[i] = v
		default:
			t.Fatalf("edit %s: no such parent", ptr)
		}
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// problemsOf returns the problems of err, failing when err holds anything
// else.
func problemsOf(t *testing.T, err error) []*Problem {
	t.Helper()
	ps := Problems(err)
	if err != nil && len(ps) == 0 {
		t.Fatalf("error holds no *Problem: %v", err)
	}
	return ps
}

// findProblem returns the problem at pointer whose reason contains want.
func findProblem(ps []*Problem, pointer, want string) *Problem {
	for _, p := range ps {
		if p.Pointer == pointer && strings.Contains(p.Reason, want) {
			return p
		}
	}
	return nil
}

// env is a fake os.LookupEnv.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// noFiles is a readFile that finds nothing.
func noFiles(p string) ([]byte, error) {
	return nil, &os.PathError{Op: "open", Path: p, Err: errors.New("no such file or directory")}
}

// examplePath is the shipped YAML twin of crm-contacts.
const examplePath = "../../../workers/integrations/yaml/crm-contacts-yaml.yaml"

func readExample(t *testing.T) string {
	t.Helper()
	return readFile(t, examplePath)
}

// readFile returns the text of a file, e.g. a fixture in testdata/.
func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
