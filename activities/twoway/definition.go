package twoway

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetherflow/tether/activities/connector"
)

// Definition declares a two-way integration: two systems kept as equals,
// each record linked to its twin, changes flowing both ways once, and
// conflicts resolved by Policy.
type Definition struct {
	// Name names the integration (lower-case letters, digits, dashes).
	Name string
	// A and B are the two sides.
	A, B SideSpec
	// Match lists shared fields that link a record found on both sides
	// before either was synced (e.g. email), instead of creating it twice.
	Match []string
	// Policy resolves conflicts and deletes.
	Policy Policy
	// Every is how often both sides' change feeds are read (default 10s).
	Every time.Duration
	// Overlap re-reads each feed this far before where it was read up to
	// (default 5s), so a change committed late under an earlier time is
	// still seen; re-reading is harmless.
	Overlap time.Duration
}

// SideSpec is one side: a name for people, and the system: a table
// (Postgres), a REST resource (HTTP), or any other kind of side registered
// on the worker's connector registry (Kind and Config).
type SideSpec struct {
	// Name names the side in status, conflicts and the CLI ("crm").
	Name     string
	Postgres *PostgresSide
	HTTP     *HTTPSide
	// Kind and Config open a side of another kind: a connector.Side
	// registered with connector.Registry.RegisterSide (it passes
	// connectortest.Side). Shared lists the shared fields it maps.
	Kind   string
	Config any
	Shared []string
	// Casts converts shared fields between the side's form and the
	// shared one: shared field → cast ("cents", "string", "unix", or one
	// registered with RegisterCast).
	Casts map[string]string
	// Computed makes shared fields of several of the side's fields, and
	// splits them back: shared field → compute and the side's fields it
	// is made of (e.g. name from first_name and last_name).
	Computed map[string]Computed
}

// Kinds of the shipped sides, as registered in connector/builtin.
const (
	KindPostgres = "postgres"
	KindHTTP     = "http"
)

// Fields are the side's shared fields (shared field → the side's name
// for it; a side of another kind maps its own), computed ones included.
func (s SideSpec) Fields() map[string]string {
	return sharedFields(s.own(), s.Computed)
}

// own are the fields the side's connector maps (field → the side's name
// for it), before computed fields are made of some.
func (s SideSpec) own() map[string]string {
	switch {
	case s.Postgres != nil:
		return s.Postgres.Fields
	case s.HTTP != nil:
		return s.HTTP.Fields
	case s.Kind != "":
		m := make(map[string]string, len(s.Shared))
		for _, f := range s.Shared {
			m[f] = f
		}
		return m
	}
	return nil
}

// kind is the side's kind and configuration, as the registry opens it.
func (s SideSpec) kind() (string, any) {
	switch {
	case s.Postgres != nil:
		return KindPostgres, *s.Postgres
	case s.HTTP != nil:
		return KindHTTP, *s.HTTP
	}
	return s.Kind, s.Config
}

// Defaults of a Definition.
const (
	DefaultEvery   = 10 * time.Second
	DefaultOverlap = 5 * time.Second
)

// WithDefaults fills in the defaults.
func (d Definition) WithDefaults() Definition {
	if d.Every == 0 {
		d.Every = DefaultEvery
	}
	if d.Overlap == 0 {
		d.Overlap = DefaultOverlap
	}
	if d.Policy.Deletes == "" {
		d.Policy.Deletes = Propagate
	}
	return d
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Validate says everything that is wrong with d, each problem naming its
// setting.
func (d Definition) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("two-way integration %q: %s: %w", d.Name, field, err))
		}
	}
	if !nameRE.MatchString(d.Name) {
		add("name", errors.New("must be lower-case letters, digits and dashes, starting with a letter"))
	}
	for _, s := range []struct {
		field string
		spec  SideSpec
	}{{"a", d.A}, {"b", d.B}} {
		switch {
		case s.spec.Name == "":
			add(s.field+".name", errors.New("is required: it names the side in status and conflicts"))
		case count(s.spec.Postgres != nil, s.spec.HTTP != nil, s.spec.Kind != "") != 1:
			add(s.field, errors.New("set exactly one of postgres, http and kind"))
		case s.spec.Postgres != nil:
			add(s.field+".postgres", s.spec.Postgres.Validate())
		case s.spec.HTTP != nil:
			add(s.field+".http", s.spec.HTTP.Validate())
		default:
			if len(s.spec.Shared) == 0 {
				add(s.field+".shared", fmt.Errorf("list the shared fields the %s side maps", s.spec.Kind))
			}
		}
		for _, err := range checkComputed(s.spec.Computed, s.spec.own()) {
			add(s.field, err)
		}
		for _, f := range slices.Sorted(maps.Keys(s.spec.Casts)) {
			if _, ok := s.spec.Fields()[f]; !ok {
				add(s.field+".casts."+f, errors.New("not a shared field"))
			} else if _, ok := castNamed(s.spec.Casts[f]); !ok {
				add(s.field+".casts."+f, fmt.Errorf("no cast %q (known: %s)", s.spec.Casts[f], strings.Join(castNames(), ", ")))
			}
		}
	}
	if d.A.Name != "" && d.A.Name == d.B.Name {
		add("b.name", fmt.Errorf("%q is a's name too", d.B.Name))
	}
	fa, fb := d.A.Fields(), d.B.Fields()
	for _, f := range slices.Sorted(maps.Keys(fa)) {
		if _, ok := fb[f]; !ok && fb != nil {
			add("b.fields", fmt.Errorf("shared field %q of a has no member on b: both sides map the same shared fields", f))
		}
	}
	for _, f := range slices.Sorted(maps.Keys(fb)) {
		if _, ok := fa[f]; !ok && fa != nil {
			add("a.fields", fmt.Errorf("shared field %q of b has no member on a: both sides map the same shared fields", f))
		}
	}
	for i, m := range d.Match {
		if _, ok := fa[m]; !ok {
			add(fmt.Sprintf("match[%d]", i), fmt.Errorf("%q is not a shared field", m))
		}
	}
	for _, f := range slices.Sorted(maps.Keys(d.Policy.Owners)) {
		if _, ok := fa[f]; !ok {
			add("conflicts.owners."+f, errors.New("not a shared field"))
		}
	}
	if err := d.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("two-way integration %q: %w", d.Name, err))
	}
	if d.Policy.Deletes == Tombstone {
		for _, s := range []struct {
			field string
			spec  SideSpec
		}{{"a", d.A}, {"b", d.B}} {
			if s.spec.Postgres != nil && s.spec.Postgres.DeletedAt == "" {
				add(s.field+".postgres.deleted_at", errors.New("deletes: tombstone marks a deleted row: name its deleted_at column"))
			}
			if s.spec.HTTP != nil {
				add(s.field+".http", errors.New("deletes: tombstone needs a side that marks deleted records; an API's records are deleted (deletes: propagate)"))
			}
		}
	}
	if d.Every < 0 || d.Overlap < 0 {
		add("every", errors.New("every and overlap must not be negative"))
	}
	return errors.Join(errs...)
}

