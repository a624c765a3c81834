package pipeline

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Deps are what the steps need. Build them once per worker.
type Deps struct {
	DB           *sql.DB
	Store        *store.Store
	Integrations *integration.Registry
	Schemas      *schema.Registry
	Logger       *slog.Logger
	// CachePages bounds the worker-local page cache (default 64 pages).
	CachePages int
	// HTTPOptions are passed to every HTTP source (tests inject transports).
	HTTPOptions []httpsource.Option
	// SinkOptions are passed to every HTTP destination.
	SinkOptions []httpsink.Option
	// LookupEnv resolves a PostgreSQL source's dsn_env (default
	// os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Declared maps the integrations declared in files to their
	// declarative.Spec Hash, which their fingerprint is made of (see
	// Fingerprint); Go integrations are not in it.
	Declared map[string]string
	// KeepVersions bounds the previous versions of an integration kept,
	// after a Reload, for the runs pinned to them (default 5, the most
	// recently used).
	KeepVersions int
	// RetainUnused drops a previous version no step used for this long
	// (default 24h).
	RetainUnused time.Duration
	// Temporal tells whether the run holding an integration's writer lease
	// still runs (a workflow terminated from the Web UI leaves its lease
	// behind). Nil trusts the lease until the run records its end.
	Temporal WorkflowDescriber
	// Metrics counts event applies and change capture's lag (nil: none).
	Metrics *EventMetrics
}

// WorkflowDescriber is the part of the Temporal client the writer lease
// uses (client.Client has it).
type WorkflowDescriber interface {
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// Activities are the sync steps, as methods registered with a worker.
// Every step uses the version of the integration its run is pinned to (see
// Fingerprint and Reload).
type Activities struct {
	db    *sql.DB
	store *store.Store
	log   *slog.Logger
	deps  Deps // to compile the integrations of a Reload
	defs  *definitions
	cache *pageCache
}

// compiled is an integration with everything it needs built once: source
// client, compiled schema, compiled mapping and sink.
type compiled struct {
	def        integration.Definition
	src        connector.Source
	validator  *schema.Validator
	transform  mapping.Func
	steps      []*step
	match      *matcher
	keyPath    []string
	cursorPath []string
	// fingerprint identifies this version of the definition (Fingerprint).
	fingerprint string
	// ensured is set once the destination tables are known to exist
	// (events apply without a StartRun that would make them).
	ensured atomic.Bool
}

// New compiles every registered integration. Every problem is reported.
// Reload replaces them later.
func New(d Deps) (*Activities, error) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.CachePages <= 0 {
		d.CachePages = 64
	}
	reg, declared := d.Integrations, d.Declared
	d.Integrations, d.Declared = nil, nil
	a := &Activities{db: d.DB, store: d.Store, log: d.Logger, deps: d, defs: newDefinitions(d), cache: newPageCache(d.CachePages)}
	if _, err := Reload(a, reg, declared); err != nil {
		return nil, err
	}
	return a, nil
}

func compile(def integration.Definition, d Deps) (*compiled, error) {
	c := &compiled{def: def, keyPath: splitPath(def.KeyField), cursorPath: splitPath(def.CursorField)}
	var errs []error
	if def.Source.HTTP != nil {
		opts := append([]httpsource.Option{httpsource.WithMemoStore(d.Store), httpsource.WithLogger(d.Logger)}, d.HTTPOptions...)
		src, err := httpsource.New(def.Name, *def.Source.HTTP, opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("source: %w", err))
		}
		c.src = src
	}
	if def.Source.Postgres != nil {
		opts := []pgsource.Option{pgsource.WithLogger(d.Logger)}
		if d.LookupEnv != nil {
			opts = append(opts, pgsource.WithLookupEnv(d.LookupEnv))
		}
		src, err := pgsource.New(def.Name, *def.Source.Postgres, opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("source: %w", err))
		}
		c.src = src
	}
	v, err := d.Schemas.Get(def.Schema)
	if err != nil {
		errs = append(errs, fmt.Errorf("schema: %w", err))
	}
	c.validator = v
	var fns []mapping.Func
	if len(def.Mapping.Fields) > 0 {
		fn, err := def.Mapping.Compile()
		if err != nil {
			errs = append(errs, fmt.Errorf("mapping: %w", err))
		}
		fns = append(fns, fn)
	}
	fns = append(fns, def.Transform)
	c.transform = mapping.Chain(fns...)
	steps, err := compileSteps(def, d)
	if err != nil {
		errs = append(errs, err)
	}
	c.steps = steps
	if c.match, err = compileMatch(def); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// get returns the integration's definition a step uses: the version the
