package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/lib/pq"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/connector/pgsource/capture"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	wfcapture "github.com/tetherflow/tether/workflows/capture"
)

// Change capture: row changes committed into a source table of the bench
// schema reach a destination table through tether (the integration's
// CaptureWorkflow on an in-process worker) and through a plain loop on
// the same capture package without Temporal. Each contender has its own
// source table, outbox and destination table, so neither reads the
// other's changes.
const (
	capSourceTether   = "cdc_source"
	capSourceBaseline = "cdc_source_baseline"
	capSourcePlain    = "cdc_source_plain" // no capture: what the writers cost without it
	capDestTether     = "cdc_contacts"
	capDestBaseline   = "cdc_contacts_baseline"
	capSchemaFile     = "contacts-table.schema.json"
	capBatchSize      = 1000 // the integration's batch size, and the baseline's read limit
)

// capStack is what the capture measures add to the bench's stack.
type capStack struct {
	st   *stack
	sdsn string // the bench schema's DSN (search_path set)

	name, baseName string // integration names (outbox tables)
	taskQueue      string
	def            integration.Definition
	outboxExisted  bool // tether_capture existed before the bench

	writerDB *sql.DB // the source writers
	readerDB *sql.DB // the baseline's outbox reads, as pgsource's pool for tether
	worker   worker.Worker

	tether, baseline *capContender
	plain            *capContender // writers only, no capture
	loop             *capBaseline
	stopLoop         func()

	removed []string // what the final removal did, for the report
}

// capContender is one way from a source table to a destination table.
type capContender struct {
	name         string
	source, dest string
	target       capture.Target  // none for the plain table
	lag          *capture.Reader // Lag only; nil for the plain table
	workflow     bool            // tether: the integration's CaptureWorkflow
	writer       *capWriter
}

// capDefinition is the integration tether runs: the source table captured
// into the destination table, as tests/integration/capture_test.go
// declares one.
func capDefinition(name, dsn, schema string) integration.Definition {
	return integration.Definition{
		Name:        name,
		Description: "eventbench: " + schema + "." + capSourceTether + " → " + capDestTether + " by change capture",
		Version:     1,
		Source: integration.Source{Postgres: &pgsource.Config{
			DSN: dsn, Schema: schema, Table: capSourceTether, Key: []string{"id"}, CursorColumn: "updated_at",
		}},
		Schema:      capSchemaFile,
		KeyField:    "id",
		CursorField: "updated_at",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "email", From: "email", Normalize: []string{"email"}, Required: true},
			{To: "full_name", From: "full_name"},
			{To: "status", From: "status"},
			{To: "score", From: "score", Cast: "int"},
			{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true},
		}},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name: capDestTether,
			Columns: []pgsink.Column{
				{Name: "id", Type: "bigint", NotNull: true},
				{Name: "email", Type: "text", NotNull: true},
				{Name: "full_name", Type: "text"},
				{Name: "status", Type: "text"},
				{Name: "score", Type: "integer"},
				{Name: "updated_at", Type: "timestamptz"},
			},
			Key:           []string{"id"},
			VersionColumn: "updated_at",
		}},
		BatchSize: capBatchSize,
		Events:    integration.Events{Capture: true},
	}
}

// startCapture creates the capture tables, starts tether's capture (a
// worker of its own, the workflow started by app.ApplyCaptures) and the
// baseline's loop, and waits until both captures are installed. Everything
// is undone by st.close, capture first.
func startCapture(ctx context.Context, st *stack) (*capStack, error) {
	id := suffix()
	cs := &capStack{st: st, name: "eventbench-cdc-" + id, baseName: "eventbench-cdc-base-" + id, taskQueue: "eventbench-cdc-" + id}
	var err error
	if cs.sdsn, err = postgres.WithSearchPath(st.o.dsn, st.schema); err != nil {
		return nil, err
	}
	if err := st.admin.QueryRowContext(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, capture.DefaultOutboxSchema).Scan(&cs.outboxExisted); err != nil {
		return nil, err
	}
	// Undone last (closers run in reverse): whatever is still installed.
	st.onClose(cs.removeLeftovers)

	if err := cs.openPools(ctx); err != nil {
		return nil, err
	}
	// The webhook measures are over: keep fewer of their idle connections
	// (the machine's PostgreSQL is shared). Tether's capture applies on
	// st.db, as the worker applies everything on its one pool.
	st.baseDB.SetMaxIdleConns(4)

	cs.def = capDefinition(cs.name, cs.sdsn, st.schema)
	if err := cs.createTables(ctx); err != nil {
		return nil, err
	}
	if err := cs.startWorker(); err != nil {
		return nil, err
	}
	if err := cs.newContenders(); err != nil {
		return nil, err
	}
	if err := cs.startBaseline(ctx); err != nil {
		return nil, err
	}
	if err := cs.startTether(ctx); err != nil {
		return nil, err
	}
	return cs, nil
}

