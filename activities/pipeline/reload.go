package pipeline

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Bounds of the previous versions a worker keeps for the runs pinned to
// them (Deps.KeepVersions, Deps.RetainUnused).
const (
	DefaultKeepVersions = 5
	DefaultRetainUnused = 24 * time.Hour
)

// Fingerprint identifies one version of an integration's definition. A run
// is pinned to the fingerprint StartRun returns (syncstep.Plan.Definition):
// every later step of the run uses that version, even after a reload.
//
// It is made of the name and version and, for an integration declared in a
// file, declared: the file's declarative.Spec Hash (so it changes with any
// setting, mapping, secret reference or schema file, and not with the
// secrets' values). For a Go integration (declared ""), it is made of the
// definition's JSON without its Go functions (Transform, a mapping's
// Compute: only whether there is a Transform counts) and without the
// secrets' values (auth tokens, API keys, client secrets, a PostgreSQL
// source's dsn), which can be rotated without unpinning anything. A Go
// definition changes only with a new worker binary or configuration, that
// is with a restart: a run pinned to the old one then fails with a
// configuration error unless the fingerprint is the same.
func Fingerprint(def integration.Definition, declared string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00", def.Name, def.Version)
	if declared != "" {
		fmt.Fprintf(h, "file\x00%s", declared)
	} else {
		b, err := definitionJSON(def)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "go\x00%s", b)
	}
	return fmt.Sprintf("v%d-%s", def.Version, hex.EncodeToString(h.Sum(nil)[:8])), nil
}

// definitionJSON is the JSON of a Go definition's serialisable fields, its
// secrets replaced by whether they are set. Its top-level fields are keyed
// by their Go names (sorted); a function field counts as whether it is set.
func definitionJSON(def integration.Definition) ([]byte, error) {
	def = withoutSecrets(def)
	v := reflect.ValueOf(def)
	t := v.Type()
	fields := make(map[string]any, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Type.Kind() == reflect.Func {
			fields[f.Name] = !v.Field(i).IsNil()
			continue
		}
		fields[f.Name] = v.Field(i).Interface()
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("fingerprint: the definition is not serialisable: %w", err)
	}
	return b, nil
}

// withoutSecrets returns def with every secret value replaced by a marker
// saying it is set; the configuration it points into is copied, not changed.
func withoutSecrets(def integration.Definition) integration.Definition {
	if s := def.Source.HTTP; s != nil {
		c := *s
		c.Auth = authWithoutSecrets(c.Auth)
		def.Source.HTTP = &c
	}
	if s := def.Source.Postgres; s != nil {
		c := *s
		c.DSN = secretMarker(c.DSN)
		def.Source.Postgres = &c
	}
	def.Destination = destinationWithoutSecrets(def.Destination)
	if def.Destinations != nil {
		dests := make([]integration.Destination, len(def.Destinations))
		for i, d := range def.Destinations {
			dests[i] = destinationWithoutSecrets(d)
		}
		def.Destinations = dests
	}
	return def
}

func destinationWithoutSecrets(d integration.Destination) integration.Destination {
	if d.HTTP != nil {
		c := *d.HTTP
		c.Auth = authWithoutSecrets(c.Auth)
		d.HTTP = &c
	}
	return d
}

func authWithoutSecrets(a httpclient.Auth) httpclient.Auth {
	a.Token = secretMarker(a.Token)
	a.APIKey = secretMarker(a.APIKey)
	a.ClientSecret = secretMarker(a.ClientSecret)
	return a
}