// run is pinned to (pinned, the plan's fingerprint) when the worker has it,
// the current one when the run is not pinned (a run started before runs
// were), else a permanent failure.TypeConfig error saying what to do.
func (a *Activities) get(name, pinned string) (*compiled, error) {
	return a.defs.get(name, pinned)
}

// StartRun registers the run, makes sure the destination table exists, and
// returns the run's plan: where to start reading and the policies to apply.
func (a *Activities) StartRun(ctx context.Context, in syncstep.StartRunInput) (syncstep.StartRunOutput, error) {
	c, err := a.get(in.Integration, "") // a new run uses the current definition
	if err != nil {
		return syncstep.StartRunOutput{}, err
	}
	for _, st := range c.steps {
		if st.pg == nil {
			continue
		}
		if err := st.pg.Ensure(ctx, a.db); err != nil {
			return syncstep.StartRunOutput{}, err
		}
	}
	cp, found, err := a.store.LoadCheckpoint(ctx, a.db, in.Integration)
	if err != nil {
		return syncstep.StartRunOutput{}, err
	}
	if err := a.acquireWriter(ctx, in); err != nil {
		return syncstep.StartRunOutput{}, err
	}
	def := c.def
	if in.Kind == store.KindReplay || in.Kind == store.KindRepair {
		// Neither reads the source: a replay reads pending quarantined
		// records up to the newest now, a repair the records its
		// reconciliation found missing or changed.
		var upTo int64
		if in.Kind == store.KindReplay {
			if upTo, err = a.store.MaxQuarantineID(ctx, in.Integration); err != nil {
				return syncstep.StartRunOutput{}, err
			}
		}
		err = a.store.BeginRun(ctx, store.Run{RunID: in.RunID, Integration: in.Integration, WorkflowID: in.WorkflowID,
			Kind: in.Kind, Status: progress.StatusRunning})
		if err != nil {
			return syncstep.StartRunOutput{}, err
		}
		return syncstep.StartRunOutput{Plan: syncstep.Plan{
			Integration: def.Name, Version: def.Version, BatchSize: def.BatchSize, PagesInFlight: def.PagesInFlight,
			Atomic: def.Atomic, InvalidThreshold: 1, ReplayUpTo: upTo, Steps: stepNames(c.steps),
			Definition: c.fingerprint,
		}}, nil
	}
	plan := syncstep.Plan{
		Integration:      def.Name,
		Version:          def.Version,
		BatchSize:        def.BatchSize,
		PagesInFlight:    def.PagesInFlight,
		Atomic:           def.Atomic,
		InvalidThreshold: def.InvalidThreshold,
		Incremental:      def.CursorField != "",
		Steps:            stepNames(c.steps),
		Definition:       c.fingerprint,
	}
	switch {
	case plan.Incremental && found && !in.Full && !cp.Checkpoint.IsZero():
		plan.Since = cp.Checkpoint
		plan.Resumed = true
	case plan.Incremental:
		plan.Since = cursor.Checkpoint{Cursor: def.InitialCursor}
	case found && !in.Full && cp.Position != (cursor.Position{}):
		plan.Start = cp.Position
		plan.Resumed = true
	}
	if in.Kind == store.KindRefresh {
		// A refresh must see every record: no page may come back 304 Not
		// Modified, or SweepRefresh would take its rows for deleted.
		if err := a.store.ForgetMemos(ctx, in.Integration); err != nil {
			return syncstep.StartRunOutput{}, err
		}
	}
	err = a.store.BeginRun(ctx, store.Run{
		RunID:       in.RunID,
		Integration: in.Integration,
		WorkflowID:  in.WorkflowID,
		Kind:        in.Kind,
		Status:      progress.StatusRunning,
		From:        plan.Since,
		Position:    plan.Start,
	})
	if err != nil {
		return syncstep.StartRunOutput{}, err
	}
	return syncstep.StartRunOutput{Plan: plan}, nil
}

