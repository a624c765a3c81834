package integration

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/lib/suggest"
)

// SourcePath is one path the mapping reads from source records, and the
// definition's field that names it.
type SourcePath struct {
	Path  string // e.g. "address.city"
	Field string // e.g. "mapping[2].from"
}

// SourcePaths lists the paths the integration's mapping reads from source
// records (a Compute function's are known only to it).
func (d Definition) SourcePaths() []SourcePath {
	var out []SourcePath
	for j, f := range d.Mapping.Fields {
		if f.From != "" {
			out = append(out, SourcePath{Path: f.From, Field: fmt.Sprintf("mapping[%d].from", j)})
		}
	}
	return out
}

// CheckPaths checks source paths (Definition.SourcePaths) against v, the
// schema every record satisfies. A path no valid record can hold (a name a
// closed object does not list, a step into a string) is a problem: its
// value would be null in every row. A path the schema does not describe is
// a warning: valid records may hold it, but a misspelt path would read
// null from every record, so the transform step counts and logs the
// records that lack it. Each error starts with the field, e.g.
// "mapping[2].from: ".
func CheckPaths(v *schema.Validator, paths []SourcePath) (problems, warnings []error) {
	for _, p := range paths {
		segs := record.Path(p.Path)
		r := v.Reach(segs)
		at := strings.Join(segs[:min(r.At+1, len(segs))], ".")
		hint := ""
		if r.At < len(segs) {
			if s := suggest.Closest(segs[r.At], r.Known); s != "" {
				fixed := slices.Concat(segs[:r.At], []string{s}, segs[r.At+1:])
				hint = fmt.Sprintf(" (did you mean %q?)", strings.Join(fixed, "."))
			}
		}
		switch r.Reach {
		case schema.Unreachable:
			problems = append(problems, fmt.Errorf("%s: no record valid for %s has %q%s, so the value would be null in every row",
				p.Field, v.Name(), at, hint))
		case schema.Undescribed:
			warnings = append(warnings, fmt.Errorf("%s: %s does not describe %q%s; records without it give null there, and the transform step counts and logs them",
				p.Field, v.Name(), at, hint))
		}
	}
	return problems, warnings
}
