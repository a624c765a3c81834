package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
)

// matcher detects records that stand for an entity another record (under
// another key) was first seen as: equal normalised match fields.
type matcher struct {
	fields    []string
	normalize func(string) string
	merge     bool
	// keyColumn is the row field the record's key is mapped to: a merged
	// row gets the entity's key there.
	keyColumn string
}

func compileMatch(def integration.Definition) (*matcher, error) {
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
	mt := &matcher{fields: m.Fields, normalize: norm, merge: m.Policy == integration.MatchMerge}
	for _, f := range def.Mapping.Fields {
		if f.From == def.KeyField {
			mt.keyColumn = f.To
			break
		}
	}
	if mt.merge && mt.keyColumn == "" {
		return nil, fmt.Errorf("match.policy merge: the mapping must map the key field %q to a row field, which a merged row's key is written to", def.KeyField)
	}
	return mt, nil
}

// value is the row's match value: its fields, normalised, joined; "" when
// one is empty (such a record never matches another).
func (m *matcher) value(row pgsink.Row) string {
	parts := make([]string, len(m.fields))
	for i, f := range m.fields {
		v, ok := scalarString(row[f])
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

// matchResult is what duplicate detection decided for a page.
type matchResult struct {
	refused []refusal      // duplicates to quarantine (policy quarantine)
	merges  map[int]string // row position → the key of the entity it merges into
	claims  map[int]string // row position → the match value its key owns
}

// matchPage looks the page's rows (but those in skip) up by their match
// value: a row whose value an entity under another key owns (in the map,
// or earlier in the page) is a duplicate, quarantined or merged into that
// entity by policy; the others claim their value. Every step of a batch
// computes the same answer: only the first step's claims are written.
func (a *Activities) matchPage(ctx context.Context, c *compiled, e *pageEntry, skip []int) (*matchResult, error) {
	m := c.match
	res := &matchResult{merges: map[int]string{}, claims: map[int]string{}}
	if m == nil {
		return res, nil
	}
	skipped := make(map[int]bool, len(skip))
	for _, p := range skip {
		skipped[p] = true
	}
	values := make(map[int]string, len(e.rows))
	var lookup []string
	for p, row := range e.rows {
		if skipped[p] {
			continue
		}
		if v := m.value(row); v != "" {
			values[p] = v
			lookup = append(lookup, v)
		}
	}
	owners, err := a.store.MatchOwners(ctx, a.db, c.def.Name, lookup)
	if err != nil {
		return nil, err
	}
	for p := range e.rows {
		v, ok := values[p]
		if !ok {
			continue
		}
		key := e.rowKeys[p]
		owner, known := owners[v]
		if !known {
			owners[v] = key // first seen in this page
			owner = key
		}
		if owner == key {
			res.claims[p] = v
			continue
		}
		if m.merge {
			res.merges[p] = owner
			continue
		}
		res.refused = append(res.refused, refusal{pos: p, keyword: "duplicate", message: fmt.Sprintf(
			"duplicate of record %s: same %s (%s); merge them in the source, or set match.policy: merge",
			owner, strings.Join(m.fields, ", "), strings.ReplaceAll(v, "\x1f", ", "))})
	}
	return res, nil
}

// mergedRow is row as an update of the entity under key: the key column
// gets the entity's key, in the type the row holds its own in.
func (m *matcher) mergedRow(row pgsink.Row, key string) pgsink.Row {
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