// FetchPage reads one page from the source, stages its records in
// PostgreSQL (the claim-check) and keeps them in the worker's cache. It
// heartbeats while the request is in flight.
func (a *Activities) FetchPage(ctx context.Context, in syncstep.FetchPageInput) (syncstep.FetchPageOutput, error) {
	c, err := a.get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	// The heartbeat covers the request and the staging.
	stop := heartbeat(ctx, fmt.Sprintf("fetching page %d", in.Ref.Page))
	defer stop()
	page, err := c.src.Fetch(ctx, connector.Request{Integration: in.Integration, Position: in.Position, Since: in.Since, Limit: in.Limit})
	if err != nil {
		return syncstep.FetchPageOutput{}, err // classified; the workflow adds the page
	}
	ref := in.Ref
	ref.Stage = newStageToken()
	out := syncstep.FetchPageOutput{
		Ref:         ref,
		Count:       page.RecordCount,
		Next:        page.Next,
		Done:        page.Done,
		NotModified: page.NotModified,
		Status:      page.StatusCode,
		CacheKey:    page.CacheKey,
	}
	if page.NotModified {
		return out, nil
	}
	out.Count = len(page.Records)
	if page.ETag != "" {
		out.Memo = &cursor.Memo{ETag: page.ETag, Next: page.Next, Done: page.Done, RecordCount: len(page.Records)}
	}
	if len(c.cursorPath) > 0 {
		out.Last = lastPosition(page.Records, c.cursorPath, c.keyPath)
		out.Advanced = !out.Last.IsZero() && compareCheckpoints(out.Last, in.Since) > 0
	}
	if len(page.Records) > 0 {
		if err := a.stage(ctx, ref, page.Records); err != nil {
			return syncstep.FetchPageOutput{}, err
		}
	}
	return out, nil
}

// FetchQuarantinedPage reads the next page of pending quarantined records
// and stages their payloads like a fetched page, so a replay runs them
// through the same validate, transform and apply steps once the schema or
// mapping is fixed.
func (a *Activities) FetchQuarantinedPage(ctx context.Context, in syncstep.FetchQuarantinedInput) (syncstep.FetchPageOutput, error) {
	if _, err := a.get(in.Integration, in.Definition); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	entries, err := a.store.ListQuarantine(ctx, store.QuarantineFilter{
		Integration: in.Integration, PendingOnly: true, AfterID: in.AfterID, UpToID: in.UpTo, Limit: in.Limit,
	})
	if err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	ref := in.Ref
	ref.Stage = newStageToken()
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
	if err := a.stage(ctx, ref, records); err != nil {
		return syncstep.FetchPageOutput{}, err
	}
	return out, nil
}

// ValidateBatch checks every record of a staged page against the
// integration's JSON Schema and key, skips records at or before the
// checkpoint, and quarantines the invalid ones with every error.
func (a *Activities) ValidateBatch(ctx context.Context, in syncstep.BatchInput) (syncstep.ValidateOutput, error) {
	c, err := a.get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.ValidateOutput{}, err
	}
	e, err := a.validated(ctx, c, in)
	if err != nil {
		return syncstep.ValidateOutput{}, err
	}
	return syncstep.ValidateOutput{Skipped: e.skipped, Valid: e.validCount, Invalid: e.invalid}, nil
}

