package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
)

// cmdValidate checks integration files the way a worker does at start-up,
// without starting one: `ok <file> (<name>)` for each good file, every
// problem of each bad one, then `warning: ...` for what is doubtful but
// not wrong; exit status 1 when any file is bad.
func cmdValidate(_ context.Context, e *env, args []string) error {
	fs := e.flags("validate")
	resolve := fs.Bool("resolve", false, "also read the referenced secrets (environment variables, files), connections and schema files, as the worker will")
	file := fs.String("config", os.Getenv("TETHER_CONFIG"), "the worker's configuration file, for the connections --resolve uses (TETHER_CONFIG); TETHER_CONNECTIONS_* apply too")
	paths, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		dir := os.Getenv("TETHER_INTEGRATIONS_DIR")
		if dir == "" {
			return usageError{errors.New("give integration files or directories, or set TETHER_INTEGRATIONS_DIR")}
		}
		paths = []string{dir}
	}
	var conns map[string]httpclient.Connection
	if *resolve {
		c, err := config.LoadConnections(*file)
		if err != nil {
			return err
		}
		conns = config.HTTP(c)
	}
	results := checkFiles(paths, *resolve, conns)
	results = append(results, checkTwoWayFiles(paths, *resolve, conns)...)
	bad := 0
	for _, r := range results {
		if len(r.problems) == 0 {
			fmt.Fprintf(e.out, "ok %s (%s)\n", r.file, r.spec.Name)
		} else {
			bad++
			for _, p := range r.problems {
				fmt.Fprintln(e.out, p)
			}
		}
		for _, w := range r.spec.Warnings {
			fmt.Fprintln(e.out, "warning:", w)
		}
	}
	switch {
	case len(results) == 0:
		return fmt.Errorf("no integration files (*.yaml, *.yml) in %v", paths)
	case bad > 0:
		return fmt.Errorf("%d of %d integration files have problems", bad, len(results))
	}
	return nil
}

// fileResult is what became of one integration file, or of a path that
// could not be read.
type fileResult struct {
	file     string
	spec     declarative.Spec
	problems []error
}

// checkFiles loads the integration files of paths (files, or directories
// of them), checks their names are unique among them and the Go
// integrations, and with resolve reads their secrets and schema files.
func checkFiles(paths []string, resolve bool, conns map[string]httpclient.Connection) []*fileResult {
	var results []*fileResult
	byFile := map[string]*fileResult{}
	add := func(file string) *fileResult {
		if r, ok := byFile[file]; ok {
			return r
		}
		r := &fileResult{file: file}
		byFile[file] = r
		results = append(results, r)
		return r
	}
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			add(p).problems = append(add(p).problems, &declarative.Problem{File: p, Reason: "cannot read: " + unwrapPath(err).Error()})
			continue
		}
		if !info.IsDir() {
			if !declarative.IsTwoWay(p) {
				add(p)
			}
			continue
		}
		files, err := declarative.Files(p)
		if err != nil {
			add(p).problems = append(add(p).problems, err)
			continue
		}
		for _, f := range files {
			add(f)
		}
	}

	goNames := map[string]bool{}
	for _, d := range integrations.All(config.Connection{BaseURL: "http://127.0.0.1:8081", Auth: "none"}) {
		goNames[d.Name] = true
	}
	var specs []declarative.Spec
	for _, r := range results {
		if len(r.problems) > 0 {
			continue
		}
		s, err := declarative.Load(r.file)
		if err != nil {
			r.problems = append(r.problems, unjoin(err)...)
			continue
		}
		r.spec = s
		specs = append(specs, s)
		if goNames[s.Name] {
			r.problems = append(r.problems, &declarative.Problem{File: r.file, Pointer: "/name",
				Reason: fmt.Sprintf("integration %q is also defined in Go (workers/integrations): names must be unique", s.Name)})
		}
	}
	for _, err := range unjoin(declarative.CheckNames(specs)) {
		for _, p := range declarative.Problems(err) {
			byFile[p.File].problems = append(byFile[p.File].problems, p)
		}
	}
	if resolve {
		// Schema files given by path must compile, as in the worker.
		sch := schema.NewEmptyRegistry()
		for _, r := range results {
			if r.spec.File == "" || len(r.problems) > 0 {
				continue
			}
			res, err := r.spec.Resolve(os.LookupEnv, os.ReadFile, conns)
			if err != nil {
				r.problems = append(r.problems, unjoin(err)...)
				continue
			}
			if res.Schema != nil {
				if err := sch.Add(res.Definition.Schema, res.Schema); err != nil {
					r.problems = append(r.problems, &declarative.Problem{File: r.file, Pointer: "/schema", Reason: err.Error()})
				}
			}
		}
	}
	return results
}

// checkTwoWayFiles loads the two-way integration files of paths (kind:
// two-way), as a worker does at start; with resolve reading their secrets
// and connections.
func checkTwoWayFiles(paths []string, resolve bool, conns map[string]httpclient.Connection) []*fileResult {
	var files []string
	for _, p := range paths {
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			fs, _ := declarative.TwoWayFiles(p)
			files = append(files, fs...)
		} else if err == nil && declarative.IsTwoWay(p) {
			files = append(files, p)
		}
	}
	var results []*fileResult
	for _, f := range files {
		var lookup func(string) (string, bool)
		if resolve {
			lookup = os.LookupEnv
		}
		d, err := declarative.LoadTwoWay(f, lookup, os.ReadFile, conns)
		r := &fileResult{file: f, spec: declarative.Spec{Name: d.Name}}
		r.problems = unjoin(err)
		results = append(results, r)
	}
	return results
}

// unjoin lists the errors an errors.Join holds.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return slices.Clone(j.Unwrap())
	}
	return []error{err}
}

// unwrapPath drops the path an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
