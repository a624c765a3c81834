// Package fetch is the sync's fetch step: FetchPage reads one page from the
// integration's source at a position and stages its records (the
// claim-check, package pages), returning only a reference, counts and
// where the next page starts. FetchQuarantinedPage reads a page of
// quarantined records instead, for a replay run.
package fetch

import (
	"context"
	"encoding/json"
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/pages"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Activities is the fetch step. Its fields are what it uses.
type Activities struct {
	Catalog *catalog.Catalog
	Pages   *pages.Pages
	// Store reads quarantined records (replays).
	Store *store.Store
}

// Register puts the activities of a on a worker, each under the name
// workflows call it by (package syncstep).
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.FetchPage, activity.RegisterOptions{Name: syncstep.FetchPage.Name()})
	r.RegisterActivityWithOptions(a.FetchQuarantinedPage, activity.RegisterOptions{Name: syncstep.FetchQuarantinedPage.Name()})
	r.RegisterActivityWithOptions(a.StageRecords, activity.RegisterOptions{Name: syncstep.StageRecords.Name()})
}

// FetchPage reads one page from the source, stages its records in
// PostgreSQL (the claim-check) and keeps them in the worker's cache. It
// heartbeats while the request is in flight.
func (a *Activities) FetchPage(ctx context.Context, in syncstep.FetchPageInput) (syncstep.FetchPageOutput, error) {
	c, err := a.Catalog.Get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	// The heartbeat covers the request and the staging.
	stop := heartbeat.Keep(ctx, fmt.Sprintf("fetching page %d", in.Ref.Page))
	defer stop()
	page, err := c.Source.Fetch(ctx, connector.Request{Integration: in.Integration, Position: in.Position, Since: in.Since, Limit: in.Limit})
	if err != nil {
		return syncstep.FetchPageOutput{}, err // classified; the workflow adds the page
	}
	ref := in.Ref
	ref.Stage = pages.NewToken()
	out := syncstep.FetchPageOutput{
		Ref:         ref,
		Count:       page.RecordCount,
		Next:        page.Next,
		Done:        page.Done,
		NotModified: page.NotModified,
		Status:      page.StatusCode,
		CacheKey:    page.CacheKey,
		Total:       page.Total,
	}
	if page.NotModified {
		return out, nil
	}
	out.Count = len(page.Records)
	if page.ETag != "" {
		out.Memo = &cursor.Memo{ETag: page.ETag, Next: page.Next, Done: page.Done, RecordCount: len(page.Records)}
	}
	if len(c.CursorPath) > 0 {
		out.Last = record.Last(page.Records, c.CursorPath, c.KeyPath)
		out.Advanced = !out.Last.IsZero() && cursor.Compare(out.Last, in.Since) > 0
	}
	if len(page.Records) > 0 {
		if err := a.Pages.Stage(ctx, ref, page.Records); err != nil {
			return syncstep.FetchPageOutput{}, err
		}
	}
	return out, nil
}

// maxStagedRecords bounds the records one StageRecords takes: they travel
// through history once, in the workflow's input or an update.
const maxStagedRecords = 1000

// StageRecords stages records a workflow already has as one page, so that
// validate, transform and apply work on them exactly as on a fetched page
// (the records a run of kind records applies).
func (a *Activities) StageRecords(ctx context.Context, in syncstep.StageRecordsInput) (syncstep.FetchPageOutput, error) {
	if _, err := a.Catalog.Get(in.Integration, in.Definition); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	if n := len(in.Records); n == 0 || n > maxStagedRecords {
		return syncstep.FetchPageOutput{}, failure.Permanent(failure.TypeConfig, fmt.Errorf(
			"stage records of %q: %d records given; a page takes 1 to %d", in.Integration, n, maxStagedRecords))
	}
	ref := in.Ref
	ref.Stage = pages.NewToken()
	if err := a.Pages.Stage(ctx, ref, in.Records); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	return syncstep.FetchPageOutput{Ref: ref, Count: len(in.Records), Done: true}, nil
}

// FetchQuarantinedPage reads the next page of pending quarantined records
// and stages their payloads like a fetched page, so a replay runs them
// through the same validate, transform and apply steps once the schema or
// mapping is fixed.
func (a *Activities) FetchQuarantinedPage(ctx context.Context, in syncstep.FetchQuarantinedInput) (syncstep.FetchPageOutput, error) {
	if _, err := a.Catalog.Get(in.Integration, in.Definition); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	entries, err := a.Store.ListQuarantine(ctx, store.QuarantineFilter{
		Integration: in.Integration, PendingOnly: true, AfterID: in.AfterID, UpToID: in.UpTo, Limit: in.Limit,
	})
	if err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	ref := in.Ref
	ref.Stage = pages.NewToken()
	out := syncstep.FetchPageOutput{Ref: ref, Count: len(entries), Next: cursor.Position{Offset: int(in.AfterID)},
		Done: len(entries) < in.Limit}
	if len(entries) == 0 {
		out.Done = true
		return out, nil
	}
	records := make([]json.RawMessage, len(entries))
	out.QuarantineIDs = make([]int64, len(entries))
	for i, e := range entries {
		records[i] = e.Payload
		if len(e.Payload) == 0 {
			records[i] = json.RawMessage(e.PayloadText)
		}
		out.QuarantineIDs[i] = e.ID
	}
	last := entries[len(entries)-1].ID
	out.Next = cursor.Position{Offset: int(last)}
	out.Done = out.Done || last >= in.UpTo
	if err := a.Pages.Stage(ctx, ref, records); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	return out, nil
}
