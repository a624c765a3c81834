package integration

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/lib/suggest"
)

// stepField is the definition's field of destination step i:
// "destination", or "destinations[i]" when there are several.
func (d Definition) stepField(i int) string {
	if len(d.Destinations) > 0 {
		return fmt.Sprintf("destinations[%d]", i)
	}
	return "destination"
}

// ValidateColumns reports every problem columnProblems finds: a value a
// mapping produces that no destination stores, a PostgreSQL key or
// not_null column nothing fills. Validate runs it too; it reads no secret,
// so a file can be checked with it before any is read.
func (d Definition) ValidateColumns() error { return errors.Join(d.columnProblems()...) }

// columnProblems checks that no value a mapping produces is dropped
// without a word, and that PostgreSQL destinations can store the rows:
//   - a field of the integration's mapping reaches some step (an HTTP or
//     connector step takes whole rows, a PostgreSQL step its declared
//     columns, a step with its own mapping what that mapping reads);
//   - a field of a PostgreSQL step's own mapping, and an id it fills, is a
//     declared column of its table;
//   - every key and not_null column of a PostgreSQL step gets a value.
//
// Rows a Go Transform shapes are known only when they come; the sink
// reports what it cannot store then.
func (d Definition) columnProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("integration %q: %s: %s", d.Name, field, fmt.Sprintf(format, args...)))
	}
	steps := d.Steps()
	for i, s := range steps {
		if s.Postgres != nil && s.Postgres.Validate() == nil {
			d.stepColumnProblems(d.stepField(i), s, add)
		}
	}
	if d.Transform != nil {
		return errs
	}
	for j, m := range d.Mapping.Fields {
		if !slices.ContainsFunc(steps, func(s Destination) bool { return takes(s, m.To) }) {
			add(fmt.Sprintf("mapping[%d].to", j), "%q is stored by no destination (%s), so its value would be dropped from every row; write to a declared column, or declare it",
				m.To, notStoredBy(steps, m.To))
		}
	}
	return errs
}

// Drops returns a function naming the fields of a row that no
// destination step stores, sorted, for the rows a Go Transform makes,
// which only a run can see. It is nil when no row can lose a field: the
// mapping alone makes the rows (columnProblems checked them), or a step
// takes whole rows.
func (d Definition) Drops() func(row map[string]any) []string {
	steps := d.Steps()
	if d.Transform == nil || slices.ContainsFunc(steps, takesAll) {
		return nil
	}
	return func(row map[string]any) []string {
		var out []string
		for name := range row {
			if !slices.ContainsFunc(steps, func(s Destination) bool { return takes(s, name) }) {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out
	}
}

// takesAll reports whether step s takes every field of a row whatever
// its name: an HTTP or connector step, or a mapping computing from the
// whole record.
func takesAll(s Destination) bool {
	if len(s.Mapping.Fields) > 0 {
		return slices.ContainsFunc(s.Mapping.Fields, func(f mapping.Field) bool { return f.Compute != nil })
	}
	return s.Postgres == nil
}

// takes reports whether destination step s uses the field name of the
// integration's row.
func takes(s Destination, name string) bool {
	switch {
	case len(s.Mapping.Fields) > 0:
		return slices.ContainsFunc(s.Mapping.Fields, func(f mapping.Field) bool {
			return f.Compute != nil || (f.From != "" && record.Path(f.From)[0] == name)
		})
	case s.Postgres != nil:
		return slices.ContainsFunc(s.Postgres.Columns, func(c pgsink.Column) bool { return c.Name == name })
	default:
		return true // HTTP and connector steps take the whole row
	}
}

// notStoredBy says which tables do not declare a field, for a message.
func notStoredBy(steps []Destination, name string) string {
	var parts []string
	for _, s := range steps {
		switch {
		case len(s.Mapping.Fields) > 0:
			parts = append(parts, fmt.Sprintf("step %q's mapping does not read it", s.Name))
		case s.Postgres != nil:
			parts = append(parts, fmt.Sprintf("it is not a column of table %s %s", tableName(s.Postgres), columnHint(s.Postgres, name)))
		}
	}
	return strings.Join(parts, "; ")
}

// stepColumnProblems checks PostgreSQL destination step s (field f):
// what its own mapping and ids write is declared, and its key and
// not_null columns get values.
func (d Definition) stepColumnProblems(f string, s Destination, add func(field, format string, args ...any)) {
	t := s.Postgres
	notColumn := func(field, name string) {
		add(field, "%q is not a column of the destination table %s %s, so its value would be dropped from every row; write to a declared column, or add it to %s.postgres.columns",
			name, tableName(t), columnHint(t, name), f)
	}
	mapped := map[string]bool{}
	switch {
	case len(s.Mapping.Fields) > 0:
		for j, m := range s.Mapping.Fields {
			mapped[m.To] = true
			if !t.HasColumn(m.To) {
				notColumn(fmt.Sprintf("%s.mapping[%d].to", f, j), m.To)
			}
		}
	case d.Transform != nil || len(d.Mapping.Fields) == 0:
		return // a Go Transform shapes the rows
	default:
		for _, m := range d.Mapping.Fields {
			mapped[m.To] = true
		}
		for _, k := range sortedKeys(s.IDs) {
			mapped[k] = true
			if !t.HasColumn(k) {
				notColumn(f+".ids."+k, k)
			}
		}
	}
	for i, c := range t.Columns {
		field := fmt.Sprintf("%s.postgres.columns[%d]", f, i)
		switch {
		case mapped[c.Name]:
		case slices.Contains(t.Key, c.Name):
			add(field, "column %q is in the key but nothing maps a value to it, so every row would be refused; map the record's key to it", c.Name)
		case c.NotNull:
			add(field, "column %q is not_null but nothing maps a value to it, so every row would be refused; map a field to it, or drop not_null", c.Name)
		}
	}
}

// tableName is the table as it would be written in SQL, schema first when
// set.
func tableName(t *pgsink.Table) string {
	if t.Schema != "" {
		return t.Schema + "." + t.Name
	}
	return t.Name
}

// columnHint names the declared column name was likely meant to be, or
// lists the table's columns: `(did you mean "email"?)`.
func columnHint(t *pgsink.Table, name string) string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	if s := suggest.Closest(name, names); s != "" {
		return fmt.Sprintf("(did you mean %q?)", s)
	}
	return "(columns: " + strings.Join(names, ", ") + ")"
}
