// Package catalog holds the integrations a worker runs, compiled: for each,
// its source, schema, mapping and sinks (opened through the connector
// registry), by version. A run is pinned to the version it started with
// (Fingerprint, recorded in its plan); every step asks the catalog for that
// version, so a run finishes as it started even when the integration files
// change meanwhile (Reload).
package catalog

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/schema"
)

// Bounds of the previous versions a worker keeps for the runs pinned to
// them (Options.KeepVersions, Options.RetainUnused).
const (
	DefaultKeepVersions = 5
	DefaultRetainUnused = 24 * time.Hour
)

// Options are what a catalog compiles integrations with.
type Options struct {
	// Connectors opens sources and sinks (connector/builtin's, plus any
	// the worker adds).
	Connectors *connector.Registry
	// Schemas are the compiled JSON Schemas integrations name.
	Schemas *schema.Registry
	Logger  *slog.Logger
	// KeepVersions bounds the previous versions of an integration kept,
	// after a Reload, for the runs pinned to them (default 5, the most
	// recently used).
	KeepVersions int
	// RetainUnused drops a previous version no step used for this long
	// (default 24h).
	RetainUnused time.Duration
	// Now is the clock of the retention (default time.Now).
	Now func() time.Time
}

// Catalog is the integrations a worker runs: the current version of each,
// for new runs, and previous ones runs may still be pinned to. It is safe
// for concurrent use.
type Catalog struct {
	opts Options
	log  *slog.Logger

	reloading sync.Mutex // one Reload at a time
	mu        sync.RWMutex
	current   map[string]*version
	previous  map[string][]*version // newest first
}

// version is one compiled definition of an integration.
type version struct {
	in *Integration
	// lastUsed is when a step last used it (Unix nanoseconds), or when it
	// stopped being current.
	lastUsed atomic.Int64
}

// New returns an empty catalog; Reload fills it.
func New(opts Options) *Catalog {
	if opts.KeepVersions <= 0 {
		opts.KeepVersions = DefaultKeepVersions
	}
	if opts.RetainUnused <= 0 {
		opts.RetainUnused = DefaultRetainUnused
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Catalog{opts: opts, log: opts.Logger, current: map[string]*version{}, previous: map[string][]*version{}}
}

// Changes says what a Reload changed, by integration name (sorted).
type Changes struct {
	Added   []string
	Changed []string
	Removed []string
}

// Empty reports whether the reload changed nothing.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Changed) == 0 && len(c.Removed) == 0
}

// Reload makes reg's integrations the ones new runs use, without stopping
// the worker. declared maps the integrations declared in files to their
// declarative.Spec Hash (see Fingerprint; nil when there are none). Every
// integration is compiled first: when any does not compile, nothing
// changes and every problem is returned. An integration whose fingerprint
// did not change keeps its compiled form (its clients and their state).
// The versions replaced stay available to the runs pinned to them: at most
// Options.KeepVersions per integration, the most recently used, each until
// no step used it for Options.RetainUnused. Reloads are serialised; steps
// run meanwhile.
func (c *Catalog) Reload(reg *integration.Registry, declared map[string]string) (Changes, error) {
	if reg == nil {
		return Changes{}, errors.New("reload: no integrations given")
	}
	c.reloading.Lock()
	defer c.reloading.Unlock()

	next := make(map[string]*version, len(reg.Names()))
	var fresh []*Integration
	var errs []error
	for _, def := range reg.All() {
		fp, err := Fingerprint(def, declared[def.Name])
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", def.Name, err))
			continue
		}
		if v := c.find(def.Name, fp); v != nil {
			next[def.Name] = v
			continue
		}
		in, err := c.compile(def)
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", def.Name, err))
			in.close()
			continue
		}
		in.Fingerprint = fp
		fresh = append(fresh, in)
		next[def.Name] = &version{in: in}
	}
	if err := errors.Join(errs...); err != nil {
		for _, in := range fresh {
			in.close()
		}
		return Changes{}, err
	}
	ch, dropped := c.swap(next)
	for _, v := range dropped {
		c.log.Info("integration definition dropped: no run used it lately", "integration", v.in.Def.Name, "definition", v.in.Fingerprint)
		v.in.close()
	}
	return ch, nil
}

