// Package validate is the sync's validate step: ValidateBatch checks every
// record of a staged page against the integration's JSON Schema and key,
// skips the records a checkpoint already covers, and quarantines the
// invalid ones with every reason. It runs as a local activity on the
// worker that fetched the page; Page rebuilds the validated page for the
// steps after it when they run elsewhere.
package validate

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Activities is the validate step. Its fields are what it uses.
type Activities struct {
	Catalog *catalog.Catalog
	Pages   *pages.Pages
	// Store keeps quarantined records.
	Store *store.Store
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep) (run as local activities).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.ValidateBatch, activity.RegisterOptions{Name: syncstep.ValidateBatch.Name()})
}

// ValidateBatch checks every record of a staged page against the
// integration's JSON Schema and key, skips records at or before the
// checkpoint, and quarantines the invalid ones with every error.
func (a *Activities) ValidateBatch(ctx context.Context, in syncstep.BatchInput) (syncstep.ValidateOutput, error) {
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.ValidateOutput{}, err
	}
	p, err := Page(ctx, a.Pages, a.Store, c, in)
	if err != nil {
		return syncstep.ValidateOutput{}, err
	}
	return syncstep.ValidateOutput{Skipped: p.Skipped, Valid: p.ValidCount, Invalid: p.Invalid}, nil
}

// Page brings a page to the validated stage, quarantining its invalid
// records (idempotently: the store keeps one pending entry per record, so
// a rebuilt page, a rerun or a reset meeting the same record adds nothing).
func Page(ctx context.Context, ps *pages.Pages, st *store.Store, c *catalog.Integration, in syncstep.BatchInput) (*pages.Page, error) {
	p, err := ps.Get(ctx, in.Ref)
	if err != nil {
		return nil, err
	}
	p.Mu.Lock()
	defer p.Mu.Unlock()
	if p.Validated {
		return p, nil
	}
	// Each record is checked on its own, the page's records spread over
	// the cores; what they found is gathered in the records' order.
	checked := make([]check, len(p.Raw))
	parallel(len(p.Raw), func(i int) { checked[i] = checkRecord(c, in.Since, p.Raw[i]) })
	var bad []store.QuarantineEntry
	valid := make([]pages.Valid, 0, len(p.Raw))
	skipped := 0
	for i, ch := range checked {
		switch {
		case ch.skip:
			skipped++
		case ch.errs != nil:
			bad = append(bad, pages.Quarantine(c.Def.Name, in.Ref, i, p.Raw[i], ch.key, ch.step, ch.errs))
		default:
			valid = append(valid, pages.Valid{Index: i, Rec: ch.rec, Key: ch.key})
		}
	}
	invalid := 0
	if len(bad) > 0 {
		q, err := st.Quarantine(ctx, nil, bad)
		if err != nil {
			return nil, err
		}
		// A record the run quarantined already at another place of its
		// read (the source gave it twice) is skipped, not counted again:
		// the run's invalid count is the quarantine's entries of the run.
		invalid = q.Counted
		skipped += len(bad) - q.Counted
	}
	p.Valid, p.ValidCount, p.Skipped, p.Invalid, p.Validated = valid, len(valid), skipped, invalid, true
	return p, nil
}

// check is what checking one record found: skip it (at or before the
// checkpoint), quarantine it (errs, at step), or keep it (rec, key).
type check struct {
	skip bool
	rec  map[string]any
	key  string
	step string
	errs []store.ErrorDetail
}

// checkRecord decodes and checks one raw record of the page.
func checkRecord(c *catalog.Integration, since cursor.Checkpoint, raw []byte) check {
	v, err := schema.Decode(raw)
	if err != nil {
		return check{step: store.StepValidate, errs: []store.ErrorDetail{{Keyword: "json", Message: "record is not valid JSON: " + err.Error()}}}
	}
	rec, ok := v.(map[string]any)
	if !ok {
		return check{step: store.StepValidate, errs: []store.ErrorDetail{{Keyword: "type", Message: fmt.Sprintf("record is a JSON %s, not an object", record.Kind(v))}}}
	}
	// Records strictly before the checkpoint's cursor were committed
	// already: skip them before anything else, even when keyless.
	cur, hasCur := "", false
	if len(c.CursorPath) > 0 && !since.IsZero() {
		cur, hasCur = record.Scalar(record.Lookup(rec, c.CursorPath))
		if hasCur && cursor.CompareValues(cur, since.Cursor, true) < 0 {
			return check{skip: true}
		}
	}
	key, hasKey := record.Scalar(record.Lookup(rec, c.KeyPath))
	if !hasKey {
		return check{step: store.StepKey, errs: []store.ErrorDetail{{Pointer: record.Pointer(c.KeyPath), Keyword: "key",
			Message: fmt.Sprintf("record has no key: field %q is missing, null or not a scalar", c.Def.KeyField)}}}
	}
	if hasCur && cursor.Compare(cursor.Checkpoint{Cursor: cur, Key: key}, since) <= 0 {
		return check{skip: true}
	}
	if errs := c.Validator.ValidateRaw(raw, v); len(errs) > 0 {
		return check{key: key, step: store.StepValidate, errs: Details(errs)}
	}
	return check{rec: rec, key: key}
}

// parallel calls fn(i) for every i below n, spread over the cores in
// contiguous chunks (a page's records: validation is CPU work, and the
// worker has cores to spare while it waits on the source and the
// destination). A small n runs on the calling goroutine.
func parallel(n int, fn func(i int)) {
	const minChunk = 64
	workers := min(runtime.GOMAXPROCS(0), n/minChunk)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for from := 0; from < n; from += chunk {
		to := min(from+chunk, n)
		wg.Go(func() {
			for i := from; i < to; i++ {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// Details are a schema's errors as quarantine details.
func Details(errs []schema.FieldError) []store.ErrorDetail {
	details := make([]store.ErrorDetail, len(errs))
	for j, fe := range errs {
		details[j] = store.ErrorDetail{Pointer: fe.Pointer, Keyword: fe.Keyword, Message: fe.Message}
	}
	return details
}