func secretMarker(s string) string {
	if s == "" {
		return ""
	}
	return "(set)"
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

// Reload makes reg's integrations the ones a's new runs use, without
// stopping the worker. declared maps the integrations declared in files to their
// declarative.Spec Hash (see Fingerprint; nil when there are none). Every
// integration is compiled first: when any does not compile, nothing
// changes and every problem is returned. An integration whose fingerprint
// did not change keeps its compiled form (its clients and their state).
// The versions replaced stay available to the runs pinned to them: at most
// Deps.KeepVersions per integration, the most recently used, each until no
// step used it for Deps.RetainUnused. Reloads are serialised; steps run
// meanwhile.
//
// Reload and CurrentDefinition are functions, not methods: a worker
// registers every exported method of Activities as an activity.
func Reload(a *Activities, reg *integration.Registry, declared map[string]string) (Changes, error) {
	if reg == nil {
		return Changes{}, errors.New("reload: no integrations given")
	}
	d := a.defs
	d.reloading.Lock()
	defer d.reloading.Unlock()

	next := make(map[string]*version, len(reg.Names()))
	var fresh []*compiled
	var errs []error
	for _, def := range reg.All() {
		fp, err := Fingerprint(def, declared[def.Name])
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", def.Name, err))
			continue
		}
		if v := d.find(def.Name, fp); v != nil {
			next[def.Name] = v
			continue
		}
		c, err := compile(def, a.deps)
		if err != nil {
			errs = append(errs, fmt.Errorf("integration %q: %w", def.Name, err))
			closeSource(c)
			continue
		}
		c.fingerprint = fp
		fresh = append(fresh, c)
		next[def.Name] = &version{c: c}
	}
	if err := errors.Join(errs...); err != nil {
		for _, c := range fresh {
			closeSource(c)
		}
		return Changes{}, err
	}

	now := d.now()
	d.mu.Lock()
	var ch Changes
	for _, name := range slices.Sorted(maps.Keys(next)) {
		switch old, ok := d.current[name]; {
		case !ok:
			ch.Added = append(ch.Added, name)
		case old != next[name]:
			ch.Changed = append(ch.Changed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(d.current)) {
		old := d.current[name]
		if _, ok := next[name]; !ok {
			ch.Removed = append(ch.Removed, name)
		}
		if next[name] == old {
			continue
		}
		// It was current until now: its retention starts now.
		old.lastUsed.Store(max(old.lastUsed.Load(), now.UnixNano()))
		d.previous[name] = append([]*version{old}, d.previous[name]...)
	}
	// A previous version current again (a file put back) is current only.
	for name, v := range next {
		d.previous[name] = slices.DeleteFunc(d.previous[name], func(p *version) bool { return p == v })
	}
	d.current = next
	dropped := d.prune(now)
	d.mu.Unlock()

	for _, v := range dropped {
		a.log.Info("integration definition dropped: no run used it lately", "integration", v.c.def.Name, "definition", v.c.fingerprint)
		closeSource(v.c)
	}
	return ch, nil
}

// CurrentDefinition returns the fingerprint of the named integration's
// current definition in a, the one new runs are pinned to.
func CurrentDefinition(a *Activities, name string) (string, bool) {
	a.defs.mu.RLock()
	defer a.defs.mu.RUnlock()
	v, ok := a.defs.current[name]
	if !ok {
		return "", false
	}
	return v.c.fingerprint, true
}

// version is one compiled definition of an integration.
type version struct {
	c *compiled
	// lastUsed is when a step last used it (Unix nanoseconds), or when it
	// stopped being current.
	lastUsed atomic.Int64
}

// definitions are the integrations a worker runs: the current version of
// each, for new runs, and previous ones runs may still be pinned to.
type definitions struct {
	keep   int
	retain time.Duration
	now    func() time.Time

	reloading sync.Mutex // one Reload at a time
	mu        sync.RWMutex
	current   map[string]*version
	previous  map[string][]*version // newest first
}

func newDefinitions(d Deps) *definitions {
	keep, retain := d.KeepVersions, d.RetainUnused
	if keep <= 0 {
		keep = DefaultKeepVersions
	}
	if retain <= 0 {
		retain = DefaultRetainUnused
	}
	return &definitions{keep: keep, retain: retain, now: time.Now,
		current: map[string]*version{}, previous: map[string][]*version{}}
}

// find returns the version of an integration with fingerprint fp, current
// or previous, if the worker has it.
func (d *definitions) find(name, fp string) *version {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if v := d.current[name]; v != nil && v.c.fingerprint == fp {
		return v
	}
	for _, v := range d.previous[name] {
		if v.c.fingerprint == fp {
			return v
		}
	}
	return nil
}

// get returns the version of an integration a step uses: the one the run
// is pinned to (pinned, a fingerprint), or the current one when the run
// is not pinned (started before runs were).
func (d *definitions) get(name, pinned string) (*compiled, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	cur := d.current[name]
	var v *version
	if pinned == "" || (cur != nil && cur.c.fingerprint == pinned) {
		v = cur
	} else {
		for _, p := range d.previous[name] {
			if p.c.fingerprint == pinned {
				v = p
				break
			}
		}
	}
	if v != nil {
		v.lastUsed.Store(d.now().UnixNano())
		return v.c, nil
	}
	if cur == nil && (pinned == "" || len(d.previous[name]) == 0) {
		return nil, failure.Permanent(failure.TypeConfig,
			fmt.Errorf("unknown integration %q: this worker runs %v", name, slices.Sorted(maps.Keys(d.current))))
	}
	now := "this worker no longer runs it"
	if cur != nil {
		now = "its current definition is " + cur.c.fingerprint
	}
	return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf(
		"integration %q: this run is pinned to definition %s, which this worker does not have (%s): "+
			"the integration changed after the run started, and the worker was restarted or dropped that version since. "+
			"Start a new run: it uses the current definition and resumes from the last checkpoint; "+
			"or, to finish this run as it started, restore the integration as it was (its file, or the worker's version) and reset the run from the Web UI",
		name, pinned, now))
}

// prune drops the previous versions unused for longer than retain, and
// beyond the keep most recently used of an integration. d.mu is held.
func (d *definitions) prune(now time.Time) (dropped []*version) {
	for name, vs := range d.previous {
		kept := vs[:0:0]
		for _, v := range vs {
			if now.Sub(time.Unix(0, v.lastUsed.Load())) > d.retain {
				dropped = append(dropped, v)
				continue
			}
			kept = append(kept, v)
		}
		if len(kept) > d.keep {
			byUse := slices.Clone(kept)
			slices.SortStableFunc(byUse, func(a, b *version) int { return cmp.Compare(b.lastUsed.Load(), a.lastUsed.Load()) })
			for _, v := range byUse[d.keep:] {
				dropped = append(dropped, v)
			}
			kept = slices.DeleteFunc(kept, func(v *version) bool { return slices.Contains(byUse[d.keep:], v) })
		}
		if len(kept) == 0 {
			delete(d.previous, name)
			continue
		}
		d.previous[name] = kept
	}
	return dropped
}

// closeSource releases what a compiled definition holds open (a
// PostgreSQL source's connections).
func closeSource(c *compiled) {
	if c == nil {
		return
	}
	cl, ok := c.src.(io.Closer)
	if !ok || reflect.ValueOf(cl).IsZero() { // a source that failed to build is a nil pointer
		return
	}
	_ = cl.Close()
}
