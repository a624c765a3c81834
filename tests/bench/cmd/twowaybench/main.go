// Command twowaybench measures a two-way integration (make bench-twoway):
// the time both sides take to converge after N edits split between them,
// and the writes per edit (1.0: no echo, nothing written twice), beside,
// in the same run: N edits made on one side only, carried one way by the
// same integration; and N edits made on billing, carried by the two-way
// integration to the table and by the one-way pipeline (SyncWorkflow,
// billing's change feed into a copy table), the baseline.
//
// It starts its own Temporal dev server (headless), the sandbox's billing
// API on loopback, a fresh PostgreSQL schema with the accounts table, and
// an in-process worker; everything stops at the end.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing/fstest"
	"time"

	tlog "go.temporal.io/sdk/log"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workflows/datasync"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "twowaybench:", err)
		os.Exit(1)
	}
}

type options struct {
	edits int
	dsn   string
}

func run() error {
	var o options
	flag.IntVar(&o.edits, "edits", 10000, "edits in the two-way phase, half on each side (and as many records)")
	flag.StringVar(&o.dsn, "database-url", pgtest.BaseDSN(), "PostgreSQL (a fresh schema is created and dropped)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run (worker, sandbox and bench) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	// PostgreSQL: a schema of its own with the accounts table.
	admin, err := postgres.Open(ctx, o.dsn)
	if err != nil {
		return err
	}
	defer admin.Close()
	sch := fmt.Sprintf("bench_twoway_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+sch); err != nil {
		return err
	}
	defer admin.Exec("DROP SCHEMA " + sch + " CASCADE") //nolint:errcheck
	dsn, _ := postgres.WithSearchPath(o.dsn, sch)
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE accounts (id text PRIMARY KEY, email text NOT NULL, name text, plan text,
		updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz)`); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO accounts (id, email, name, plan) SELECT 'acc-' || i, 'u' || i || '@example.com', 'User ' || i, 'free'
		FROM generate_series(1, $1) AS i`, o.edits); err != nil {
		return err
	}

	// The billing API.
	sb, err := sandbox.New(sandbox.Options{Contacts: 10})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln) //nolint:errcheck
	defer hs.Close()
	url := "http://" + ln.Addr().String()

	// Temporal and the worker.
	cli, err := devstack.EnsureTemporalCLI(ctx, os.Stderr)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "twowaybench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	srv, err := devstack.StartDevServer(ctx, devstack.DevServerOptions{CLI: cli, Headless: true, LogFile: filepath.Join(work, "temporal.log")})
	if err != nil {
		return err
	}
	defer srv.Stop(10 * time.Second) //nolint:errcheck
	c, err := client.Dial(client.Options{HostPort: srv.Address, Logger: tlog.NewStructuredLogger(log)})
	if err != nil {
		return err
	}
	defer c.Close()
	name := "accounts-billing"
	reg, err := twoway.NewRegistry(twoway.Definition{
		Name: name,
		A: twoway.SideSpec{Name: "app", Postgres: &twoway.PostgresSide{Table: "accounts", Key: "id", UpdatedAt: "updated_at", DeletedAt: "deleted_at",
			Fields: map[string]string{"email": "email", "name": "name", "plan": "plan"}}},
		B: twoway.SideSpec{Name: "billing", HTTP: &twoway.HTTPSide{BaseURL: url, Path: "/v1/customers",
			Fields: map[string]string{"email": "email", "name": "name", "plan": "plan"}}},
		Match:  []string{"email"},
		Policy: twoway.Policy{Kind: twoway.LastWriterWins},
		Every:  time.Hour, // cycles are started by the bench
	})
	if err != nil {
		return err
	}
	one, err := integration.NewRegistry(oneWay(url))
	if err != nil {
		return err
	}
	schs, err := schema.NewRegistry(fstest.MapFS{"customers.schema.json": {Data: []byte(customersSchema)}})
	if err != nil {
		return err
	}
	acts, err := app.Build(app.BuildOptions{DB: db, Store: store.New(db), Integrations: one, Schemas: schs, Logger: log, Temporal: c, TwoWay: reg})
	if err != nil {
		return err
	}
	tq := "twowaybench"
	w := worker.New(c, tq, worker.Options{})
	app.Register(w, acts)
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	if err := app.StartTwoWay(ctx, c, tq, reg, log); err != nil {
		return err
	}
	wf := twowaywf.WorkflowID(name)
	b := &bench{c: c, wf: wf, db: db, url: url, sb: sb}

	fmt.Printf("tether two-way bench: %d records, PostgreSQL accounts <-> sandbox billing customers, %d cores\n\n", o.edits, numCPU())
	start := time.Now()
	load, err := b.waitCycle(ctx, 1)
	if err != nil {
		return err
	}
	fmt.Printf("%-44s %9s  %s\n", "phase", "time", "writes")
	fmt.Printf("%-44s %9s  %d created on billing\n", "first load", time.Since(start).Round(time.Millisecond), load.Counts.Created)

	// Two-way: half the edits on each side.
	half := o.edits / 2
	if _, err := db.ExecContext(ctx, `UPDATE accounts SET name = 'App ' || substr(id, 5), updated_at = clock_timestamp()
		WHERE substr(id, 5)::int <= $1`, half); err != nil {
		return err
	}
	if err := b.patchBilling(ctx, half+1, o.edits, map[string]any{"plan": "enterprise"}); err != nil {
		return err
	}
	conv, err := b.converge(ctx)
	if err != nil {
		return err
	}
	if err := b.same(); err != nil {
		return err
	}
	fmt.Printf("%-44s %9s  %d (%.3f per edit)\n", fmt.Sprintf("two-way: %d edits, half on each side", o.edits), conv.dur.Round(time.Millisecond),
		conv.writes, float64(conv.writes)/float64(o.edits))

	// One way: as many edits, on the app side only.
	if _, err := db.ExecContext(ctx, `UPDATE accounts SET plan = 'pro', updated_at = clock_timestamp()`); err != nil {
		return err
	}
	oneWay, err := b.converge(ctx)
	if err != nil {
		return err
	}
	if err := b.same(); err != nil {
		return err
	}
	fmt.Printf("%-44s %9s  %d (%.3f per edit)\n", fmt.Sprintf("one way: %d edits on the app side", o.edits), oneWay.dur.Round(time.Millisecond),
		oneWay.writes, float64(oneWay.writes)/float64(o.edits))

	// The baseline: the one-way pipeline (SyncWorkflow: fetch, validate,
	// transform, apply) carrying the same edits, made on billing, into a
	// copy table; it first loads the customers as they are.
	if _, err := b.runOneWay(ctx, tq); err != nil {
		return err
	}
	if err := b.patchBilling(ctx, 1, o.edits, map[string]any{"name": "Billing edit"}); err != nil {
		return err
	}
	twoWayB, err := b.converge(ctx)
	if err != nil {
		return err
	}
	if err := b.same(); err != nil {
		return err
	}
	fmt.Printf("%-44s %9s  %d (%.3f per edit)\n", fmt.Sprintf("two-way: %d edits on the billing side", o.edits), twoWayB.dur.Round(time.Millisecond),
		twoWayB.writes, float64(twoWayB.writes)/float64(o.edits))
	pipe, err := b.runOneWay(ctx, tq)
	if err != nil {
		return err
	}
	if err := b.copied(); err != nil {
		return err
	}
	applied := pipe.res.Counts.Applied()
	fmt.Printf("%-44s %9s  %d (%.3f per edit; %d pages read)\n", "one-way pipeline: the same edits into a table", pipe.dur.Round(time.Millisecond),
		applied, float64(applied)/float64(o.edits), pipe.res.Counts.Pages)

	fmt.Printf("\nratio, time:\n")
	fmt.Printf("  two-way billing edits / one-way pipeline, the same edits:   %.2f\n", float64(twoWayB.dur)/float64(pipe.dur))
	fmt.Printf("  two-way split edits / one-way pipeline:                     %.2f\n", float64(conv.dur)/float64(pipe.dur))
	fmt.Printf("  two-way split edits / the same integration one way (app):   %.2f\n", float64(conv.dur)/float64(oneWay.dur))
	fmt.Println("both sides identical after each phase; the copy table identical to billing after the pipeline")
	return nil
}

