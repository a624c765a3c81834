package catalog

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/record"
)

// Matcher detects records that stand for an entity another record (under
// another key) was first seen as: equal normalised match fields.
type Matcher struct {
	Fields    []string
	normalize func(string) string
	// Merge applies a duplicate as an update of the entity first seen
	// (policy merge) instead of quarantining it.
	Merge bool
	// keyColumn is the row field the record's key is mapped to: a merged
	// row gets the entity's key there.
	keyColumn string
}

func compileMatch(def integration.Definition) (*Matcher, error) {
	m := def.Match
	if m == nil {
		return nil, nil
	}
	names := m.Normalize
	if len(names) == 0 {
		names = []string{"trim", "lower"}
	}
	norm, err := mapping.Normalizer(names)
	if err != nil {
		return nil, fmt.Errorf("match.normalize: %w", err)
	}
	mt := &Matcher{Fields: m.Fields, normalize: norm, Merge: m.Policy == integration.MatchMerge}
	for _, f := range def.Mapping.Fields {
		if f.From == def.KeyField {
			mt.keyColumn = f.To
			break
		}
	}
	if mt.Merge && mt.keyColumn == "" {
		return nil, fmt.Errorf("match.policy merge: the mapping must map the key field %q to a row field, which a merged row's key is written to", def.KeyField)
	}
	return mt, nil
}

// Value is the row's match value: its fields, normalised, joined; "" when
// one is empty (such a record never matches another).
func (m *Matcher) Value(row connector.Row) string {
	parts := make([]string, len(m.Fields))
	for i, f := range m.Fields {
		v, ok := record.Scalar(row[f])
		if !ok {
			return ""
		}
		parts[i] = m.normalize(v)
		if parts[i] == "" {
			return ""
		}
	}
	return strings.Join(parts, "\x1f")
}

// MergedRow is row as an update of the entity under key: the key column
// gets the entity's key, in the type the row holds its own in.
func (m *Matcher) MergedRow(row connector.Row, key string) connector.Row {
	out := maps.Clone(row)
	switch row[m.keyColumn].(type) {
	case int64:
		if n, err := strconv.ParseInt(key, 10, 64); err == nil {
			out[m.keyColumn] = n
			return out
		}
	case json.Number:
		out[m.keyColumn] = json.Number(key)
		return out
	}
	out[m.keyColumn] = key
	return out
}
