// Package docs checks that the README and docs/ say what the code does:
// every relative link resolves, and the README's code examples are the
// tested ones, word for word.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// root is the repository, from this package's directory.
const root = "../.."

// pages are README.md and every page of docs/.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(docs) < 10 {
		t.Fatalf("docs/*.md: %d pages, %v", len(docs), err)
	}
	return append([]string{filepath.Join(root, "README.md")}, docs...)
}

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	codeRE    = regexp.MustCompile("(?s)```.*?```")
)

// anchors are a page's heading anchors as GitHub makes them.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(codeRE.ReplaceAllString(text, ""), -1) {
		a := strings.ToLower(strings.TrimSpace(m[1]))
		a = regexp.MustCompile(`[^\p{L}\p{N} _-]`).ReplaceAllString(a, "")
		out[strings.ReplaceAll(a, " ", "-")] = true
	}
	return out
}

// TestLinks_Resolve: every relative link of README.md and docs/ names a
// file or directory that exists and, with a #fragment into a page, one of
// its headings.
func TestLinks_Resolve(t *testing.T) {
	checked := 0
	for _, page := range pages(t) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := codeRE.ReplaceAllString(string(b), "")
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), path)
			}
			checked++
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: link %s: %v", page, target, err)
				continue
			}
			if frag == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			tb, _ := os.ReadFile(file)
			if !anchors(string(tb))[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", page, target, file, frag)
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d relative links checked: the link pattern misses some", checked)
	}
}

// between returns the text of file between the lines of its begin and end
// markers.
func between(t *testing.T, file, begin, end string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no %q ... %q", file, begin, end)
	}
	return strings.TrimSpace(s[i+len(begin) : j])
}

// readmeBlock returns the README's fenced block of the language after the
// heading.
func readmeBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", heading)
	}
	s = s[i:]
	i = strings.Index(s, "```"+lang+"\n")
	if i < 0 {
		t.Fatalf("README.md section %q has no %s block", heading, lang)
	}
	s = s[i+len("```"+lang+"\n"):]
	return strings.TrimSpace(s[:strings.Index(s, "```")])
}

// TestReadme_ExamplesAreTheTestedOnes: the README's Go examples are, word
// for word, the code the tests compile and run, and its integration file
// is one a worker loads and resolves.
func TestReadme_ExamplesAreTheTestedOnes(t *testing.T) {
	for _, tt := range []struct{ heading, file, marker string }{
		{"An integration as workflow code", "workflows/steps/example_test.go", "// README: your own integration as workflow code"},
		{"An integration", "workers/integrations/readme_example_test.go", "// README: a Go integration"},
	} {
		want := between(t, tt.file, tt.marker+" (begin)", tt.marker+" (end)")
		if got := readmeBlock(t, tt.heading, "go"); got != want {
			t.Errorf("README section %q differs from %s:\n--- README\n%s\n--- %s\n%s", tt.heading, tt.file, got, tt.file, want)
		}
	}
	if n := strings.Count(readmeBlock(t, "An integration as workflow code", "go"), "\n") + 1; n >= 40 {
		t.Errorf("the README's workflow code example is %d lines, not under 40", n)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "contacts-copy.yaml")
	if err := os.WriteFile(file, []byte(readmeBlock(t, "An integration", "yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := declarative.Load(file)
	if err != nil {
		t.Fatalf("the README's integration file does not load: %v", err)
	}
	conns := map[string]httpclient.Connection{"crm": {BaseURL: "http://127.0.0.1:8081"}}
	res, err := spec.Resolve(func(string) (string, bool) { return "", false }, os.ReadFile, conns)
	if err != nil {
		t.Fatalf("the README's integration file does not resolve: %v", err)
	}
	if res.Definition.Source.HTTP.BaseURL != "http://127.0.0.1:8081" {
		t.Errorf("the README's file does not take its base URL from the crm connection: %+v", res.Definition.Source.HTTP)
	}
}

// TestReadme_IsAnIndex: the README stays an index (docs/ is the manual).
func TestReadme_IsAnIndex(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 260 {
		t.Errorf("README.md is %d lines: move the detail into docs/", n)
	}
}