// oneWay is the one-way integration of the baseline: billing's customers,
// read by their change feed (cursor pages of 100, incremental by
// updated_at), into the table customers_copy.
func oneWay(url string) integration.Definition {
	return integration.Definition{
		Name:        "billing-customers-copy",
		Description: "billing customers → PostgreSQL customers_copy (the two-way bench's one-way baseline)",
		Version:     1,
		Source: integration.Source{HTTP: &httpsource.Config{
			BaseURL:     url,
			Path:        "/v1/customers",
			RecordsPath: "data",
			Pagination:  httpsource.Pagination{Style: httpsource.StyleCursor},
			// The change feed from the start; later runs ask from their checkpoint.
			Incremental: httpsource.Incremental{Param: "updated_since", Start: "1970-01-01T00:00:00Z"},
		}},
		Schema:      "customers.schema.json",
		KeyField:    "id",
		CursorField: "updated_at",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Required: true},
			{To: "email", From: "email", Required: true},
			{To: "name", From: "name"},
			{To: "plan", From: "plan"},
			{To: "version", From: "version", Cast: "int", Required: true},
			{To: "updated_at", From: "updated_at", Cast: "timestamp", Required: true},
		}},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name: "customers_copy",
			Columns: []pgsink.Column{
				{Name: "id", Type: "text", NotNull: true},
				{Name: "email", Type: "text", NotNull: true},
				{Name: "name", Type: "text"},
				{Name: "plan", Type: "text"},
				{Name: "version", Type: "bigint"},
				{Name: "updated_at", Type: "timestamptz"},
			},
			Key:           []string{"id"},
			VersionColumn: "version",
		}},
		BatchSize: sandbox.MaxCustomerListLimit,
	}
}

