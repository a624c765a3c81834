package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"go.uber.org/fx"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/integration/declarative"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/workers/config"
)

// NewIntegrations registers the integrations this worker runs: the Go ones
// and those of the integration files (resolved, their schema files added to
// sch), limited to worker.integrations when that is set.
func NewIntegrations(cfg config.Config, defs []integration.Definition, declared *declarative.Set, sch *schema.Registry) (*integration.Registry, error) {
	return BuildRegistry(cfg, defs, declared.Current(), sch)
}

// BuildRegistry registers the Go integrations defs and those of the
// integration files specs, as NewIntegrations does at start and
// ReloadIntegrations after a change.
func BuildRegistry(cfg config.Config, defs []integration.Definition, specs []declarative.Spec, sch *schema.Registry) (*integration.Registry, error) {
	resolved, err := ResolveDeclared(specs, defs, os.LookupEnv, os.ReadFile, config.HTTP(cfg.Connections))
	if err != nil {
		return nil, fmt.Errorf("integrations_dir %s:\n%w", cfg.IntegrationsDir, err)
	}
	defs = slices.Clone(defs)
	for _, r := range resolved {
		if r.Schema != nil {
			if err := sch.Add(r.Definition.Schema, r.Schema); err != nil {
				return nil, fmt.Errorf("integration %q: %w", r.Definition.Name, err)
			}
		}
		defs = append(defs, r.Definition)
	}
	if len(cfg.Worker.Integrations) > 0 {
		var kept []integration.Definition
		known := make([]string, 0, len(defs))
		for _, d := range defs {
			known = append(known, d.Name)
			if slices.Contains(cfg.Worker.Integrations, d.Name) {
				kept = append(kept, d)
			}
		}
		for _, want := range cfg.Worker.Integrations {
			if !slices.Contains(known, want) {
				return nil, fmt.Errorf("worker.integrations: unknown integration %q (known: %s)", want, strings.Join(known, ", "))
			}
		}
		defs = kept
	}
	r, err := integration.NewRegistry(defs...)
	if err != nil {
		return nil, fmt.Errorf("integrations:\n%w", err)
	}
	return r, nil
}

// NewDeclared loads the integration files of integrations_dir and keeps
// watching the directory while the worker runs. A file that does not load
// or resolve, or an integration name a Go integration has, stops the
// worker with every problem. Later changes are checked the same way and
// replace the set only when good; NewActivities reloads the integrations
// when the set changes.
func NewDeclared(lc fx.Lifecycle, cfg config.Config, defs []integration.Definition, log *slog.Logger) (*declarative.Set, error) {
	dir := cfg.IntegrationsDir
	if dir == "" {
		return declarative.NewSet(nil, nil), nil
	}
	check := func(specs []declarative.Spec) error {
		_, err := ResolveDeclared(specs, defs, os.LookupEnv, os.ReadFile, config.HTTP(cfg.Connections))
		return err
	}
	// Every problem at once: of the files that do not load, and of those
	// that do but do not resolve.
	files, err := declarative.Files(dir)
	if err != nil {
		return nil, err
	}
	var specs []declarative.Spec
	var errs []error
	for _, f := range files {
		s, err := declarative.Load(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, w := range s.Warnings {
			log.Warn("integration file: "+w.Reason, "file", w.File, "line", w.Line, "key", w.Pointer)
		}
		specs = append(specs, s)
	}
	errs = append(errs, declarative.CheckNames(specs), check(specs))
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("integrations_dir %s:\n%w", dir, err)
	}
	set := declarative.NewSet(specs, check)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				err := declarative.Watch(ctx, dir, func(specs []declarative.Spec, err error) {
					if err := set.Apply(specs, err); err != nil {
						log.Error("integration files changed but do not load; the last good ones stay", "dir", dir, "error", err)
					}
				})
				if err != nil {
					log.Warn("integration files are not watched", "error", err)
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
			<-done
			return nil
		},
	})
	log.Info("integration files loaded", "dir", dir, "integrations", len(specs))
	return set, nil
}

// ResolveDeclared resolves the specs of integration files for a worker
// that also runs the Go integrations defs and has the connections conns:
// every problem, and every name both define, is reported, joined.
func ResolveDeclared(specs []declarative.Spec, defs []integration.Definition, env func(string) (string, bool), readFile func(string) ([]byte, error), conns map[string]httpclient.Connection) ([]declarative.Resolved, error) {
	goNames := make(map[string]bool, len(defs))
	for _, d := range defs {
		goNames[d.Name] = true
	}
	var out []declarative.Resolved
	var errs []error
	for _, s := range specs {
		if goNames[s.Name] {
			errs = append(errs, &declarative.Problem{File: s.File, Pointer: "/name",
				Reason: fmt.Sprintf("integration %q is also defined in Go (workers/integrations): names must be unique", s.Name)})
			continue
		}
		r, err := s.Resolve(env, readFile, conns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// NewSchemas compiles every schema in schemas/ once.
func NewSchemas() (*schema.Registry, error) { return schema.NewRegistry(schemas.FS()) }

// ReloadIntegrations makes the Go integrations defs and those of the
// integration files specs the ones new runs use (catalog.Catalog Reload)
// and logs what changed. When they do not register or compile, it
// logs every problem and returns them: the integrations in use stay.
func ReloadIntegrations(cfg config.Config, defs []integration.Definition, specs []declarative.Spec, sch *schema.Registry, cat *catalog.Catalog, log *slog.Logger) error {
	reg, err := BuildRegistry(cfg, defs, specs, sch)
	var ch catalog.Changes
	if err == nil {
		ch, err = cat.Reload(reg, DeclaredHashes(specs))
	}
	if err != nil {
		log.Error("integration files changed but the integrations do not compile; the previous definitions stay in use",
			"dir", cfg.IntegrationsDir, "error", err)
		return err
	}
	if ch.Empty() {
		log.Info("integration files changed; no integration this worker runs did", "dir", cfg.IntegrationsDir)
		return nil
	}
	withFingerprints := func(names []string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			fp, _ := cat.Current(n)
			out[i] = n + "@" + fp
		}
		return out
	}
	log.Info("integrations reloaded: new runs use the new definitions; running runs finish with the one they started with",
		"dir", cfg.IntegrationsDir, "added", withFingerprints(ch.Added), "changed", withFingerprints(ch.Changed), "removed", ch.Removed)
	return nil
}

// DeclaredHashes maps the integrations of integration files to their
// spec's Hash, which their definition's fingerprint is made of.
func DeclaredHashes(specs []declarative.Spec) map[string]string {
	m := make(map[string]string, len(specs))
	for _, s := range specs {
		m[s.Name] = s.Hash()
	}
	return m
}
