// Package transform is the sync's transform step: TransformBatch maps the
// valid records of a staged page to destination rows with the
// integration's mapping (and Go Transform), and quarantines the records
// the mapping refuses, naming the field. It runs as a local activity; Page
// rebuilds the transformed page for the apply step when it runs elsewhere.
package transform

import (
	"context"
	"errors"

	"go.temporal.io/sdk/log"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/validate"
)

// Activities is the transform step. Its fields are what it uses.
type Activities struct {
	Catalog *catalog.Catalog
	Pages   *pages.Pages
	// Store keeps quarantined records.
	Store *store.Store
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep) (run as local activities).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.TransformBatch, activity.RegisterOptions{Name: syncstep.TransformBatch.Name()})
}

// TransformBatch maps the page's valid records to destination rows and
// quarantines records the mapping rejects.
func (a *Activities) TransformBatch(ctx context.Context, in syncstep.BatchInput) (syncstep.TransformOutput, error) {
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.TransformOutput{}, err
	}
	p, err := Page(ctx, a.Pages, a.Store, c, in)
	if err != nil {
		return syncstep.TransformOutput{}, err
	}
	if len(p.Dropped)+len(p.Unread) > 0 && activity.IsActivity(ctx) {
		warnLost(activity.GetLogger(ctx), in, p)
	}
	return syncstep.TransformOutput{Transformed: len(p.Rows), Invalid: p.TransformInvalid, Dropped: p.Dropped, Unread: p.Unread}, nil
}

// warnLost logs what the page's rows lost: fields no destination stores,
// paths the records lacked.
func warnLost(logger log.Logger, in syncstep.BatchInput, p *pages.Page) {
	if len(p.Dropped) > 0 {
		logger.Warn("fields no destination stores are dropped from rows; declare them in a destination or stop producing them",
			"integration", in.Integration, "run_id", in.Ref.RunID, "page", in.Ref.Page, "rows_by_field", p.Dropped)
	}
	if len(p.Unread) > 0 {
		logger.Warn("records lack a path the mapping reads and the schema does not describe; those fields are null",
			"integration", in.Integration, "run_id", in.Ref.RunID, "page", in.Ref.Page, "records_by_field", p.Unread)
	}
}

// tally adds one to m[k], making m when nil.
func tally(m map[string]int, k string) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[k]++
	return m
}

// Page brings a page to the transformed stage (validating it first when
// this worker has not).
func Page(ctx context.Context, ps *pages.Pages, st *store.Store, c *catalog.Integration, in syncstep.BatchInput) (*pages.Page, error) {
	p, err := validate.Page(ctx, ps, st, c, in)
	if err != nil {
		return nil, err
	}
	p.Mu.Lock()
	defer p.Mu.Unlock()
	if p.Transformed {
		return p, nil
	}
	var bad []store.QuarantineEntry
	rows := make([]connector.Row, 0, len(p.Valid))
	idx := make([]int, 0, len(p.Valid))
	keys := make([]string, 0, len(p.Valid))
	for _, vr := range p.Valid {
		for _, u := range c.Unread {
			if record.Lookup(vr.Rec, u.Path) == nil {
				p.Unread = tally(p.Unread, u.Field)
			}
		}
		out, err := c.Transform(vr.Rec)
		if err != nil {
			bad = append(bad, pages.Quarantine(c.Def.Name, in.Ref, vr.Index, p.Raw[vr.Index], vr.Key, store.StepTransform, []store.ErrorDetail{Detail(err)}))
			continue
		}
		if c.Drops != nil {
			for _, f := range c.Drops(out) {
				p.Dropped = tally(p.Dropped, f)
			}
		}
		rows = append(rows, connector.Row(out))
		idx = append(idx, vr.Index)
		keys = append(keys, vr.Key)
	}
	if len(bad) > 0 {
		if _, err := st.Quarantine(ctx, nil, bad); err != nil {
			return nil, err
		}
	}
	p.Rows, p.RowIndex, p.RowKeys, p.TransformInvalid, p.Transformed = rows, idx, keys, len(bad), true
	p.Valid = nil // the rows are all later steps need
	return p, nil
}

// Detail describes a transformation's failure for quarantine, with the
// field's pointer when the mapping names it.
func Detail(err error) store.ErrorDetail {
	d := store.ErrorDetail{Keyword: "transform", Message: err.Error()}
	var fe *mapping.FieldError
	if errors.As(err, &fe) {
		d.Pointer = fe.Pointer
	}
	return d
}
