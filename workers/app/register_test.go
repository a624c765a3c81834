package app

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/syncstep"
)

// recorder records the names a registration uses and hands every
// registration to the SDK's test environment, which checks it.
type recorder struct {
	worker.Registry
	env        *testsuite.TestWorkflowEnvironment
	activities []string
	workflows  []string
}

func (r *recorder) RegisterActivity(a any) {
	panic("register activities by name (RegisterActivityWithOptions), under their syncstep handle's name")
}

func (r *recorder) RegisterActivityWithOptions(a any, o activity.RegisterOptions) {
	r.activities = append(r.activities, o.Name)
	r.env.RegisterActivityWithOptions(a, o)
}

func (r *recorder) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	r.workflows = append(r.workflows, o.Name)
	r.env.RegisterWorkflowWithOptions(w, o)
}

// TestRegister_EveryActivityTheWorkflowsCallIsRegistered: the worker
// registers, once each, every activity the workflows call (syncstep.All,
// whose handles are the only way workflow code starts activities), and
// nothing else.
func TestRegister_EveryActivityTheWorkflowsCallIsRegistered(t *testing.T) {
	r := &recorder{env: (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()}
	Register(r, NewActivities(ActivitiesParams{}))
	called := syncstep.All()
	for _, name := range called {
		if n := count(r.activities, name); n != 1 {
			t.Errorf("activity %s, which the workflows call, is registered %d times", name, n)
		}
	}
	for _, name := range r.activities {
		if !slices.Contains(called, name) {
			t.Errorf("activity %s is registered but no workflow calls it (not in syncstep.All)", name)
		}
	}
	for _, name := range []string{"SyncWorkflow", "ReconcileWorkflow", "EventsWorkflow", "CaptureWorkflow"} {
		if count(r.workflows, name) != 1 {
			t.Errorf("workflow %s registered %d times, want once", name, count(r.workflows, name))
		}
	}
}

func count(names []string, name string) int {
	n := 0
	for _, x := range names {
		if x == name {
			n++
		}
	}
	return n
}

// TestSyncstepAll_ListsEveryHandle: every activity handle declared in
// package syncstep is in All, so the registration test covers it.
func TestSyncstepAll_ListsEveryHandle(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, "../../activities/syncstep", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	var handles []string
	for _, f := range pkgs["syncstep"].Files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok || len(vs.Values) != 1 {
				return true
			}
			call, ok := vs.Values[0].(*ast.CallExpr)
			if !ok {
				return true
			}
			fn := call.Fun
			if ix, ok := fn.(*ast.IndexListExpr); ok {
				fn = ix.X
			}
			if id, ok := fn.(*ast.Ident); ok && id.Name == "NewActivity" {
				handles = append(handles, vs.Names[0].Name)
			}
			return true
		})
	}
	if len(handles) < 20 {
		t.Fatalf("found %d handles in syncstep, the parser missed some: %v", len(handles), handles)
	}
	all := syncstep.All()
	for _, h := range handles {
		// A handle's variable is named like its activity.
		name := h
		switch h {
		case "FetchQuarantinedPage":
			name = syncstep.FetchQuarantinedName
		case "FetchRepairPage":
			name = syncstep.FetchRepairName
		}
		if !slices.Contains(all, name) {
			t.Errorf("syncstep.%s is not in syncstep.All", h)
		}
	}
}

// TestWorkflows_StartActivitiesThroughHandles: workflow code never starts
// an activity by a bare name, so every activity it calls is a syncstep
// handle the registration test covers.
func TestWorkflows_StartActivitiesThroughHandles(t *testing.T) {
	err := filepath.WalkDir("../../workflows", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, call := range []string{"workflow.ExecuteActivity(", "workflow.ExecuteLocalActivity("} {
			if strings.Contains(string(b), call) {
				t.Errorf("%s calls %s: start activities through their syncstep handle (syncstep.FetchPage.Run)", p, call)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
