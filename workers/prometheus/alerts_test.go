// Package prometheus_test checks the alerting rules of alerts.yml: promtool
// accepts them and passes their unit tests (alerts_test.yml), and every
// alert carries what an operator needs: a severity, a summary, a
// description, and a runbook section of docs/alerts.md.
package prometheus_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tetherflow/tether/tests/tooltest"
	"go.yaml.in/yaml/v3"
)

const (
	// root is the repository, from this package's directory.
	root = "../.."
	// rulesFile and testsFile are relative to root.
	rulesFile = "workers/prometheus/alerts.yml"
	testsFile = "workers/prometheus/alerts_test.yml"
	runbook   = "docs/alerts.md"
	// runbookURL is the prefix of every alert's runbook_url; the anchor
	// after it is the alert's name in lower case.
	runbookURL = "https://github.com/tetherflow/tether/blob/main/docs/alerts.md#"
)

// TestRules_PassPromtool: promtool finds every alert of alerts.yml valid,
// and every unit test of alerts_test.yml passes.
func TestRules_PassPromtool(t *testing.T) {
	bin := tooltest.Promtool(t)
	rules := loadRules(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"check rules", []string{"check", "rules", rulesFile}, fmt.Sprintf("SUCCESS: %d rules found", len(rules))},
		{"test rules", []string{"test", "rules", testsFile}, "SUCCESS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, tt.args...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("promtool %s does not say %q:\n%s", strings.Join(tt.args, " "), tt.want, out)
			}
		})
	}
}

// TestRules_EveryAlertIsExplainedAndTested: every alert has a for, a
// severity, a summary and a description naming its labels, a runbook_url
// whose anchor is a heading of docs/alerts.md, and in alerts_test.yml a
// case where it fires (its annotations checked) and one where it stays
// quiet.
func TestRules_EveryAlertIsExplainedAndTested(t *testing.T) {
	rules := loadRules(t)
	headings := anchors(t, filepath.Join(root, runbook))
	cases := loadCases(t)
	for _, r := range rules {
		t.Run(r.Alert, func(t *testing.T) {
			var errs []error
			if r.For == "" {
				errs = append(errs, errors.New("no for: one bad scrape would page"))
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				errs = append(errs, fmt.Errorf("severity %q, want warning or critical", s))
			}
			if r.Annotations["summary"] == "" {
				errs = append(errs, errors.New("no summary"))
			}
			if d := r.Annotations["description"]; !strings.Contains(d, "$labels.") {
				errs = append(errs, fmt.Errorf("description %q names none of the alert's labels", d))
			}
			want := runbookURL + strings.ToLower(r.Alert)
			if got := r.Annotations["runbook_url"]; got != want {
				errs = append(errs, fmt.Errorf("runbook_url %q, want %q", got, want))
			}
			if !headings[strings.ToLower(r.Alert)] {
				errs = append(errs, fmt.Errorf("%s has no heading \"## %s\"", runbook, r.Alert))
			}
			c := cases[r.Alert]
			if c.firing == 0 {
				errs = append(errs, fmt.Errorf("%s has no case where it fires with its annotations checked", testsFile))
			}
			if c.quiet == 0 {
				errs = append(errs, fmt.Errorf("%s has no case where it stays quiet", testsFile))
			}
			if err := errors.Join(errs...); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRunbook_NamesOnlyAlertsThatExist: every "## Tether…" section of
// docs/alerts.md is the runbook of an alert of alerts.yml, so a renamed or
// removed alert does not leave its runbook behind.
func TestRunbook_NamesOnlyAlertsThatExist(t *testing.T) {
	alerts := map[string]bool{}
	for _, r := range loadRules(t) {
		alerts[strings.ToLower(r.Alert)] = true
	}
	for a := range anchors(t, filepath.Join(root, runbook)) {
		if strings.HasPrefix(a, "tether") && !alerts[a] {
			t.Errorf("%s: section #%s names no alert of %s", runbook, a, rulesFile)
		}
	}
}

// rule is an alerting rule of alerts.yml.
type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// loadRules returns the alerts of alerts.yml, which has one group, tether.
func loadRules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	decode(t, rulesFile, &f)
	if len(f.Groups) != 1 || f.Groups[0].Name != "tether" {
		t.Fatalf("%s: want one group, tether, got %d groups", rulesFile, len(f.Groups))
	}
	var out []rule
	for _, r := range f.Groups[0].Rules {
		if r.Alert == "" {
			t.Fatalf("%s: a rule that is not an alert: %q", rulesFile, r.Expr)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no alerts", rulesFile)
	}
	return out
}

// coverage counts an alert's cases in alerts_test.yml.
type coverage struct{ firing, quiet int }

// loadCases returns the cases of alerts_test.yml by alert: firing where
// every expected alert has its annotations (runbook_url included) checked,
// quiet where none is expected.
func loadCases(t *testing.T) map[string]coverage {
	t.Helper()
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				AlertName string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpLabels      map[string]string `yaml:"exp_labels"`
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	decode(t, testsFile, &f)
	out := map[string]coverage{}
	for _, tg := range f.Tests {
		for _, c := range tg.AlertRuleTest {
			cov := out[c.AlertName]
			checked := len(c.ExpAlerts) > 0
			for _, a := range c.ExpAlerts {
				checked = checked && a.ExpAnnotations["runbook_url"] != "" && a.ExpAnnotations["description"] != ""
			}
			switch {
			case len(c.ExpAlerts) == 0:
				cov.quiet++
			case checked:
				cov.firing++
			}
			out[c.AlertName] = cov
		}
	}
	return out
}

// decode reads the YAML file (relative to root) into v.
func decode(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

var (
	headingRE  = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	fenceRE    = regexp.MustCompile("(?s)```.*?```")
	notAnchorR = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// anchors are a Markdown page's heading anchors as GitHub makes them.
func anchors(t *testing.T, page string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(string(b), ""), -1) {
		a := notAnchorR.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), "")
		out[strings.ReplaceAll(a, " ", "-")] = true
	}
	return out
}
