package declarative

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetherflow/tether/schemas"
)

func TestLoad_ReportsEveryProblemOfAFile(t *testing.T) {
	p := writeFile(t, "", "people.yaml", edited(t, map[string]any{
		"/key_field":                   nil,
		"/batch_size":                  "lots",
		"/mapping/0/cast":              "integer",
		"/source/http/auth/token":      "s3cr3t",
		"/destination/postgres/tabel":  "x",
		"/source/http/pagination/size": 10,
	}))
	_, err := Load(p)
	ps := problemsOf(t, err)
	want := []struct{ pointer, reason string }{
		{"/key_field", "missing"},
		{"/batch_size", "expected integer"},
		{"/mapping/0/cast", `"integer" is not allowed`},
		{"/source/http/auth/token", "never inline"},
		{"/destination/postgres/tabel", "unknown key"},
		{"/source/http/pagination/size", "unknown key"},
	}
	for _, w := range want {
		if findProblem(ps, w.pointer, w.reason) == nil {
			t.Errorf("no problem at %s containing %q", w.pointer, w.reason)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ps), len(want), err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("want one line per problem, got:\n%v", err)
	}
	for i := 1; i < len(ps); i++ {
		if ps[i].Line < ps[i-1].Line {
			t.Errorf("problems are not in the file's order:\n%v", err)
		}
	}
}

func TestLoad_FileProblems(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		give       string
		wantReason string
		wantLine   int
	}{
		{name: "not YAML", file: "a.yaml", give: "name: a\nsource:\n\thttp: {}\n", wantReason: "not valid YAML: found character that cannot start any token", wantLine: 3},
		{name: "a duplicate key", file: "a.yaml", give: "name: a\nname: b\n", wantReason: `mapping key "name" already defined`, wantLine: 2},
		{name: "not a mapping", file: "a.yaml", give: "- name: a\n", wantReason: "not a mapping"},
		{name: "empty", file: "a.yaml", give: "", wantReason: `required key "name" is missing`},
		{name: "not a YAML file name", file: "a.json", give: "{}", wantReason: "want a .yaml or .yml file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "", tt.file, tt.give)
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tt.wantReason) {
				t.Fatalf("Load() error = %v, want one containing %q", err, tt.wantReason)
			}
			ps := problemsOf(t, err)
			if ps[0].File != p {
				t.Errorf("problem names %q, want %q", ps[0].File, p)
			}
			if tt.wantLine != 0 && ps[0].Line != tt.wantLine {
				t.Errorf("line %d, want %d", ps[0].Line, tt.wantLine)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), p+": (document): cannot read") {
			t.Errorf("Load() error = %v", err)
		}
	})
}

func TestLoad_KeepsTheDocumentAsWritten(t *testing.T) {
	p := writeFile(t, "", "a.yaml", edited(t, map[string]any{
		"/source/http/query":   map[string]any{"pageSize": "50", "filter.kind": "Person"},
		"/source/http/headers": map[string]any{"X-Tenant-ID": "Acme"},
		"/initial_cursor":      "2024-01-02T03:04:05Z", // a YAML timestamp
		"/mapping/1/default":   "2024-01-02",
		"/source/http/timeout": "1m30s",
	}))
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Source.HTTP
	if h.Query["pageSize"] != "50" || h.Query["filter.kind"] != "Person" || h.Headers["X-Tenant-ID"] != "Acme" {
		t.Errorf("keys or values changed: query %v headers %v", h.Query, h.Headers)
	}
	if s.InitialCursor != "2024-01-02T03:04:05Z" || s.Mapping[1].Default != "2024-01-02" {
		t.Errorf("timestamps not kept as written: %q %#v", s.InitialCursor, s.Mapping[1].Default)
	}
	if h.Timeout.String() != "1m30s" {
		t.Errorf("timeout %v", h.Timeout)
	}
	if s.File != p || s.Source.Postgres != nil || s.Destination.HTTP != nil || s.Mapping[0].Join != nil {
		t.Errorf("unexpected spec: %+v", s)
	}
	if tok := h.Auth.Token; tok == nil || tok.Env != "PEOPLE_TOKEN" {
		t.Errorf("token reference %+v", tok)
	}
}

