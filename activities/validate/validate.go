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
	var bad []store.QuarantineEntry
	reject := func(i int, key, step string, errs ...store.ErrorDetail) {
		bad = append(bad, pages.Quarantine(c.Def.Name, in.Ref, i, p.Raw[i], key, step, errs))
	}
	valid := make([]pages.Valid, 0, len(p.Raw))
	skipped := 0
	for i, raw := range p.Raw {
		v, err := schema.Decode(raw)
		if err != nil {
			reject(i, "", store.StepValidate, store.ErrorDetail{Keyword: "json", Message: "record is not valid JSON: " + err.Error()})
			continue
		}
		rec, ok := v.(map[string]any)
		if !ok {
			reject(i, "", store.StepValidate, store.ErrorDetail{Keyword: "type", Message: fmt.Sprintf("record is a JSON %s, not an object", record.Kind(v))})
			continue
		}
		// Records strictly before the checkpoint's cursor were committed
		// already: skip them before anything else, even when keyless.
		cur, hasCur := "", false
		if len(c.CursorPath) > 0 && !in.Since.IsZero() {
			cur, hasCur = record.Scalar(record.Lookup(rec, c.CursorPath))
			if hasCur && cursor.CompareValues(cur, in.Since.Cursor, true) < 0 {
				skipped++
				continue
			}
		}
		key, hasKey := record.Scalar(record.Lookup(rec, c.KeyPath))
		if !hasKey {
			reject(i, "", store.StepKey, store.ErrorDetail{Pointer: record.Pointer(c.KeyPath), Keyword: "key",
				Message: fmt.Sprintf("record has no key: field %q is missing, null or not a scalar", c.Def.KeyField)})
			continue
		}
		if hasCur && cursor.Compare(cursor.Checkpoint{Cursor: cur, Key: key}, in.Since) <= 0 {
			skipped++
			continue
		}
		if errs := c.Validator.Validate(v); len(errs) > 0 {
			reject(i, key, store.StepValidate, Details(errs)...)
			continue
		}
		valid = append(valid, pages.Valid{Index: i, Rec: rec, Key: key})
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

// Details are a schema's errors as quarantine details.
func Details(errs []schema.FieldError) []store.ErrorDetail {
	details := make([]store.ErrorDetail, len(errs))
	for j, fe := range errs {
		details[j] = store.ErrorDetail{Pointer: fe.Pointer, Keyword: fe.Keyword, Message: fe.Message}
	}
	return details
}
