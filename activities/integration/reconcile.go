package integration

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Reconcile is how a reconciliation repairs the destination.
type Reconcile struct {
	// Extras is what happens to destination rows the source no longer has:
	// ExtrasReport (default), ExtrasDelete or ExtrasMark.
	Extras string `mapstructure:"extras" yaml:"extras" json:"extras,omitempty"`
	// MarkColumn is the timestamptz column ExtrasMark sets (soft delete),
	// e.g. "deleted_at"; it must be one of the destination's columns.
	MarkColumn string `mapstructure:"mark_column" yaml:"mark_column" json:"mark_column,omitempty"`
	// Chunks is how many hash chunks the key space is cut into for the
	// digest comparison (default: about 16 destination rows a chunk, a
	// power of two from 1024 to 65536).
	Chunks int `mapstructure:"chunks" yaml:"chunks" json:"chunks,omitempty"`
}

// Policies for extra destination rows (syncstep's, which workflows read).
const (
	ExtrasReport = syncstep.ExtrasReport
	ExtrasDelete = syncstep.ExtrasDelete
	ExtrasMark   = syncstep.ExtrasMark
)

// reconcileProblems checks the reconciliation policy.
func (d Definition) reconcileProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	r := d.Reconcile
	var table *pgsink.Table
	switch r.Extras {
	case "", ExtrasReport:
	case ExtrasDelete, ExtrasMark:
		steps := d.Steps()
		switch {
		case len(steps) != 1:
			add("reconcile.extras", "%q needs the integration to have exactly one destination, a PostgreSQL table; it has %d (a saga's extra rows are only reported: extras: %s)", r.Extras, len(steps), ExtrasReport)
		case steps[0].Postgres == nil:
			add("reconcile.extras", "%q needs the destination to be a PostgreSQL table; it is %s (extra records in an API are only reported: extras: %s)", r.Extras, orNone(steps[0].Kind()), ExtrasReport)
		default:
			table = steps[0].Postgres
		}
	default:
		add("reconcile.extras", "%q is not %q, %q or %q", r.Extras, ExtrasReport, ExtrasDelete, ExtrasMark)
	}
	switch {
	case r.Extras == ExtrasMark && r.MarkColumn == "":
		add("reconcile.mark_column", "required with extras: %s: the timestamptz column that marks a row the source no longer has (e.g. deleted_at)", ExtrasMark)
	case r.Extras != ExtrasMark && r.MarkColumn != "":
		add("reconcile.mark_column", "is only used with extras: %s (extras is %q)", ExtrasMark, orNone(r.Extras))
	case table != nil && r.Extras == ExtrasMark:
		if problem := markColumnProblem(*table, r.MarkColumn); problem != "" {
			add("reconcile.mark_column", "%s", problem)
		}
	}
	if r.Chunks != 0 && (r.Chunks < MinReconcileChunks || r.Chunks > MaxReconcileChunks) {
		add("reconcile.chunks", "%d is out of range %d..%d (0 = the default)", r.Chunks, MinReconcileChunks, MaxReconcileChunks)
	}
	return errs
}

// markColumnProblem says what is wrong with name as the mark column of t,
// or "".
func markColumnProblem(t pgsink.Table, name string) string {
	var names []string
	for _, c := range t.Columns {
		names = append(names, c.Name)
		if c.Name != name {
			continue
		}
		switch {
		case c.Type != pgsink.TypeTimestamptz:
			return fmt.Sprintf("%q is a %s column; the mark column is %s (it holds when the row was found missing)", name, c.Type, pgsink.TypeTimestamptz)
		case slices.Contains(t.Key, name):
			return fmt.Sprintf("%q is a key column of table %q; the mark column is a column of its own", name, t.Name)
		case name == t.VersionColumn:
			return fmt.Sprintf("%q is the version column of table %q; the mark column is a column of its own", name, t.Name)
		}
		return ""
	}
	return fmt.Sprintf("%q is not a column of table %q (its columns: %s); add {name: %s, type: %s}", name, t.Name, strings.Join(names, ", "), name, pgsink.TypeTimestamptz)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
