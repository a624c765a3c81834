// Package layout checks the architecture the directories promise: imports
// run one way (starters → workers → workflows → activities → connectors →
// leaf libraries), workflow code imports no connector, integration
// definition or database driver, connectors know nothing of a run's state,
// and the shipped binaries link no test package.
package layout

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tetherflow/tether/"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list runs `go list -json` on patterns from the repository's root.
func list(t *testing.T, deps bool, patterns ...string) []pkg {
	t.Helper()
	args := []string{"list", "-json"}
	if deps {
		args = append(args, "-deps")
	}
	cmd := exec.Command("go", append(args, patterns...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// local is a module package's path inside the module ("activities/fetch").
func local(path string) (string, bool) {
	return strings.CutPrefix(path, module)
}

// layer orders the module's top directories: a package may import its own
// layer and those below it.
func layer(rel string) int {
	switch {
	case strings.HasPrefix(rel, "activities/lib/"):
		return 0
	case strings.HasPrefix(rel, "activities/connector"):
		return 1
	case strings.HasPrefix(rel, "activities/"), rel == "activities", strings.HasPrefix(rel, "schemas"):
		return 2
	case strings.HasPrefix(rel, "workflows/"):
		return 3
	case strings.HasPrefix(rel, "workers/"):
		return 4
	case strings.HasPrefix(rel, "starters/"):
		return 5
	}
	return 6 // tests/: anything
}

// TestImports_RunOneWay: no package imports one of a higher layer.
func TestImports_RunOneWay(t *testing.T) {
	names := []string{"leaf libraries", "connectors", "activities", "workflows", "workers", "starters", "tests"}
	checked := 0
	for _, p := range list(t, false, "./...") {
		rel, _ := local(p.ImportPath)
		for _, imp := range p.Imports {
			irel, ok := local(imp)
			if !ok {
				continue
			}
			checked++
			// The connector acceptance suite drives the sandbox API.
			if strings.HasSuffix(rel, "connectortest") && strings.HasPrefix(irel, "starters/sandbox") {
				continue
			}
			if layer(irel) > layer(rel) {
				t.Errorf("%s (%s) imports %s (%s)", rel, names[layer(rel)], irel, names[layer(irel)])
			}
		}
	}
	if checked < 200 {
		t.Errorf("only %d imports checked", checked)
	}
}

// TestWorkflows_ImportNoConnectorDefinitionOrDriver: workflow code
// depends on the wire contract and leaf libraries only.
func TestWorkflows_ImportNoConnectorDefinitionOrDriver(t *testing.T) {
	for _, p := range list(t, true, "./workflows/...") {
		rel, ok := local(p.ImportPath)
		switch {
		case p.ImportPath == "github.com/lib/pq", p.ImportPath == "database/sql":
			t.Errorf("workflows depend on %s", p.ImportPath)
		case !ok:
		case strings.HasPrefix(rel, "activities/") && rel != "activities/syncstep" && !strings.HasPrefix(rel, "activities/lib/"):
			t.Errorf("workflows depend on %s: only activities/syncstep and activities/lib/... are theirs", rel)
		}
	}
}

// TestConnectors_KnowNothingOfRuns: connectors depend on the contract and
// leaf libraries, never on tether's state, steps or definitions.
func TestConnectors_KnowNothingOfRuns(t *testing.T) {
	for _, p := range list(t, true, "./activities/connector/...") {
		rel, ok := local(p.ImportPath)
		if !ok || strings.HasPrefix(rel, "activities/connector") || strings.HasPrefix(rel, "activities/lib/") {
			continue
		}
		if strings.HasPrefix(p.ImportPath, module+"activities/connector/connectortest") {
			continue
		}
		t.Errorf("connectors depend on %s", rel)
	}
}

// TestBinaries_LinkNoTestPackage: the shipped binaries import no package
// of tests/, and none of their packages imports testing. (The Temporal
// SDK's internal package links testing itself: its test environment lives
// there; that one is allowed.)
func TestBinaries_LinkNoTestPackage(t *testing.T) {
	deps := list(t, true, "./starters/cmd/tether", "./workers/cmd/worker", "./starters/cmd/sandbox")
	if len(deps) < 50 {
		t.Fatalf("only %d packages listed", len(deps))
	}
	for _, p := range deps {
		if rel, ok := local(p.ImportPath); ok && strings.HasPrefix(rel, "tests/") {
			t.Errorf("a shipped binary links %s", rel)
		}
		if slices.Contains(p.Imports, "testing") && p.ImportPath != "go.temporal.io/sdk/internal" {
			t.Errorf("%s, linked into a shipped binary, imports testing", p.ImportPath)
		}
		// A test helper package (one that need not import testing, as
		// OpenTelemetry's tracetest) comes in only with the SDK's test
		// environment, which its internal package holds.
		for _, imp := range p.Imports {
			if testHelper(imp) && !sdkTestEnvironment(p.ImportPath) {
				t.Errorf("%s, linked into a shipped binary, imports the test helper %s", p.ImportPath, imp)
			}
		}
	}
}

// testHelper reports whether path is a package made for tests.
func testHelper(path string) bool {
	for _, el := range strings.Split(path, "/") {
		switch el {
		case "testing", "tracetest", "testutil", "testsuite", "httptest", "iotest", "fstest", "testify", "mock":
			return true
		}
	}
	return false
}

// sdkTestEnvironment reports whether path is the Temporal SDK's internal
// package or one of the mocks and testify packages its test environment
// brings.
func sdkTestEnvironment(path string) bool {
	return path == "go.temporal.io/sdk/internal" || strings.HasPrefix(path, "github.com/stretchr/testify/") ||
		strings.HasPrefix(path, "go.temporal.io/api/workflowservicemock/")
}
