package integration

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/tetherflow/tether/activities/lib/mapping"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Validate reports every problem in the definition, each naming the field.
func (d Definition) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	if !nameRE.MatchString(d.Name) {
		add("name", "must be lower-case letters, digits and dashes, starting with a letter")
	}
	switch {
	case d.Source.kinds() == 0:
		add("source", "no source set (want source.http, source.postgres or source.connector)")
	case d.Source.kinds() > 1:
		add("source", "more than one of source.http, source.postgres and source.connector are set; an integration reads one source")
	case d.Source.Connector != nil:
		connectorProblems(d.Source.Connector, "source.connector", add)
	case d.Source.HTTP != nil:
		if err := d.Source.HTTP.Validate(); err != nil {
			add("source.http", "%v", err)
		}
		if d.CursorField != "" && d.Source.HTTP.Incremental.Param == "" {
			add("source.http.incremental.param", "required when cursor_field is set: the source must be asked for records since the checkpoint")
		}
	default:
		pg := d.Source.Postgres
		if err := pg.Validate(); err != nil {
			add("source.postgres", "%v", err)
		}
		if d.CursorField != pg.CursorColumn {
			add("cursor_field", "%q must name source.postgres.cursor_column (%q): the pipeline and the query must agree on the cursor", d.CursorField, pg.CursorColumn)
		}
		if len(pg.Key) == 1 && d.KeyField != "" && d.KeyField != pg.Key[0] {
			add("key_field", "%q must name the source.postgres.key column (%q)", d.KeyField, pg.Key[0])
		}
	}
	if d.Schema == "" {
		add("schema", "required (a file in schemas/)")
	}
	if d.KeyField == "" {
		add("key_field", "required")
	}
	if err := d.Mapping.Validate(); err != nil && len(d.Mapping.Fields) > 0 {
		add("mapping", "%v", err)
	}
	if len(d.Mapping.Fields) == 0 && d.Transform == nil {
		add("mapping", "no mapping and no transform function: nothing produces destination rows")
	}
	errs = append(errs, d.destinationProblems()...)
	errs = append(errs, d.columnProblems()...)
	errs = append(errs, d.scheduleProblems()...)
	if m := d.Match; m != nil {
		if len(m.Fields) == 0 {
			add("match.fields", "required: the row fields that identify an entity (e.g. [email])")
		}
		if _, err := mapping.Normalizer(m.Normalize); err != nil {
			add("match.normalize", "%v", err)
		}
		if m.Policy != "" && m.Policy != MatchQuarantine && m.Policy != MatchMerge {
			add("match.policy", "%q is not %q or %q", m.Policy, MatchQuarantine, MatchMerge)
		}
	}
	if d.ShortRead != "" && d.ShortRead != ShortReadFail && d.ShortRead != ShortReadWarn {
		add("short_read", "%q is not %q or %q", d.ShortRead, ShortReadFail, ShortReadWarn)
	}
	if d.InvalidThreshold < 0 || d.InvalidThreshold > 1 {
		add("invalid_threshold", "%v is not a share between 0 and 1", d.InvalidThreshold)
	}
	if d.BatchSize < 0 || d.BatchSize > 10000 {
		add("batch_size", "%d is out of range 1..10000", d.BatchSize)
	}
	if d.PagesInFlight < 0 || d.PagesInFlight > 32 {
		add("pages_in_flight", "%d is out of range 1..32", d.PagesInFlight)
	}
	return errors.Join(errs...)
}

// connectorProblems checks a registered connector's reference; its
// configuration is the connector's factory's to check, when the worker
// compiles the integration.
func connectorProblems(c *Connector, field string, add func(field, format string, args ...any)) {
	switch c.Kind {
	case "":
		add(field+".kind", "required: the kind the connector is registered under")
	case "http", "postgres":
		add(field+".kind", "%q is a shipped connector: write %s instead of %s", c.Kind, strings.Replace(field, "connector", c.Kind, 1), field)
	}
}