// swap makes next current, keeps the versions it replaces as previous
// ones, and prunes those; it returns what changed and what was dropped.
func (c *Catalog) swap(next map[string]*version) (Changes, []*version) {
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var ch Changes
	for _, name := range slices.Sorted(maps.Keys(next)) {
		switch old, ok := c.current[name]; {
		case !ok:
			ch.Added = append(ch.Added, name)
		case old != next[name]:
			ch.Changed = append(ch.Changed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.current)) {
		old := c.current[name]
		if _, ok := next[name]; !ok {
			ch.Removed = append(ch.Removed, name)
		}
		if next[name] == old {
			continue
		}
		// It was current until now: its retention starts now.
		old.lastUsed.Store(max(old.lastUsed.Load(), now.UnixNano()))
		c.previous[name] = append([]*version{old}, c.previous[name]...)
	}
	// A previous version current again (a file put back) is current only.
	for name, v := range next {
		c.previous[name] = slices.DeleteFunc(c.previous[name], func(p *version) bool { return p == v })
	}
	c.current = next
	return ch, c.prune(now)
}

// Current returns the fingerprint of the named integration's current
// definition, the one new runs are pinned to.
func (c *Catalog) Current(name string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.current[name]
	if !ok {
		return "", false
	}
	return v.in.Fingerprint, true
}

// Names lists the integrations new runs can use, sorted.
func (c *Catalog) Names() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Sorted(maps.Keys(c.current))
}

// find returns the version of an integration with fingerprint fp, current
// or previous, if the worker has it.
func (c *Catalog) find(name, fp string) *version {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if v := c.current[name]; v != nil && v.in.Fingerprint == fp {
		return v
	}
	for _, v := range c.previous[name] {
		if v.in.Fingerprint == fp {
			return v
		}
	}
	return nil
}

// Get returns the version of an integration a step uses: the one the run
// is pinned to (pinned, a fingerprint), or the current one when pinned is
// empty (a new run, or one started before runs were pinned). An integration
// the worker does not have, or no longer has in that version, is a
// permanent failure.TypeConfig error saying what to do.
func (c *Catalog) Get(name, pinned string) (*Integration, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cur := c.current[name]
	var v *version
	if pinned == "" || (cur != nil && cur.in.Fingerprint == pinned) {
		v = cur
	} else {
		for _, p := range c.previous[name] {
			if p.in.Fingerprint == pinned {
				v = p
				break
			}
		}
	}
	if v != nil {
		v.lastUsed.Store(c.opts.Now().UnixNano())
		return v.in, nil
	}
	if cur == nil && (pinned == "" || len(c.previous[name]) == 0) {
		return nil, failure.Permanent(failure.TypeConfig,
			fmt.Errorf("unknown integration %q: this worker runs %v", name, slices.Sorted(maps.Keys(c.current))))
	}
	now := "this worker no longer runs it"
	if cur != nil {
		now = "its current definition is " + cur.in.Fingerprint
	}
	return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf(
		"integration %q: this run is pinned to definition %s, which this worker does not have (%s): "+
			"the integration changed after the run started, and the worker was restarted or dropped that version since. "+
			"Start a new run: it uses the current definition and resumes from the last checkpoint; "+
			"or, to finish this run as it started, restore the integration as it was (its file, or the worker's version) and reset the run from the Web UI",
		name, pinned, now))
}

// prune drops the previous versions unused for longer than the retention,
// and beyond the KeepVersions most recently used of an integration. c.mu
// is held.
func (c *Catalog) prune(now time.Time) (dropped []*version) {
	for name, vs := range c.previous {
		kept := vs[:0:0]
		for _, v := range vs {
			if now.Sub(time.Unix(0, v.lastUsed.Load())) > c.opts.RetainUnused {
				dropped = append(dropped, v)
				continue
			}
			kept = append(kept, v)
		}
		if keep := c.opts.KeepVersions; len(kept) > keep {
			byUse := slices.Clone(kept)
			slices.SortStableFunc(byUse, func(a, b *version) int { return cmp.Compare(b.lastUsed.Load(), a.lastUsed.Load()) })
			dropped = append(dropped, byUse[keep:]...)
			kept = slices.DeleteFunc(kept, func(v *version) bool { return slices.Contains(byUse[keep:], v) })
		}
		if len(kept) == 0 {
			delete(c.previous, name)
			continue
		}
		c.previous[name] = kept
	}
	return dropped
}
