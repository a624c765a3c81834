package apply

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
)

// Refusal is a page's row a step did not apply, with the reason it is
// quarantined.
type Refusal struct {
	Pos              int // among the page's transformed rows
	Keyword, Message string
}

// StepBatch is the part of a transformed page one destination step
// writes.
type StepBatch struct {
	// Pos maps the batch's rows to the page's: Rows[i] is the page's
	// transformed row Pos[i]; Keys[i] its record key.
	Pos  []int
	Keys []string
	Rows []connector.Row
	// Result counts what the step did; Refused are the rows it refused.
	Result  connector.Result
	Refused []Refusal
	// claims are the match values the rows' keys own (first step).
	claims map[int]string
}

// ForStep picks the page's rows a destination step writes (every row
// earlier steps did not refuse: skip) and shapes them for it: merged
// duplicates get their entity's key (merges: row position → key), rows get
// the ids earlier steps' destinations gave their records (looked up in q),
// then the step's mapping. A row the mapping refuses is the step's
// refusal.
func ForStep(ctx context.Context, ids connector.IdentityMap, q store.Querier, st *catalog.Step, p *pages.Page, skip []int, m *catalog.Matcher, merges map[int]string) (*StepBatch, error) {
	skipped := make(map[int]bool, len(skip))
	for _, pos := range skip {
		skipped[pos] = true
	}
	b := &StepBatch{}
	for pos := range p.Rows {
		if skipped[pos] {
			continue
		}
		b.Pos = append(b.Pos, pos)
		if owner, ok := merges[pos]; ok {
			b.Keys = append(b.Keys, owner)
			b.Result.Duplicates++ // merged into the entity first seen as owner
		} else {
			b.Keys = append(b.Keys, p.RowKeys[pos])
		}
	}
	plain := len(st.IDs) == 0 && st.Mapping == nil
	known := make([]map[string]connector.Identity, len(st.IDs))
	for i, f := range st.IDs {
		k, err := ids.LookupIdentities(ctx, q, f.Namespace, b.Keys)
		if err != nil {
			return nil, err
		}
		known[i] = k
	}
	positions, keys := b.Pos[:0:0], b.Keys[:0:0]
	for i, pos := range b.Pos {
		row := p.Rows[pos]
		if owner, ok := merges[pos]; ok {
			row = m.MergedRow(row, owner)
		}
		if !plain {
			row = maps.Clone(row)
			for j, f := range st.IDs {
				if id, ok := known[j][b.Keys[i]]; ok {
					row[f.Field] = id.ExternalID
				} else {
					row[f.Field] = nil
				}
			}
		}
		if st.Mapping != nil {
			out, err := st.Mapping(row)
			if err != nil {
				b.Refused = append(b.Refused, Refusal{Pos: pos, Keyword: "transform", Message: fmt.Sprintf("destination %q: %v", st.Dest.Name, err)})
				continue
			}
			row = out
		}
		positions, keys = append(positions, pos), append(keys, b.Keys[i])
		b.Rows = append(b.Rows, row)
	}
	b.Pos, b.Keys = positions, keys
	return b, nil
}

// Add counts a sink's result for the batch: its counts, and its refusals
// as the page's rows.
func (b *StepBatch) Add(res connector.Result) {
	b.Result.Inserted += res.Inserted
	b.Result.Updated += res.Updated
	b.Result.Unchanged += res.Unchanged
	b.Result.Stale += res.Stale
	b.Result.Duplicates += res.Duplicates
	for _, r := range res.Refused {
		b.Refused = append(b.Refused, Refusal{Pos: b.Pos[r.Index], Keyword: r.Keyword, Message: r.Message})
	}
}

// matchResult is what duplicate detection decided for a page.
type matchResult struct {
	refused []Refusal      // duplicates to quarantine (policy quarantine)
	merges  map[int]string // row position → the key of the entity it merges into
	claims  map[int]string // row position → the match value its key owns
}

// matchPage looks the page's rows (but those in skip) up by their match
// value: a row whose value an entity under another key owns (in the map,
// or earlier in the page) is a duplicate, quarantined or merged into that
// entity by policy; the others claim their value. Every step of a batch
// computes the same answer: only the first step's claims are written.
func (a *Activities) matchPage(ctx context.Context, c *catalog.Integration, p *pages.Page, skip []int) (*matchResult, error) {
	m := c.Match
	res := &matchResult{merges: map[int]string{}, claims: map[int]string{}}
	if m == nil {
		return res, nil
	}
	skipped := make(map[int]bool, len(skip))
	for _, pos := range skip {
		skipped[pos] = true
	}
	values := make(map[int]string, len(p.Rows))
	var lookup []string
	for pos, row := range p.Rows {
		if skipped[pos] {
			continue
		}
		if v := m.Value(row); v != "" {
			values[pos] = v
			lookup = append(lookup, v)
		}
	}
	owners, err := a.Store.MatchOwners(ctx, nil, c.Def.Name, lookup)
	if err != nil {
		return nil, err
	}
	for pos := range p.Rows {
		v, ok := values[pos]
		if !ok {
			continue
		}
		key := p.RowKeys[pos]
		owner, known := owners[v]
		if !known {
			owners[v] = key // first seen in this page
			owner = key
		}
		if owner == key {
			res.claims[pos] = v
			continue
		}
		if m.Merge {
			res.merges[pos] = owner
			continue
		}
		res.refused = append(res.refused, Refusal{Pos: pos, Keyword: "duplicate", Message: fmt.Sprintf(
			"duplicate of record %s: same %s (%s); merge them in the source, or set match.policy: merge",
			owner, strings.Join(m.Fields, ", "), strings.ReplaceAll(v, "\x1f", ", "))})
	}
	return res, nil
}