// Open opens the side's endpoint through the worker's connector registry
// (connector/builtin registers the shipped kinds), with its casts.
func (s SideSpec) Open(integration string, conns *connector.Registry) (Endpoint, error) {
	kind, cfg := s.kind()
	e, err := conns.OpenSide(kind, connector.SideSpec{Integration: integration, Side: s.Name, Config: cfg})
	if err != nil {
		return nil, err
	}
	return withCasts(e, s.Computed, s.Casts)
}

func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// Registry holds the two-way integrations a worker runs. It is safe for
// concurrent use: Replace swaps in a new set (integration files changed)
// while cycles read it.
type Registry struct {
	mu   sync.RWMutex
	defs map[string]Definition
	// gen counts each integration's changes: sides opened for an older
	// generation are opened again.
	gen map[string]int
}

// NewRegistry checks defs and holds them.
func NewRegistry(defs ...Definition) (*Registry, error) {
	m, err := checked(defs)
	gen := make(map[string]int, len(m))
	for name := range m {
		gen[name] = 1
	}
	return &Registry{defs: m, gen: gen}, err
}

// checked validates defs and keys them by name, with their defaults.
func checked(defs []Definition) (map[string]Definition, error) {
	m := map[string]Definition{}
	var errs []error
	for _, d := range defs {
		if err := d.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := m[d.Name]; dup {
			errs = append(errs, fmt.Errorf("two-way integration %q is defined twice", d.Name))
		}
		m[d.Name] = d.WithDefaults()
	}
	return m, errors.Join(errs...)
}

// Changes are what a Replace did, by integration name, sorted.
type Changes struct {
	Added, Removed, Changed []string
}

// Empty says nothing changed.
func (c Changes) Empty() bool { return len(c.Added)+len(c.Removed)+len(c.Changed) == 0 }

// Replace checks defs as NewRegistry does and, when they are valid and
// every side opens through conns (nil: not checked), makes them the
// registry's integrations; otherwise it keeps the current ones and says
// why. Cycles that begin after it use the new definitions.
func (r *Registry) Replace(conns *connector.Registry, defs ...Definition) (Changes, error) {
	m, err := checked(defs)
	if err == nil && conns != nil {
		err = (&Registry{defs: m}).Check(conns)
	}
	if err != nil {
		return Changes{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var ch Changes
	for _, name := range slices.Sorted(maps.Keys(m)) {
		old, ok := r.defs[name]
		switch {
		case !ok:
			ch.Added = append(ch.Added, name)
		case !reflect.DeepEqual(old, m[name]): // a Go resolver compares unequal: its sides are opened again, harmlessly
			ch.Changed = append(ch.Changed, name)
		default:
			continue
		}
		r.gen[name]++
	}
	for _, name := range slices.Sorted(maps.Keys(r.defs)) {
		if _, ok := m[name]; !ok {
			ch.Removed = append(ch.Removed, name)
			delete(r.gen, name)
		}
	}
	r.defs = m
	return ch, nil
}

// Check opens every side of every integration through conns, as a worker
// will: a kind no connector opens, or a configuration its connector
// refuses, is an error naming the integration and side (a worker checks
// before it starts).
func (r *Registry) Check(conns *connector.Registry) error {
	var errs []error
	for _, name := range r.Names() {
		d, _ := r.Get(name)
		for _, s := range []SideSpec{d.A, d.B} {
			if _, err := s.Open(name, conns); err != nil {
				errs = append(errs, fmt.Errorf("two-way integration %q, side %s: %w", name, s.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Get returns the integration name.
func (r *Registry) Get(name string) (Definition, error) {
	d, _, err := r.current(name)
	return d, err
}

// current returns the integration name and its generation.
func (r *Registry) current(name string) (Definition, int, error) {
	if r != nil {
		r.mu.RLock()
		defer r.mu.RUnlock()
		if d, ok := r.defs[name]; ok {
			return d, r.gen[name], nil
		}
	}
	return Definition{}, 0, fmt.Errorf("no two-way integration %q on this worker", name)
}

// Names lists the integrations, sorted.
func (r *Registry) Names() []string {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.defs))
}
