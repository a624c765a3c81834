package prometheus_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRules_NameOnlyMetricsTheWorkerDefines: every tether_* metric an
// alert reads is a name the worker's code defines (a string literal in
// workers/ or activities/), so renaming a metric without its alert fails
// here rather than leaving an alert that can never fire.
func TestRules_NameOnlyMetricsTheWorkerDefines(t *testing.T) {
	defined := map[string]bool{}
	lit := regexp.MustCompile(`"(tether_[a-z_]+)"`)
	for _, dir := range []string{"workers", "activities"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			for _, m := range lit.FindAllSubmatch(b, -1) {
				defined[string(m[1])] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	used := regexp.MustCompile(`\btether_[a-z_]+`)
	suffix := regexp.MustCompile(`_(bucket|count|sum)$`)
	checked := 0
	for _, r := range loadRules(t) {
		for _, name := range used.FindAllString(r.Expr, -1) {
			checked++
			if !defined[name] && !defined[suffix.ReplaceAllString(name, "")] {
				t.Errorf("alert %s reads %s, which no metric of the worker is named", r.Alert, name)
			}
		}
	}
	if checked < 8 {
		t.Errorf("only %d metric names checked", checked)
	}
}