// openPools opens the source writers' pool and the outbox readers' pool,
// closed at close.
func (cs *capStack) openPools(ctx context.Context) error {
	st := cs.st
	open := func(dsn string, conns int) (*sql.DB, error) {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		st.onClose(func() { db.Close() })
		return db, nil
	}
	wdsn, err := withParam(cs.sdsn, "application_name", writerApp)
	if err != nil {
		return err
	}
	if cs.writerDB, err = open(wdsn, st.o.capConns); err != nil {
		return err
	}
	if cs.readerDB, err = open(cs.sdsn, pgsource.DefaultMaxOpenConns); err != nil {
		return err
	}
	return nil
}

// newContenders sets up tether, the baseline and the plain table: their
// captures (none for the plain table), lag readers and writers.
func (cs *capStack) newContenders() error {
	st := cs.st
	cs.tether = &capContender{name: "tether", source: capSourceTether, dest: capDestTether, workflow: true,
		target: capture.For(cs.name, *cs.def.Source.Postgres)}
	cs.baseline = &capContender{name: "baseline (no Temporal)", source: capSourceBaseline, dest: capDestBaseline,
		target: capture.Target{Integration: cs.baseName, Schema: st.schema, Table: capSourceBaseline, Key: []string{"id"}}}
	for _, c := range []*capContender{cs.tether, cs.baseline} {
		var err error
		if c.lag, err = capture.NewReader(cs.readerDB, "", c.target); err != nil {
			return err
		}
		c.writer = newCapWriter(cs.writerDB, c.source, st.o.concurrency)
	}
	cs.plain = &capContender{name: "no capture (writers)", source: capSourcePlain,
		writer: newCapWriter(cs.writerDB, capSourcePlain, st.o.concurrency)}
	return nil
}

// startBaseline installs the baseline's capture and starts its loop: the
// capture package alone.
func (cs *capStack) startBaseline(ctx context.Context) error {
	st := cs.st
	if err := capture.Install(ctx, cs.readerDB, cs.baseline.target); err != nil {
		return fmt.Errorf("install the baseline's capture: %w", err)
	}
	sch, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		return err
	}
	v, err := sch.Get(capSchemaFile)
	if err != nil {
		return err
	}
	r, err := capture.NewReader(cs.readerDB, cs.sdsn, cs.baseline.target)
	if err != nil {
		return err
	}
	cs.loop = newCapBaseline(st.baseDB, r, v)
	lctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { cs.loop.run(lctx) })
	cs.stopLoop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		r.Close()
	})
	st.onClose(cs.stopLoop)
	return nil
}