// TransformBatch maps the page's valid records to destination rows and
// quarantines records the mapping rejects.
func (a *Activities) TransformBatch(ctx context.Context, in syncstep.BatchInput) (syncstep.TransformOutput, error) {
	c, err := a.get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.TransformOutput{}, err
	}
	e, err := a.transformed(ctx, c, in)
	if err != nil {
		return syncstep.TransformOutput{}, err
	}
	return syncstep.TransformOutput{Transformed: len(e.rows), Invalid: e.transformInvalid}, nil
}

// ApplyBatch writes the page's rows to one destination (in.Step) and, in
// the same transaction, quarantines the rows it refuses, updates the run's
// counters and marks the step applied; the last step also saves the
// checkpoint and remembers the page's validator. A PostgreSQL destination
// writes inside that transaction; an HTTP destination is called first
// (idempotently) and its identities are saved in it. A retry of a step that
// already committed writes nothing.
func (a *Activities) ApplyBatch(ctx context.Context, in syncstep.ApplyInput) (syncstep.ApplyOutput, error) {
	c, err := a.get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	st, err := c.step(in.Step)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	marker := batchMarker(ctx, in.Ref.RunID)
	if in.Step > 0 {
		marker += "@" + st.dest.Name
	}
	if prev, done, err := a.store.BatchApplied(ctx, a.db, marker, in.Seq); err != nil {
		return syncstep.ApplyOutput{}, err
	} else if done {
		var out syncstep.ApplyOutput
		if err := json.Unmarshal(prev, &out); err != nil {
			return syncstep.ApplyOutput{}, failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("read applied batch %d: %w", in.Seq, err))
		}
		out.Replayed = true
		if in.Step == len(c.steps)-1 {
			a.cache.drop(in.Ref)
		}
		return out, nil
	}
	e, err := a.transformed(ctx, c, in.BatchInput)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	// Duplicates of entities seen under another key are quarantined or
	// merged (match); every step decides alike, the first one records.
	mr, err := a.matchPage(ctx, c, e, in.Skip)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	skip := in.Skip
	for _, rf := range mr.refused {
		skip = append(skip[:len(skip):len(skip)], rf.pos)
	}
	b, err := a.batchFor(ctx, a.db, st, e, skip, c.match, mr.merges)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if in.Step == 0 {
		b.refused = append(b.refused, mr.refused...)
		b.claims = mr.claims
	}
	var sent *httpSent
	if st.http != nil {
		if sent, err = a.sendHTTP(ctx, st, in, b); err != nil {
			return syncstep.ApplyOutput{}, err
		}
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.ApplyOutput{}, postgres.Classify(err, "begin apply transaction")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if st.pg != nil {
		err = a.applyPostgres(ctx, tx, st, in, b)
	} else {
		err = a.saveHTTP(ctx, tx, st, in, sent)
	}
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	out, err := a.commitBatch(ctx, tx, c, in, e, b, marker)
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if in.Step == len(c.steps)-1 {
		a.cache.drop(in.Ref)
	}
	return out, nil
}