// customersSchema is the billing customer's JSON Schema (the records the
// one-way pipeline validates).
const customersSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "description": "A billing customer, as the sandbox's billing API serves it",
  "type": "object",
  "required": ["id", "email", "version", "updated_at"],
  "properties": {
    "id": {"type": "string", "minLength": 1},
    "email": {"type": "string", "minLength": 3},
    "name": {"type": "string"},
    "plan": {"type": "string"},
    "version": {"type": "integer", "minimum": 1},
    "updated_at": {"type": "string", "format": "date-time"}
  }
}`

type pipelineRun struct {
	res datasync.Result
	dur time.Duration
}

// runOneWay runs the one-way integration once, to the end.
func (b *bench) runOneWay(ctx context.Context, tq string) (pipelineRun, error) {
	var r pipelineRun
	t0 := time.Now()
	h, err := cli.StartSync(ctx, b.c, tq, datasync.Input{Integration: "billing-customers-copy", Trigger: "bench"})
	if err != nil {
		return r, err
	}
	if err := b.c.GetWorkflow(ctx, h.GetID(), "").Get(ctx, &r.res); err != nil {
		return r, fmt.Errorf("one-way run: %w", err)
	}
	r.dur = time.Since(t0)
	if r.res.Counts.Invalid != 0 {
		return r, fmt.Errorf("one-way run: %d records quarantined", r.res.Counts.Invalid)
	}
	return r, nil
}

// copied checks that the copy table holds billing's customers exactly.
func (b *bench) copied() error {
	rows, err := b.db.Query(`SELECT id, email, coalesce(name, ''), coalesce(plan, ''), version FROM customers_copy`)
	if err != nil {
		return err
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var id, e, n, p string
		var v int
		if err := rows.Scan(&id, &e, &n, &p, &v); err != nil {
			return err
		}
		got[id] = fmt.Sprintf("%s/%s/%s/v%d", e, n, p, v)
	}
	billing := b.sb.Customers()
	if len(billing) != len(got) {
		return fmt.Errorf("the copy differs: %d rows, %d customers", len(got), len(billing))
	}
	for _, c := range billing {
		if want := fmt.Sprintf("%s/%s/%s/v%d", c.Email, c.Name, c.Plan, c.Version); got[c.ID] != want {
			return fmt.Errorf("the copy differs on %s: %q, billing %q", c.ID, got[c.ID], want)
		}
	}
	return rows.Err()
}

type bench struct {
	c   client.Client
	wf  string
	db  *sql.DB
	url string
	sb  *sandbox.Server
}

func numCPU() int { return runtime.NumCPU() }

func (b *bench) progress(ctx context.Context) (twowaywf.Progress, error) {
	var p twowaywf.Progress
	v, err := b.c.QueryWorkflow(ctx, b.wf, "", twowaywf.QueryProgress)
	if err != nil {
		return p, err
	}
	return p, v.Get(&p)
}

// waitCycle waits until n cycles ran.
func (b *bench) waitCycle(ctx context.Context, n int) (twowaywf.Progress, error) {
	for {
		p, err := b.progress(ctx)
		if err == nil && p.Cycles >= n {
			if p.LastError != "" {
				return p, fmt.Errorf("cycle %d: %s", n, p.LastError)
			}
			return p, nil
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// patchBilling edits customers u<from>..u<to> through the API, 8 at a
// time, as people in the billing system would.
func (b *bench) patchBilling(ctx context.Context, from, to int, set map[string]any) error {
	ids := map[string]string{}
	for _, c := range b.sb.Customers() {
		ids[c.Email] = c.ID
	}
	jobs := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				body, _ := json.Marshal(set)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, b.url+"/v1/customers/"+ids[fmt.Sprintf("u%d@example.com", i)], bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("PATCH customer %d: %d", i, resp.StatusCode)
					return
				}
			}
		}()
	}
	for i := from; i <= to; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	return <-errs
}

type converged struct {
	dur    time.Duration
	writes int
}

// converge starts cycles until one writes nothing: the time is from the
// first start to the end of the last cycle that wrote.
func (b *bench) converge(ctx context.Context) (converged, error) {
	before, err := b.progress(ctx)
	if err != nil {
		return converged{}, err
	}
	start := time.Now()
	var out converged
	last := before
	for i := 0; i < 20; i++ {
		if err := b.c.SignalWorkflow(ctx, b.wf, "", twowaywf.SignalSyncNow, nil); err != nil {
			return out, err
		}
		p, err := b.waitCycle(ctx, last.Cycles+1)
		if err != nil {
			return out, err
		}
		wrote := p.Counts.WritesA + p.Counts.WritesB - last.Counts.WritesA - last.Counts.WritesB
		deferred := p.Counts.Deferred - last.Counts.Deferred
		if wrote == 0 && deferred == 0 {
			return out, nil
		}
		out.dur = time.Since(start)
		out.writes = p.Counts.WritesA + p.Counts.WritesB - before.Counts.WritesA - before.Counts.WritesB
		last = p
	}
	return out, fmt.Errorf("not quiet after 20 cycles")
}

// same checks that both sides hold the same records.
func (b *bench) same() error {
	rows, err := b.db.Query(`SELECT email, coalesce(name, ''), coalesce(plan, '') FROM accounts WHERE deleted_at IS NULL`)
	if err != nil {
		return err
	}
	defer rows.Close()
	app := map[string]string{}
	for rows.Next() {
		var e, n, p string
		if err := rows.Scan(&e, &n, &p); err != nil {
			return err
		}
		app[e] = n + "/" + p
	}
	billing := b.sb.Customers()
	if len(billing) != len(app) {
		return fmt.Errorf("the sides differ: %d accounts, %d customers", len(app), len(billing))
	}
	for _, c := range billing {
		if app[c.Email] != c.Name+"/"+c.Plan {
			return fmt.Errorf("the sides differ on %s: app %q, billing %q", c.Email, app[c.Email], c.Name+"/"+c.Plan)
		}
	}
	return nil
}