// startTether starts tether's capture the worker's own way
// (app.ApplyCaptures) and waits until its workflow installed it.
func (cs *capStack) startTether(ctx context.Context) error {
	st := cs.st
	res, err := app.ApplyCaptures(ctx, st.c, "default", cs.taskQueue, []integration.Definition{cs.def})
	if err != nil {
		return fmt.Errorf("start the capture workflow: %w", err)
	}
	if len(res.Running) != 1 {
		return fmt.Errorf("start the capture workflow: ApplyCaptures ran %v", res.Running)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		ok, err := capture.Installed(ctx, st.db, cs.tether.target)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tether's capture is not installed on %s after 60s: %s", capSourceTether, cs.progress(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createTables creates the source tables, the destination tables and the
// commit stamps: a deferred constraint trigger on each of the four tables
// records every committed row version (a delete: the row deleted) with
// clock_timestamp() at commit and the transaction's id.
func (cs *capStack) createTables(ctx context.Context) error {
	st := cs.st
	sink, err := pgsink.NewTableWriter(*cs.def.Destination.Postgres)
	if err != nil {
		return err
	}
	if err := sink.Ensure(ctx, st.db); err != nil {
		return err
	}
	stmts := []string{
		`CREATE TABLE ` + capSourceTether + ` (id bigint PRIMARY KEY, email text NOT NULL, full_name text, status text,
			score integer, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`,
		`CREATE TABLE ` + capSourceBaseline + ` (LIKE ` + capSourceTether + ` INCLUDING ALL)`,
		`CREATE TABLE ` + capSourcePlain + ` (LIKE ` + capSourceTether + ` INCLUDING ALL)`,
		`CREATE TABLE ` + capDestBaseline + ` (LIKE ` + capDestTether + ` INCLUDING ALL)`,
		`CREATE TABLE bench_cdc_commits (seq bigserial PRIMARY KEY, tbl text NOT NULL, id bigint NOT NULL, op "char" NOT NULL,
			version timestamptz, xid bigint NOT NULL, at timestamptz NOT NULL)`,
		`CREATE INDEX ON bench_cdc_commits (tbl, seq)`,
		`CREATE FUNCTION bench_cdc_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		INSERT INTO ` + st.schema + `.bench_cdc_commits (tbl, id, op, version, xid, at)
		VALUES (TG_TABLE_NAME, OLD.id, 'D', OLD.updated_at, txid_current(), clock_timestamp());
	ELSE
		INSERT INTO ` + st.schema + `.bench_cdc_commits (tbl, id, op, version, xid, at)
		VALUES (TG_TABLE_NAME, NEW.id, 'U', NEW.updated_at, txid_current(), clock_timestamp());
	END IF;
	RETURN NULL;
END $$`,
	}
	for _, t := range []string{capSourceTether, capSourceBaseline, capSourcePlain, capDestTether, capDestBaseline} {
		stmts = append(stmts, `CREATE CONSTRAINT TRIGGER bench_cdc_commit AFTER INSERT OR UPDATE OR DELETE ON `+t+
			` DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_cdc_record()`)
	}
	for _, q := range stmts {
		if _, err := st.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set up the capture tables: %w\n%s", err, q)
		}
	}
	return nil
}

// startWorker runs the capture integration on an in-process worker of its
// own task queue, with the worker's default options.
func (cs *capStack) startWorker() error {
	st := cs.st
	log := slog.New(removalNoise{slog.NewTextHandler(st.workerLog, &slog.HandlerOptions{Level: slog.LevelWarn})})
	// A client of its own, so the worker logs through removalNoise.
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := app.Dial(dctx, config.Temporal{Address: st.srv.FrontendHostPort(), Namespace: "default"}, log)
	if err != nil {
		return err
	}
	st.onClose(c.Close)
	reg, err := integration.NewRegistry(cs.def)
	if err != nil {
		return err
	}
	w, err := st.runWorker(c, cs.taskQueue, reg, log)
	if err != nil {
		return err
	}
	cs.worker = w
	// Stopped before removeLeftovers runs, so no CaptureChanges installs
	// the capture again after it.
	st.onClose(sync.OnceFunc(w.Stop))
	return nil
}

// progress is the capture workflow's progress query, for messages.
func (cs *capStack) progress(ctx context.Context) string {
	p, err := cs.queryProgress(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%+v", p)
}

func (cs *capStack) queryProgress(ctx context.Context) (wfcapture.Progress, error) {
	var p wfcapture.Progress
	resp, err := cs.st.c.QueryWorkflow(ctx, wfcapture.WorkflowID(cs.name), "", wfcapture.QueryProgress)
	if err != nil {
		return p, err
	}
	err = resp.Get(&p)
	return p, err
}

// remove drops both captures as a user would: tether's by removing the
// integration from the worker's set (app.ApplyCaptures signals "remove";
// the workflow drops the trigger, function and outbox, then completes),
// the baseline's with capture.Remove. It records what it did and checks
// that no outbox, trigger or function of either is left.
func (cs *capStack) remove(ctx context.Context) error {
	st := cs.st
	t0 := time.Now()
	res, err := app.ApplyCaptures(ctx, st.c, "default", cs.taskQueue, nil)
	if err != nil {
		return fmt.Errorf("remove tether's capture: %w", err)
	}
	if len(res.Removed) == 0 {
		// Not listed (visibility lags): signal it directly.
		if err := st.c.SignalWorkflow(ctx, wfcapture.WorkflowID(cs.name), "", wfcapture.SignalRemove, nil); err != nil {
			return fmt.Errorf("signal %s: %w", wfcapture.SignalRemove, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err = st.c.GetWorkflow(wctx, wfcapture.WorkflowID(cs.name), "").Get(wctx, nil)
	cancel()
	if err != nil {
		return fmt.Errorf("tether's capture workflow after %q: %w", wfcapture.SignalRemove, err)
	}
	cs.removed = append(cs.removed, fmt.Sprintf("tether: ApplyCaptures without the integration signalled %q; the workflow removed the capture and completed %.1f s later",
		wfcapture.SignalRemove, time.Since(t0).Seconds()))

	cs.stopLoop()
	t0 = time.Now()
	if err := capture.Remove(ctx, cs.readerDB, cs.baseline.target); err != nil {
		return fmt.Errorf("remove the baseline's capture: %w", err)
	}
	cs.removed = append(cs.removed, fmt.Sprintf("baseline: loop stopped, capture.Remove took %.0f ms", ms(time.Since(t0))))

	left, err := cs.leftovers(ctx)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("after removal, still installed: %v", left)
	}
	cs.removed = append(cs.removed, fmt.Sprintf("checked: no trigger on %s or %s, no function or outbox %s.%q / %q left",
		capSourceTether, capSourceBaseline, capture.DefaultOutboxSchema, cs.name, cs.baseName))
	return nil
}

// leftovers lists what is still installed of either capture.
func (cs *capStack) leftovers(ctx context.Context) ([]string, error) {
	var left []string
	for _, c := range []*capContender{cs.tether, cs.baseline} {
		var trig, fn, outbox bool
		err := cs.st.admin.QueryRowContext(ctx, `
SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal AND tgname LIKE 'tether_capture%'),
       EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $2 AND p.proname = 'tether_capture_' || $3),
       to_regclass($4) IS NOT NULL`,
			pq.QuoteIdentifier(cs.st.schema)+"."+pq.QuoteIdentifier(c.source), capture.DefaultOutboxSchema, c.target.Integration,
			pq.QuoteIdentifier(capture.DefaultOutboxSchema)+"."+pq.QuoteIdentifier(c.target.Integration)).Scan(&trig, &fn, &outbox)
		if err != nil {
			return nil, err
		}
		for what, there := range map[string]bool{"trigger": trig, "function": fn, "outbox": outbox} {
			if there {
				left = append(left, c.name+" "+what)
			}
		}
	}
	return left, nil
}

// removeLeftovers runs at close, after the worker stopped: it removes
// whatever either capture left (nothing, after remove), and the outbox
// schema when the bench created it and it is empty.
func (cs *capStack) removeLeftovers() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, c := range []*capContender{cs.tether, cs.baseline} {
		if c == nil {
			continue
		}
		if c.lag != nil {
			c.lag.Close()
		}
		if err := capture.Remove(ctx, cs.st.admin, c.target); err != nil {
			errs = append(errs, err)
		}
	}
	if !cs.outboxExisted {
		// RESTRICT: only when nothing else is in it.
		_, _ = cs.st.admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+pq.QuoteIdentifier(capture.DefaultOutboxSchema))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "eventbench: remove the captures: %v\n", err)
	}
}

// withParam returns the URL dsn with the query parameter k set to v.
func withParam(dsn, k, v string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parse DSN %s: %w", postgres.RedactDSN(dsn), err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// removalNoise drops the SDK's warning that a heartbeat was refused
// because the activity was cancelled: the capture's removal cancels
// CaptureChanges on purpose, and the bench keeps its logs only for real
// warnings.
type removalNoise struct{ slog.Handler }

func (h removalNoise) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "RecordActivityHeartbeat with error" {
		cancelled := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "Error" && a.Value.String() == "canceled" {
				cancelled = true
			}
			return !cancelled
		})
		if cancelled {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h removalNoise) WithAttrs(as []slog.Attr) slog.Handler {
	return removalNoise{h.Handler.WithAttrs(as)}
}

func (h removalNoise) WithGroup(name string) slog.Handler {
	return removalNoise{h.Handler.WithGroup(name)}
}