// commitBatch finishes a step's transaction: the step's refusals are
// quarantined, the run's counters updated (which fences out a run being
// compensated), the last step saves the checkpoint (or, replaying, marks
// the entries it applied), and the step is marked applied.
func (a *Activities) commitBatch(ctx context.Context, tx *sql.Tx, c *compiled, in syncstep.ApplyInput, e *pageEntry, b *stepBatch, marker string) (syncstep.ApplyOutput, error) {
	out := b.out
	out.Rejected = len(b.refused)
	refused := make(map[int]bool, len(in.Skip)+len(b.refused))
	for _, p := range in.Skip {
		refused[p] = true
	}
	if len(b.refused) > 0 {
		q := make([]store.QuarantineEntry, 0, len(b.refused))
		for _, rf := range b.refused {
			refused[rf.pos] = true
			idx := e.rowIndex[rf.pos]
			q = append(q, a.quarantineEntry(in.Integration, in.Ref, idx, e.raw[idx], e.rowKeys[rf.pos], "apply",
				[]store.ErrorDetail{{Keyword: rf.keyword, Message: rf.message}}))
		}
		if _, err := a.store.Quarantine(ctx, tx, q); err != nil {
			return syncstep.ApplyOutput{}, err
		}
	}
	for p := range refused {
		out.Refused = append(out.Refused, p)
	}
	if c.match != nil && len(b.claims) > 0 {
		claims := make(map[string]string, len(b.claims))
		for p, v := range b.claims {
			if !refused[p] {
				claims[e.rowKeys[p]] = v
			}
		}
		if err := a.store.ClaimMatchValues(ctx, tx, c.def.Name, in.Ref.RunID, claims); err != nil {
			return syncstep.ApplyOutput{}, err
		}
	}
	sort.Ints(out.Refused)
	delta := progress.Counts{Invalid: out.Rejected, Valid: -out.Rejected}
	if in.Step == 0 {
		delta.Inserted, delta.Updated, delta.Unchanged = out.Inserted, out.Updated, out.Unchanged
		delta.Stale, delta.Duplicates = out.Stale, out.Duplicates
	}
	counts := in.Counts.Add(delta)
	var err error
	switch final := in.Step == len(c.steps)-1; {
	case !final:
	case in.Replay:
		err = a.store.MarkReplayed(ctx, tx, appliedEntries(in.QuarantineIDs, e, refused), in.Ref.RunID)
	case in.Kind == store.KindRepair:
		// A repair applies chosen records: the checkpoint stays where the
		// syncs left it, but a valid version still resolves a quarantined
		// record.
		err = a.store.Supersede(ctx, tx, in.Integration, appliedKeys(e, refused), in.Ref.RunID)
	default:
		err = a.store.SaveCheckpoint(ctx, tx, in.Integration, store.CheckpointState{
			Checkpoint: in.Checkpoint, Position: in.Next, RunID: in.Ref.RunID, Seq: in.Seq,
		})
		if err == nil && in.Memo != nil && in.CacheKey != "" {
			err = a.store.Remember(ctx, tx, in.Integration, in.CacheKey, *in.Memo)
		}
		if err == nil {
			// A valid version of a quarantined record resolves its entry.
			err = a.store.Supersede(ctx, tx, in.Integration, appliedKeys(e, refused), in.Ref.RunID)
		}
	}
	if err == nil {
		err = a.store.UpdateRun(ctx, tx, in.Ref.RunID, counts, in.Checkpoint, in.Next)
	}
	if err == nil {
		err = a.store.MarkBatchApplied(ctx, tx, marker, in.Seq, out)
	}
	if err != nil {
		return syncstep.ApplyOutput{}, err
	}
	if err := tx.Commit(); err != nil {
		return syncstep.ApplyOutput{}, postgres.Classify(err, fmt.Sprintf("commit batch %d", in.Seq))
	}
	return out, nil
}

// acceptedRows lists the positions of the page's rows the destinations
// took: every row but those refused.
func acceptedRows(e *pageEntry, refused map[int]bool) []int {
	rows := make([]int, 0, max(0, len(e.rowIndex)-len(refused)))
	for j := range e.rowIndex {
		if !refused[j] {
			rows = append(rows, j)
		}
	}
	return rows
}

