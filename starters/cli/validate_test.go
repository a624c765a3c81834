package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
)

// twin is the shipped YAML twin of crm-contacts.
func twin(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../workers/integrations/yaml/crm-contacts-yaml.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "a-good.yaml", twin(t))
	bad := write(t, dir, "b-bad.yaml", strings.NewReplacer(
		"name: crm-contacts-yaml", "name: crm-contacts-bad",
		"key_field: id\n", "",
		"kind: none", "kind: bearer\n      token: s3cr3t",
	).Replace(twin(t)))
	dup := write(t, dir, "c-dup.yml", twin(t))
	clash := write(t, dir, "d-clash.yaml", strings.Replace(twin(t), "name: crm-contacts-yaml", "name: crm-companies", 1))
	write(t, dir, "notes.txt", "not an integration file")

	code, out, errOut := run(t, "validate", dir)
	want := "ok " + good + " (crm-contacts-yaml)\n" +
		bad + `: /key_field: required key "key_field" is missing` + "\n" +
		bad + ": /source/http/auth/token: a secret is given by reference, never inline: {env: NAME} (an environment variable) or {file: /path/to/file} (line 21)\n" +
		dup + `: /name: integration "crm-contacts-yaml" is also defined in ` + good + ": names must be unique\n" +
		clash + `: /name: integration "crm-companies" is also defined in Go (workers/integrations): names must be unique` + "\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if code != 1 || errOut != "tether validate: 3 of 4 integration files have problems\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(out+errOut, "s3cr3t") {
		t.Error("the output repeats an inline secret")
	}

	t.Run("files", func(t *testing.T) {
		code, out, _ := run(t, "validate", good, filepath.Join(dir, "nope.yaml"))
		want := "ok " + good + " (crm-contacts-yaml)\n" + filepath.Join(dir, "nope.yaml") + ": (document): cannot read: no such file or directory\n"
		if code != 1 || out != want {
			t.Errorf("exit %d, stdout:\n%s\nwant:\n%s", code, out, want)
		}
	})
	t.Run("TETHER_INTEGRATIONS_DIR", func(t *testing.T) {
		d := t.TempDir()
		p := write(t, d, "x.yaml", twin(t))
		t.Setenv("TETHER_INTEGRATIONS_DIR", d)
		if code, out, _ := run(t, "validate"); code != 0 || out != "ok "+p+" (crm-contacts-yaml)\n" {
			t.Errorf("exit %d, stdout %q", code, out)
		}
	})
	t.Run("values that would be lost", func(t *testing.T) {
		d := t.TempDir()
		// A mapping target the table lacks; a path into a string.
		lost := write(t, d, "lost.yaml", strings.NewReplacer(
			"{to: phone, from: phone", "{to: phnoe, from: phone",
			"{to: city, from: address.city", "{to: city, from: address.city.name",
		).Replace(twin(t)))
		code, out, _ := run(t, "validate", lost)
		wantLines(t, out, lost+`: /mapping/6/to: "phnoe" is stored by no destination (it is not a column of table crm_contacts_yaml (did you mean "phone"?)), so its value would be dropped from every row; write to a declared column, or declare it (line 37)`,
			lost+`: /mapping/13/from: no record valid for contacts.schema.json has "address.city.name", so the value would be null in every row (line 44)`)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		// A path the schema does not describe: valid, with a warning.
		doubtful := write(t, d, "doubtful.yaml", strings.Replace(twin(t), "{to: country, from: address.country", "{to: country, from: adress.country", 1))
		code, out, _ = run(t, "validate", doubtful)
		wantLines(t, out, "ok "+doubtful+" (crm-contacts-yaml)",
			"warning: "+doubtful+`: /mapping/14/from: contacts.schema.json does not describe "adress" (did you mean "address.country"?); records without it give null there, and the transform step counts and logs them (line 45)`)
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	})
	t.Run("nothing to validate", func(t *testing.T) {
		t.Setenv("TETHER_INTEGRATIONS_DIR", "")
		if code, _, errOut := run(t, "validate"); code != 2 || !strings.Contains(errOut, "set TETHER_INTEGRATIONS_DIR") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
		if code, _, errOut := run(t, "validate", t.TempDir()); code != 1 || !strings.Contains(errOut, "no integration files") {
			t.Errorf("empty directory: exit %d, stderr %q", code, errOut)
		}
	})
}

func TestValidate_Resolve(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "x.yaml", strings.NewReplacer(
		"kind: none", "kind: bearer\n      token: {env: TETHER_TEST_CRM_TOKEN}",
		"schema: contacts.schema.json", "schema: ./contacts.json",
	).Replace(twin(t)))
	write(t, dir, "contacts.json", `{"type": "object", "required": ["id"]}`)

	t.Setenv("TETHER_TEST_CRM_TOKEN", "tok-123")
	if code, out, _ := run(t, "validate", "--resolve", p); code != 0 || out != "ok "+p+" (crm-contacts-yaml)\n" {
		t.Errorf("exit %d, stdout %q", code, out)
	}

	os.Unsetenv("TETHER_TEST_CRM_TOKEN")
	// Without --resolve, secrets are not looked at.
	if code, _, _ := run(t, "validate", p); code != 0 {
		t.Errorf("exit %d without --resolve", code)
	}
	code, out, _ := run(t, "validate", p, "--resolve")
	if want := p + ": /source/http/auth/token: environment variable TETHER_TEST_CRM_TOKEN is not set\n"; code != 1 || out != want {
		t.Errorf("exit %d, stdout %q, want %q", code, out, want)
	}

	// A schema file that is JSON but not a schema.
	t.Setenv("TETHER_TEST_CRM_TOKEN", "tok-123")
	write(t, dir, "contacts.json", `{"type": "record"}`)
	code, out, _ = run(t, "validate", "--resolve", p)
	if code != 1 || !strings.Contains(out, p+": /schema: schema contacts.json@") || !strings.Contains(out, "not a valid schema") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}

func TestIntegrations_ListsGoAndFiles(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "x.yaml", twin(t))
	t.Setenv("TETHER_INTEGRATIONS_DIR", dir)
	code, out, _ := run(t, "integrations")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+len(integrations.All(config.Connection{BaseURL: "http://127.0.0.1:8081", Auth: "none"}))+1 || !strings.Contains(lines[0], "DEFINED IN") {
		t.Fatalf("output:\n%s", out)
	}
	for _, want := range []struct{ name, from string }{{"crm-contacts ", "  go (connections.crm)  "}, {"crm-companies ", "  go (connections.crm)  "}, {"crm-contacts-yaml ", "  yaml: " + p + "  "}} {
		found := false
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, want.name) && strings.Contains(l, want.from) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line for %s marked %q:\n%s", want.name, want.from, out)
		}
	}

	write(t, dir, "y.yaml", "name: Broken\n")
	code, out, errOut := run(t, "integrations", "--dir", dir)
	if code != 1 || !strings.Contains(out, "crm-contacts-yaml") || !strings.Contains(errOut, filepath.Join(dir, "y.yaml")+": /name: ") {
		t.Errorf("with a broken file: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// wantLines checks out is exactly the lines want.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !slices.Equal(got, want) {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
}
