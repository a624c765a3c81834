package declarative

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/twoway"
)

// fuzzSecret starts every secret the fuzz targets' lookups give, so that
// one quoted back in an error is seen.
const fuzzSecret = "tether-fuzz-secret-9f2c"

// fuzzEnv gives every variable a secret that carries its name (so a
// fuzzed name can put any byte in a secret).
func fuzzEnv(name string) (string, bool) { return fuzzSecret + name, true }

// fuzzFiles gives every file a secret that carries its base name.
func fuzzFiles(p string) ([]byte, error) { return []byte(fuzzSecret + filepath.Base(p) + "\n"), nil }

// fuzzFile writes b to a file of dir and returns its path.
func fuzzFile(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzLoadTwoWay loads any two-way integration file: with no lookups
// (tether validate) nothing is read; an error names the file; a file
// that loads is a valid definition a worker's registry takes; loading is
// deterministic; and resolved with secrets, no error quotes a secret.
func FuzzLoadTwoWay(f *testing.F) {
	good, err := os.ReadFile("testdata/accounts-billing.twoway.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("token: {env: BILLING_TOKEN}"), []byte("token: {file: token.txt}"), 1))
	f.Add(bytes.Replace(good, []byte("connection: billing"), []byte("base_url: https://billing.example.com"), 1))
	f.Add(bytes.Replace(good, []byte("policy: merge"), []byte("policy: field_owner"), 1))
	f.Add(bytes.Replace(good, []byte("  name: billing\n"), []byte("  name: billing\n  casts: {plan: string}\n"), 1))
	f.Add([]byte("kind: two-way\nname: x\na: {name: a}\nb: {name: a}\nevery: -1s\n"))
	f.Add([]byte("kind: one-way\n"))
	f.Add([]byte("a: &a {name: *a}\n"))
	conns := map[string]httpclient.Connection{"billing": {BaseURL: "https://billing.example.com", Auth: httpclient.Auth{Kind: "bearer", Token: fuzzSecret + "conn"}}}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Contains(b, []byte(fuzzSecret[:12])) {
			return // the file itself would be quoted
		}
		p := fuzzFile(t, dir, "x.twoway.yaml", b)
		noRead := func(string) ([]byte, error) {
			t.Fatal("a file read without lookups")
			return nil, nil
		}
		d, err := LoadTwoWay(p, nil, noRead, nil)
		d2, err2 := LoadTwoWay(p, nil, noRead, nil)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) || !reflect.DeepEqual(d, d2) {
			t.Fatalf("loading twice differs: %v / %v", err, err2)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), p+": ") {
				t.Fatalf("error does not name the file: %v", err)
			}
		} else {
			if verr := d.Validate(); verr != nil {
				t.Fatalf("loaded a definition that does not validate: %v", verr)
			}
			if _, rerr := twoway.NewRegistry(d); rerr != nil {
				t.Fatalf("loaded a definition the registry refuses: %v", rerr)
			}
		}

		d, err = LoadTwoWay(p, fuzzEnv, fuzzFiles, conns)
		if err != nil {
			if strings.Contains(err.Error(), fuzzSecret) {
				t.Fatalf("an error quotes a secret: %v", err)
			}
			if !strings.HasPrefix(err.Error(), p+": ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if verr := d.Validate(); verr != nil {
			t.Fatalf("resolved a definition that does not validate: %v", verr)
		}
	})
}

// FuzzSpec_Resolve loads any one-way integration file and resolves it
// with every secret set: each problem names the file, no problem quotes
// a secret, and what resolves is a valid definition, every time.
func FuzzSpec_Resolve(f *testing.F) {
	for _, name := range []string{"billing-customers.yaml", "people-postgres.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(minimalYAML))
	f.Add([]byte(strings.Replace(minimalYAML, "token: {env: PEOPLE_TOKEN}", "token: {file: token}", 1)))
	f.Add([]byte(strings.Replace(minimalYAML, "kind: bearer", "kind: api_key\n      header: X-Key", 1)))
	f.Add([]byte(strings.Replace(minimalYAML, "schema: contacts.schema.json", "schema: ./people.schema.json", 1)))
	conns := map[string]httpclient.Connection{"crm": {BaseURL: "https://crm.example.com", Auth: httpclient.Auth{Kind: "bearer", Token: fuzzSecret + "conn"}}}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Contains(b, []byte(fuzzSecret[:12])) {
			return // the file itself would be quoted
		}
		p := fuzzFile(t, dir, "x.yaml", b)
		s, err := Load(p)
		if err != nil {
			return // FuzzLoad checks the problems of a file that does not load
		}
		r, err := s.Resolve(fuzzEnv, fuzzFiles, conns)
		if err != nil {
			if strings.Contains(err.Error(), fuzzSecret) {
				t.Fatalf("an error quotes a secret: %v", err)
			}
			for _, pr := range Problems(err) {
				if pr.File != p {
					t.Fatalf("problem %v names %q, not the file", pr, pr.File)
				}
			}
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := r.Definition.Validate(); err != nil {
			t.Fatalf("resolved a definition that does not validate: %v", err)
		}
		if _, err := s.Resolve(fuzzEnv, fuzzFiles, conns); err != nil {
			t.Fatalf("resolved once, not twice: %v", err)
		}
	})
}