// appliedEntries picks, among a replay page's quarantine entries (one per
// record), those whose records reached the destination: not those found
// invalid again, nor rows a destination refused.
func appliedEntries(ids []int64, e *pageEntry, refused map[int]bool) []int64 {
	if len(ids) != len(e.raw) {
		return nil // not a replay page as staged; mark nothing rather than the wrong entries
	}
	rows := acceptedRows(e, refused)
	applied := make([]int64, len(rows))
	for i, j := range rows {
		applied[i] = ids[e.rowIndex[j]]
	}
	return applied
}

// appliedKeys lists the keys of the page's rows the destinations took.
func appliedKeys(e *pageEntry, refused map[int]bool) []string {
	rows := acceptedRows(e, refused)
	keys := make([]string, len(rows))
	for i, j := range rows {
		keys[i] = e.rowKeys[j]
	}
	return keys
}

// newStageToken returns a fresh random token naming one fetch's staged copy.
// stage keeps a page's records for the run's later steps: in PostgreSQL
// (the claim-check a rebuilt cache reads) and in the worker's cache.
func (a *Activities) stage(ctx context.Context, ref syncstep.PageRef, records []json.RawMessage) error {
	if err := a.store.StagePage(ctx, ref.RunID, ref.Page, ref.Stage, records); err != nil {
		return err
	}
	a.cache.put(ref, &pageEntry{raw: records})
	return nil
}

func newStageToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// batchMarker keys applied-batch markers by the run and the workflow
// execution applying it: retries of an ApplyBatch share the key and find
// their own commit, while a reset execution, which numbers its batches
// afresh, never mistakes an earlier execution's batch for its own.
func batchMarker(ctx context.Context, runID string) string {
	if !activity.IsActivity(ctx) {
		return runID
	}
	return runID + "#" + activity.GetInfo(ctx).WorkflowExecution.RunID
}

// CompensateBatch restores the before-images of one applied batch of an
// atomic run. It is idempotent.
func (a *Activities) CompensateBatch(ctx context.Context, in syncstep.CompensateInput) (syncstep.CompensateOutput, error) {
	c, err := a.get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.CompensateOutput{}, err
	}
	st, err := c.step(in.Step)
	if err != nil {
		return syncstep.CompensateOutput{}, err
	}
	if st.http != nil {
		n, err := a.compensateHTTP(ctx, st, in.RunID, in.Seq)
		if err != nil {
			return syncstep.CompensateOutput{}, err
		}
		activity.GetLogger(ctx).Info("batch compensated", "runId", in.RunID, "seq", in.Seq, "destination", st.dest.Name, "undone", n)
		return syncstep.CompensateOutput{Restored: n}, nil
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return syncstep.CompensateOutput{}, postgres.Classify(err, "begin compensation")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	n, err := st.pg.Compensate(ctx, tx, in.RunID, in.Seq)
	if err != nil {
		return syncstep.CompensateOutput{}, err // classified; the workflow names the batch
	}
	if err := tx.Commit(); err != nil {
		return syncstep.CompensateOutput{}, postgres.Classify(err, "commit compensation")
	}
	activity.GetLogger(ctx).Info("batch compensated", "runId", in.RunID, "seq", in.Seq, "destination", st.dest.Name, "restored", n)
	return syncstep.CompensateOutput{Restored: n}, nil
}