func TestLoad_Schema(t *testing.T) {
	known, err := fs.Glob(schemas.FS(), "*.json")
	if err != nil || !slices.Contains(known, "contacts.schema.json") {
		t.Fatalf("schemas/ = %v, %v", known, err)
	}
	tests := []struct {
		name       string
		give       string
		files      map[string]string
		wantErr    string
		wantDigest bool
	}{
		{name: "a file in schemas/", give: "contacts.schema.json"},
		{name: "not in schemas/", give: "people.schema.json", wantErr: `/schema: no schema "people.schema.json" in schemas/ (known: ` + strings.Join(known, ", ") + `); a schema file beside this one is written ./people.schema.json`},
		{name: "a file beside", give: "./people.json", files: map[string]string{"people.json": `{"type": "object"}`}, wantDigest: true},
		{name: "a file below", give: "schemas/people.json", files: map[string]string{"schemas/people.json": `{"type": "object"}`}, wantDigest: true},
		{name: "a missing file", give: "./people.json", wantErr: "/schema: schema file "},
		{name: "not JSON", give: "./people.json", files: map[string]string{"people.json": `{`}, wantErr: "is not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, name, body)
			}
			p := writeFile(t, dir, "people.yaml", edited(t, map[string]any{"/schema": tt.give}))
			s, err := Load(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s.SchemaSHA256 != "") != tt.wantDigest {
				t.Errorf("SchemaSHA256 = %q", s.SchemaSHA256)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	t.Run("every file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "b.yml", edited(t, map[string]any{"/name": "b"}))
		writeFile(t, dir, "a.yaml", edited(t, map[string]any{"/name": "a"}))
		writeFile(t, dir, "notes.txt", "not an integration")
		writeFile(t, dir, ".a.yaml.swp", "editor junk")
		if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
			t.Fatal(err)
		}
		specs, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(specs) != 2 || specs[0].Name != "a" || specs[1].Name != "b" {
			t.Errorf("specs %+v", specs)
		}
	})
	t.Run("every problem of every file", func(t *testing.T) {
		dir := t.TempDir()
		a := writeFile(t, dir, "a.yaml", edited(t, map[string]any{"/name": "a", "/key_field": nil}))
		b := writeFile(t, dir, "b.yaml", edited(t, map[string]any{"/name": "b", "/mapping/0/cast": "integer"}))
		writeFile(t, dir, "c.yaml", edited(t, map[string]any{"/name": "c"}))
		specs, err := LoadDir(dir)
		if specs != nil {
			t.Errorf("specs returned with an error: %v", specs)
		}
		ps := problemsOf(t, err)
		if len(ps) != 2 || ps[0].File != a || ps[1].File != b {
			t.Errorf("problems:\n%v", err)
		}
	})
	t.Run("a name in two files", func(t *testing.T) {
		dir := t.TempDir()
		a := writeFile(t, dir, "a.yaml", minimalYAML)
		b := writeFile(t, dir, "b.yaml", minimalYAML)
		_, err := LoadDir(dir)
		want := b + `: /name: integration "people" is also defined in ` + a
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadDir() error = %v, want %q", err, want)
		}
	})
	t.Run("no directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		_, err := LoadDir(dir)
		if err == nil || !strings.Contains(err.Error(), "integrations directory "+dir) {
			t.Errorf("LoadDir() error = %v", err)
		}
	})
}

// TestDocExample: the complete file in the package documentation loads and
// resolves.
func TestDocExample(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "A complete file")
	if !ok {
		t.Fatal("no example in doc.go")
	}
	var lines []string
	for _, l := range strings.Split(after, "\n")[1:] {
		body, ok := strings.CutPrefix(l, "//\t")
		if !ok {
			if len(lines) > 0 {
				break
			}
			continue
		}
		lines = append(lines, body)
	}
	p := writeFile(t, "", "EXAMPLE.YAML", strings.Join(lines, "\n")+"\n")
	s, err := Load(p)
	if err != nil {
		t.Fatalf("the documented example does not load:\n%v", err)
	}
	if _, err := s.Resolve(env(nil), noFiles, nil); err != nil {
		t.Fatalf("the documented example does not resolve:\n%v", err)
	}
}

// FuzzLoad: any file gives a spec or problems, never a panic, and a spec
// always hashes.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(minimalYAML))
	f.Add([]byte("name: a\nsource: {http: {base_url: 'http://x'}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("<<: {name: a}\n1: 2\n? [a]\n: b\n"))
	f.Add([]byte("mapping: [{to: a, default: .nan}]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f.yaml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(p)
		if err != nil {
			if len(Problems(err)) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		_ = s.Hash()
	})
}
