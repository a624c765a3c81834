package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// pageEntry is one page on its way through the steps. Each stage is
// computed once, from the stage before it; the raw records come from the
// fetch (cache hit) or from the staged copy (another worker, or a crash).
type pageEntry struct {
	mu  sync.Mutex
	raw []json.RawMessage

	validatedDone bool
	skipped       int
	invalid       int
	validCount    int // len(valid) when validated; valid is dropped after transformation
	valid         []validRecord

	transformedDone  bool
	transformInvalid int
	rows             []pgsink.Row
	rowIndex         []int    // rows[i] came from raw[rowIndex[i]]
	rowKeys          []string // rows[i]'s record key
}

type validRecord struct {
	index int
	rec   map[string]any
	key   string
}

// pageCache keeps recent pages in memory, evicting the oldest beyond its
// capacity. It is an optimisation only: every entry can be rebuilt.
type pageCache struct {
	mu    sync.Mutex
	cap   int
	pages map[syncstep.PageRef]*pageEntry
	order []syncstep.PageRef
}

func newPageCache(capacity int) *pageCache {
	return &pageCache{cap: capacity, pages: make(map[syncstep.PageRef]*pageEntry, capacity)}
}

func (c *pageCache) put(ref syncstep.PageRef, e *pageEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pages[ref]; !ok {
		c.order = append(c.order, ref)
	}
	c.pages[ref] = e
	for len(c.order) > c.cap {
		delete(c.pages, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *pageCache) get(ref syncstep.PageRef) (*pageEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.pages[ref]
	return e, ok
}

func (c *pageCache) drop(ref syncstep.PageRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pages[ref]; !ok {
		return
	}
	delete(c.pages, ref)
	for i, r := range c.order {
		if r == ref {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

func (c *pageCache) dropRun(runID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.order[:0]
	for _, r := range c.order {
		if r.RunID == runID {
			delete(c.pages, r)
			continue
		}
		kept = append(kept, r)
	}
	c.order = kept
}

// entry returns the cached page or rebuilds it from the staged copy.
func (a *Activities) entry(ctx context.Context, ref syncstep.PageRef) (*pageEntry, error) {
	if e, ok := a.cache.get(ref); ok {
		return e, nil
	}
	raw, err := a.store.LoadPage(ctx, ref.RunID, ref.Page, ref.Stage)
	if err != nil {
		return nil, err
	}
	e := &pageEntry{raw: raw}
	a.cache.put(ref, e)
	return e, nil
}

// validated brings the page to the validated stage, quarantining invalid
// records (idempotently: the store keeps one pending entry per record, so a
// rebuilt page, a rerun or a reset meeting the same record adds nothing).
func (a *Activities) validated(ctx context.Context, c *compiled, in syncstep.BatchInput) (*pageEntry, error) {
	e, err := a.entry(ctx, in.Ref)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.validatedDone {
		return e, nil
	}
	var bad []store.QuarantineEntry
	valid := make([]validRecord, 0, len(e.raw))
	skipped := 0
	for i, raw := range e.raw {
		v, err := schema.Decode(raw)
		if err != nil {
			bad = append(bad, a.quarantineEntry(c.def.Name, in.Ref, i, raw, "", "validate",
				[]store.ErrorDetail{{Keyword: "json", Message: "record is not valid JSON: " + err.Error()}}))
			continue
		}
		rec, ok := v.(map[string]any)
		if !ok {
			bad = append(bad, a.quarantineEntry(c.def.Name, in.Ref, i, raw, "", "validate",
				[]store.ErrorDetail{{Keyword: "type", Message: fmt.Sprintf("record is a JSON %s, not an object", jsonKind(v))}}))
			continue
		}
		// Records strictly before the checkpoint's cursor were committed
		// already: skip them before anything else, even when keyless.
		cur, hasCur := "", false
		if len(c.cursorPath) > 0 && !in.Since.IsZero() {
			cur, hasCur = scalarString(lookup(rec, c.cursorPath))
			if hasCur && compareValues(cur, in.Since.Cursor, true) < 0 {
				skipped++
				continue
			}
		}
		key, hasKey := scalarString(lookup(rec, c.keyPath))
		if !hasKey {
			bad = append(bad, a.quarantineEntry(c.def.Name, in.Ref, i, raw, "", "key",
				[]store.ErrorDetail{{Pointer: pointer(c.keyPath), Keyword: "key", Message: fmt.Sprintf("record has no key: field %q is missing, null or not a scalar", c.def.KeyField)}}))
			continue
		}
		if hasCur && compareCheckpoints(cursor.Checkpoint{Cursor: cur, Key: key}, in.Since) <= 0 {
			skipped++
			continue
		}
		if errs := c.validator.Validate(v); len(errs) > 0 {
			details := make([]store.ErrorDetail, len(errs))
			for j, fe := range errs {
				details[j] = store.ErrorDetail{Pointer: fe.Pointer, Keyword: fe.Keyword, Message: fe.Message}
			}
			bad = append(bad, a.quarantineEntry(c.def.Name, in.Ref, i, raw, key, "validate", details))
			continue
		}
		valid = append(valid, validRecord{index: i, rec: rec, key: key})
	}
	if len(bad) > 0 {
		if _, err := a.store.Quarantine(ctx, a.db, bad); err != nil {
			return nil, err
		}
	}
	e.valid, e.validCount, e.skipped, e.invalid, e.validatedDone = valid, len(valid), skipped, len(bad), true
	return e, nil
}

// transformed brings the page to the transformed stage.
func (a *Activities) transformed(ctx context.Context, c *compiled, in syncstep.BatchInput) (*pageEntry, error) {
	e, err := a.validated(ctx, c, in)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.transformedDone {
		return e, nil
	}
	var bad []store.QuarantineEntry
	rows := make([]pgsink.Row, 0, len(e.valid))
	idx := make([]int, 0, len(e.valid))
	keys := make([]string, 0, len(e.valid))
	for _, vr := range e.valid {
		out, err := c.transform(vr.rec)
		if err != nil {
			bad = append(bad, a.quarantineEntry(c.def.Name, in.Ref, vr.index, e.raw[vr.index], vr.key, "transform", []store.ErrorDetail{transformDetail(err)}))
			continue
		}
		rows = append(rows, pgsink.Row(out))
		idx = append(idx, vr.index)
		keys = append(keys, vr.key)
	}
	if len(bad) > 0 {
		if _, err := a.store.Quarantine(ctx, a.db, bad); err != nil {
			return nil, err
		}
	}
	e.rows, e.rowIndex, e.rowKeys, e.transformInvalid, e.transformedDone = rows, idx, keys, len(bad), true
	e.valid = nil // the rows are all later steps need
	return e, nil
}

func (a *Activities) quarantineEntry(integration string, ref syncstep.PageRef, index int, raw json.RawMessage, key, step string, errs []store.ErrorDetail) store.QuarantineEntry {
	return store.QuarantineEntry{
		Integration: integration,
		RunID:       ref.RunID,
		Page:        ref.Page,
		Index:       index,
		Key:         key,
		Step:        step,
		Payload:     raw,
		Errors:      errs,
	}
}

// lastPosition returns the (cursor, key) of the last record in the page
// that has both.
func lastPosition(records []json.RawMessage, cursorPath, keyPath []string) cursor.Checkpoint {
	for i := len(records) - 1; i >= 0; i-- {
		v, err := schema.Decode(records[i])
		if err != nil {
			continue
		}
		rec, ok := v.(map[string]any)
		if !ok {
			continue
		}
		cur, ok1 := scalarString(lookup(rec, cursorPath))
		key, ok2 := scalarString(lookup(rec, keyPath))
		if ok1 && ok2 {
			return cursor.Checkpoint{Cursor: cur, Key: key}
		}
	}
	return cursor.Checkpoint{}
}

// compareCheckpoints and compareValues are the source package's order.
var (
	compareCheckpoints = cursor.Compare
	compareValues      = cursor.CompareValues
)

func splitPath(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, ".")
}

func pointer(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return "/" + strings.Join(path, "/")
}

func lookup(rec map[string]any, path []string) any {
	var cur any = rec
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// scalarString renders a key or cursor value; false for absent, null,
// empty or non-scalar values.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, x != ""
	case json.Number:
		return x.String(), true
	case bool:
		return fmt.Sprint(x), true
	case float64, int, int64:
		return fmt.Sprint(x), true
	}
	return "", false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

func sortedStrings(s []string) []string {
	sort.Strings(s)
	return s
}