// BeginCompensation starts undoing a failed or cancelled atomic run. It
// marks the run Compensating, which fences out any late apply of it, and
// puts back what the run moved before a single row is restored: the
// checkpoint returns to where the run found it and the page validators it
// remembered are forgotten (a sync run), or the quarantine entries it
// marked replayed are pending again (a replay run). So if compensation
// stops half-way, the next run re-reads everything the run read; nothing is
// skipped. It returns the last batch with before-images to undo.
func (a *Activities) BeginCompensation(ctx context.Context, in syncstep.BeginCompensationInput) (syncstep.BeginCompensationOutput, error) {
	c, err := a.get(in.Integration, in.Definition)
	if err != nil {
		return syncstep.BeginCompensationOutput{}, err
	}
	run, err := a.store.BeginCompensation(ctx, in.RunID)
	if err != nil {
		return syncstep.BeginCompensationOutput{}, err
	}
	if err := a.rollBackRunState(ctx, in.Integration, in.Kind, run); err != nil {
		return syncstep.BeginCompensationOutput{}, err
	}
	last, err := a.store.LastIdentityImageSeq(ctx, in.RunID)
	if err != nil {
		return syncstep.BeginCompensationOutput{}, err
	}
	for _, st := range c.steps {
		if st.pg == nil {
			continue
		}
		seq, err := st.pg.LastImagedBatch(ctx, a.db, in.RunID)
		if err != nil {
			return syncstep.BeginCompensationOutput{}, err
		}
		last = max(last, seq)
	}
	return syncstep.BeginCompensationOutput{LastBatch: last}, nil
}

// rollBackRunState puts back the integration state a compensated run moved:
// the checkpoint and page memos of a sync run, the replay marks of a replay
// run. It is idempotent.
func (a *Activities) rollBackRunState(ctx context.Context, integration, kind string, run store.Run) error {
	switch kind {
	case store.KindReplay:
		return a.store.UnmarkReplayed(ctx, run.RunID)
	case store.KindRepair:
		return nil // it moved no checkpoint
	}
	if err := a.store.RestoreCheckpoint(ctx, a.db, integration, store.CheckpointState{Checkpoint: run.From, RunID: run.RunID}); err != nil {
		return err
	}
	return a.store.ForgetMemos(ctx, integration)
}

