package integration

import (
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/mapping"
)

// Destination is one step of the apply: where rows go. Exactly one kind
// is set.
type Destination struct {
	// Name names the step in history, progress, errors and identity maps:
	// lower-case letters, digits and dashes; default the kind ("postgres",
	// "http"). Unique within the integration.
	Name string `mapstructure:"name" yaml:"name" json:"name,omitempty"`
	// Postgres upserts rows into a table (before-images undo it).
	Postgres *pgsink.Table `mapstructure:"postgres" yaml:"postgres" json:"postgres,omitempty"`
	// HTTP writes rows to an API: created the first time, then updated
	// under the id the API gave (kept in the identity map).
	HTTP *httpsink.Config `mapstructure:"http" yaml:"http" json:"http,omitempty"`
	// Mode of an HTTP destination: "upsert" (default: create the object
	// once, update it afterwards; compensation deletes what the run created
	// and puts back what it changed) or "notify" (POST every new version of
	// a record, as to a webhook; compensation sends Reversal).
	Mode string `mapstructure:"mode" yaml:"mode" json:"mode,omitempty"`
	// Identity names the identity map of an HTTP destination: record key →
	// the destination's id. Default "<integration>/<name>"; integrations
	// writing the same objects share one by naming it alike.
	Identity string `mapstructure:"identity" yaml:"identity" json:"identity,omitempty"`
	// IDs fills row fields with the ids earlier HTTP steps' destinations
	// gave the record: field → step name, e.g. {"billing_id": "billing"}.
	IDs map[string]string `mapstructure:"ids" yaml:"ids" json:"ids,omitempty"`
	// Mapping reshapes the row for this destination (optional). It reads
	// the integration's row, after IDs are filled in.
	Mapping mapping.Mapping `mapstructure:"mapping" yaml:"mapping" json:"mapping,omitempty"`
	// Reversal is the request a "notify" destination's compensation sends
	// for every notification it undoes: its body is {"reversal_of": id,
	// "record": row} and its idempotency key derives from the original's.
	Reversal *httpsink.Endpoint `mapstructure:"reversal" yaml:"reversal" json:"reversal,omitempty"`
	// Connector writes with a connector the worker registered besides the
	// shipped ones (docs/connectors.md).
	Connector *Connector `mapstructure:"connector" yaml:"connector" json:"connector,omitempty"`
}

// Destination modes (httpsink's).
const (
	ModeUpsert = httpsink.ModeUpsert
	ModeNotify = httpsink.ModeNotify
)

// Spec returns the destination's connector kind and the configuration
// its factory opens (connector.Registry): a PostgreSQL table, an HTTP API
// with its mode, identity map and reversal, or a registered connector's
// own configuration.
func (d Destination) Spec() (kind string, cfg any) {
	switch {
	case d.Postgres != nil:
		return "postgres", *d.Postgres
	case d.HTTP != nil:
		return "http", httpsink.Destination{Name: d.Name, Config: *d.HTTP, Mode: d.Mode, Identity: d.Identity, Reversal: d.Reversal}
	case d.Connector != nil:
		return d.Connector.Kind, d.Connector.Config
	}
	return "", nil
}

// Kind is "postgres", "http", a registered connector's kind, or "" (none
// set).
func (d Destination) Kind() string {
	kind, _ := d.Spec()
	return kind
}

// Steps returns the destinations in apply order, each with its name and
// (HTTP) mode and identity map filled in.
func (d Definition) Steps() []Destination {
	steps := d.Destinations
	if len(steps) == 0 {
		steps = []Destination{d.Destination}
	}
	out := make([]Destination, len(steps))
	for i, s := range steps {
		if s.Name == "" {
			s.Name = s.Kind()
		}
		if s.HTTP != nil {
			if s.Mode == "" {
				s.Mode = ModeUpsert
			}
			if s.Identity == "" {
				s.Identity = d.Name + "/" + s.Name
			}
			if s.Mode == ModeNotify && s.HTTP.Update.Path == "" {
				// A notify destination never updates: every version is
				// POSTed anew.
				cfg := *s.HTTP
				cfg.Update = httpsink.Endpoint{Method: http.MethodPut, Path: cfg.Create.Path}
				s.HTTP = &cfg
			}
		}
		out[i] = s
	}
	return out
}

// ValidateTables checks the PostgreSQL tables of the destination steps as
// Validate does: the part of it an integration file's check makes without
// resolving the file.
func (d Definition) ValidateTables() error {
	var errs []error
	for i, s := range d.Steps() {
		if s.Postgres != nil {
			if err := s.Postgres.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("integration %q: %s.postgres: %v", d.Name, d.stepField(i), err))
			}
		}
	}
	return errors.Join(errs...)
}

// destinationProblems checks the destination steps.
func (d Definition) destinationProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	if len(d.Destinations) > 0 && d.Destination.Kind() != "" {
		add("destination", "both destination and destinations are set; list every step under destinations")
		return errs
	}
	seen := map[string]int{}
	steps := d.Steps()
	for i, s := range steps {
		f := d.stepField(i)
		switch {
		case count(s.Postgres != nil, s.HTTP != nil, s.Connector != nil) == 0:
			add(f, "no destination set (want %s.postgres, %s.http or %s.connector)", f, f, f)
			continue
		case count(s.Postgres != nil, s.HTTP != nil, s.Connector != nil) > 1:
			add(f, "more than one of postgres, http and connector are set; a step writes to one destination")
			continue
		case s.Connector != nil:
			connectorProblems(s.Connector, f+".connector", add)
			if s.Mode != "" || s.Identity != "" || s.Reversal != nil {
				add(f, "mode, identity and reversal belong to http destinations")
			}
		case s.Postgres != nil:
			if err := s.Postgres.Validate(); err != nil {
				add(f+".postgres", "%v", err)
			}
			if s.Mode != "" || s.Identity != "" || s.Reversal != nil {
				add(f, "mode, identity and reversal belong to http destinations")
			}
		default:
			if err := s.HTTP.Validate(); err != nil {
				add(f+".http", "%v", err)
			}
			switch s.Mode {
			case ModeUpsert:
				if s.Reversal != nil {
					add(f+".reversal", "only a notify destination sends reversals (an upsert destination's objects are deleted or restored)")
				}
			case ModeNotify:
				if s.Reversal != nil && s.Reversal.Path == "" {
					add(f+".reversal.path", "required (e.g. \"/v1/notifications\")")
				}
			default:
				add(f+".mode", "%q is not %q or %q", s.Mode, ModeUpsert, ModeNotify)
			}
		}
		if !nameRE.MatchString(s.Name) {
			add(f+".name", "%q must be lower-case letters, digits and dashes, starting with a letter", s.Name)
		} else if j, dup := seen[s.Name]; dup {
			add(f+".name", "%q is also the name of step %d; name every step (name: billing)", s.Name, j)
		}
		seen[s.Name] = i
		for _, field := range sortedKeys(s.IDs) {
			from := s.IDs[field]
			j, ok := seen[from]
			switch {
			case !ok || j == i:
				add(f+".ids."+field, "%q is not an earlier step (ids come from the steps before this one)", from)
			case steps[j].HTTP == nil:
				add(f+".ids."+field, "step %q is a %s destination: only http destinations give ids", from, steps[j].Kind())
			}
		}
		if len(s.Mapping.Fields) > 0 {
			if err := s.Mapping.Validate(); err != nil {
				add(f+".mapping", "%v", err)
			}
		}
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