// FinishRun records the run's end. A completed run clears the mid-read
// position (the next run starts from the checkpoint); a compensated run puts
// the checkpoint back where the run found it and forgets the page validators
// it remembered, since the pages they describe were rolled back.
func (a *Activities) FinishRun(ctx context.Context, in syncstep.FinishRunInput) error {
	c, err := a.get(in.Integration, in.Definition)
	if err != nil && (in.Status == progress.StatusCompleted || in.Status == progress.StatusCompensated) {
		return err
	}
	// A run that failed, or was cancelled, is recorded even when its
	// definition is gone (c, nil, is not used then).
	err = a.store.FinishRun(ctx, in.RunID, in.Status, in.Counts, in.To, in.Error, in.ErrorType)
	if errors.Is(err, sql.ErrNoRows) {
		// The run failed before StartRun recorded it: nothing to finish,
		// but the writer lease it may have taken goes back.
		activity.GetLogger(ctx).Warn("finishing a run that was never recorded", "runId", in.RunID, "status", in.Status)
		if in.Owner == "" || in.Owner == in.RunID {
			return a.store.ReleaseWriter(ctx, in.Integration, in.RunID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case in.Status == progress.StatusCompensated:
		// BeginCompensation did this already; runs recorded before it
		// existed rely on this.
		run, err := a.store.GetRun(ctx, in.RunID)
		if err != nil {
			return err
		}
		if err := a.rollBackRunState(ctx, in.Integration, in.Kind, run); err != nil {
			return err
		}
	case in.Kind == store.KindReplay || in.Kind == store.KindRepair:
		// A replay or repair never moves the integration's checkpoint or memos.
	case in.Status == progress.StatusCompleted:
		if err := a.store.ClearPosition(ctx, in.Integration); err != nil {
			return err
		}
	}
	// A failed or cancelled run keeps its staged pages and markers, so a
	// reset from the Web UI can continue it; they go once a later run of the
	// integration completes.
	if in.Status == progress.StatusCompleted || in.Status == progress.StatusCompensated {
		for _, st := range c.steps {
			if st.pg == nil {
				continue
			}
			if err := st.pg.DropBeforeImages(ctx, a.db, in.RunID); err != nil {
				return err
			}
		}
		// A refresh's seen keys (and an earlier failed refresh's, once a
		// run completes) go with its before-images.
		if err := a.forgetSeen(ctx, c, in.Integration, in.RunID, in.Status == progress.StatusCompleted); err != nil {
			return err
		}
		if err := a.store.ForgetIdentityImages(ctx, in.RunID); err != nil {
			return err
		}
		if err := a.store.ForgetRun(ctx, in.RunID); err != nil {
			return err
		}
	}
	if in.Status == progress.StatusCompleted {
		if err := a.store.ForgetEarlierRuns(ctx, in.Integration, in.RunID); err != nil {
			return err
		}
	}
	if in.Owner == "" || in.Owner == in.RunID {
		if err := a.store.ReleaseWriter(ctx, in.Integration, in.RunID); err != nil {
			return err
		}
	}
	a.cache.dropRun(in.RunID)
	return nil
}

// acquireWriter takes the integration's writer lease for the run (or
// checks the run's owner holds it), or fails with failure.TypeBusy naming
// the run that writes the integration now.
func (a *Activities) acquireWriter(ctx context.Context, in syncstep.StartRunInput) error {
	owner := in.Owner
	if owner == "" {
		owner = in.RunID
	}
	w := store.Writer{Integration: in.Integration, RunID: owner, WorkflowID: in.WorkflowID, Kind: in.Kind, Trigger: in.Trigger}
	if in.Owner != "" && in.Owner != in.RunID {
		// A repair run writes under its reconciliation's lease, which
		// must still be held by it.
		holder, ok, err := a.store.CurrentWriter(ctx, in.Integration)
		if err != nil {
			return err
		}
		if ok && holder.RunID == owner {
			return nil
		}
		if ok {
			return busyError(in, holder)
		}
		if i := strings.LastIndex(owner, "/"); i > 0 {
			w.WorkflowID = owner[:i]
		}
	}
	holder, acquired, err := a.store.AcquireWriter(ctx, w, a.alive)
	if err != nil {
		return err
	}
	if !acquired {
		return busyError(in, holder)
	}
	if holder.RunID != owner {
		a.log.Warn("took over the writer lease of a run that no longer runs",
			"integration", in.Integration, "run", owner, "previous", holder.RunID, "previousWorkflow", holder.WorkflowID)
	}
	return nil
}

// busyError says which run writes the integration and what to do.
func busyError(in syncstep.StartRunInput, holder store.Writer) error {
	by := holder.Kind
	if holder.Trigger != "" {
		by += " started by " + holder.Trigger
	}
	return failure.Permanent(failure.TypeBusy, fmt.Errorf(
		"integration %q is being written by another run: %s (workflow %q, a %s, since %s); only one run writes an integration at a time, so this %s run did nothing. Wait for that run to end (tether watch %s), cancel it, or start this one with wait (tether start --wait) to queue behind it",
		in.Integration, holder.RunID, holder.WorkflowID, by, holder.AcquiredAt.UTC().Format(time.RFC3339), in.Kind, holder.WorkflowID))
}

// alive asks Temporal whether the workflow holding a lease still runs.
func (a *Activities) alive(ctx context.Context, holder store.Writer) (bool, error) {
	if a.deps.Temporal == nil || holder.WorkflowID == "" {
		return true, nil
	}
	resp, err := a.deps.Temporal.DescribeWorkflowExecution(ctx, holder.WorkflowID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	info := resp.GetWorkflowExecutionInfo()
	if info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return false, nil
	}
	// The same workflow id may run again later: the lease's run id is
	// "<workflow id>/<first run id>".
	if first := info.GetFirstRunId(); first != "" && holder.RunID != holder.WorkflowID+"/"+first {
		return false, nil
	}
	return true, nil
}

// heartbeat records a heartbeat now and every few seconds until stopped.
func heartbeat(ctx context.Context, detail string) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	activity.RecordHeartbeat(ctx, detail)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, detail)
			}
		}
	}()
	return func() { close(done) }
}
