// Command reconcilebench measures a reconciliation of a synced integration
// with no drift and with drift, beside a naive full comparison measured in
// the same run on the same data: the naive one reads the whole source and
// the whole destination table into memory and compares them by key.
//
//	go run ./tests/bench/cmd/reconcilebench --records 100000 --drift 0.01
//
// It starts a Temporal dev server (the pinned CLI), the sandbox CRM API on
// loopback and an in-process worker, syncs crm-contacts into a fresh
// PostgreSQL schema, and prints one line per contender and scenario. The
// figures are for comparing within one run; the machine is shared.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/reconcile"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reconcilebench:", err)
		os.Exit(1)
	}
}

// bench is one run's set-up: the destination, the worker's client and
// task queue, the integration, and how to undo it all.
type bench struct {
	ctx   context.Context
	db    *sql.DB
	c     client.Client
	tq    string
	def   integration.Definition
	sink  *pgsink.TableWriter
	runID int

	closers []func()
}

func (b *bench) onClose(f func()) { b.closers = append(b.closers, f) }

// close undoes the set-up in reverse order, as deferred calls would.
func (b *bench) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

func run() error {
	records := flag.Int("records", 100000, "contacts in the source")
	drift := flag.Float64("drift", 0.01, "share of destination rows to drift (a third each deleted, edited, added)")
	dsn := flag.String("database-url", pgtest.BaseDSN(), "PostgreSQL (a fresh schema is created and dropped)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	b := &bench{ctx: ctx, tq: "reconcilebench"}
	defer b.close()

	if err := b.createSchema(*dsn); err != nil {
		return err
	}
	sandboxURL, err := b.serveSandbox(*records)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := b.startTemporal(log); err != nil {
		return err
	}
	if err := b.startWorker(sandboxURL, log); err != nil {
		return err
	}
	return b.compare(*records, *drift)
}

// createSchema creates a fresh schema with tether's tables, dropped at
// close.
func (b *bench) createSchema(dsn string) error {
	admin, err := postgres.Open(b.ctx, dsn)
	if err != nil {
		return err
	}
	b.onClose(func() { admin.Close() })
	schemaName := fmt.Sprintf("bench_reconcile_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(b.ctx, "CREATE SCHEMA "+schemaName); err != nil {
		return err
	}
	b.onClose(func() { admin.Exec("DROP SCHEMA " + schemaName + " CASCADE") }) //nolint:errcheck
	sdsn, _ := postgres.WithSearchPath(dsn, schemaName)
	db, err := postgres.Open(b.ctx, sdsn)
	if err != nil {
		return err
	}
	b.db = db
	b.onClose(func() { db.Close() })
	return store.Migrate(b.ctx, db)
}

// serveSandbox serves the sandbox CRM API with records contacts on
// loopback, and returns its URL.
func (b *bench) serveSandbox(records int) (string, error) {
	sb, err := sandbox.New(sandbox.Options{Seed: 42, Contacts: records})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	hs := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln) //nolint:errcheck
	b.onClose(func() { hs.Close() })
	return "http://" + ln.Addr().String(), nil
}

// startTemporal starts a headless dev server (the pinned CLI) and connects
// to it.
func (b *bench) startTemporal(log *slog.Logger) error {
	work, err := os.MkdirTemp("", "tether-reconcilebench")
	if err != nil {
		return err
	}
	b.onClose(func() { os.RemoveAll(work) })
	cliPath, err := devstack.EnsureTemporalCLI(b.ctx, os.Stderr)
	if err != nil {
		return err
	}
	srv, err := devstack.StartDevServer(b.ctx, devstack.DevServerOptions{CLI: cliPath, Headless: true, LogFile: filepath.Join(work, "temporal.log")})
	if err != nil {
		return err
	}
	b.onClose(func() { srv.Stop(10 * time.Second) }) //nolint:errcheck
	c, err := app.Dial(b.ctx, config.Temporal{Address: srv.Address, Namespace: "default"}, log)
	if err != nil {
		return err
	}
	b.c = c
	b.onClose(c.Close)
	return nil
}

// startWorker runs crm-contacts, reading the sandbox at sandboxURL, on an
// in-process worker.
func (b *bench) startWorker(sandboxURL string, log *slog.Logger) error {
	crm := config.Connection{BaseURL: sandboxURL, Auth: "none"}
	def := integrations.CRMContacts(crm)
	reg, err := integration.NewRegistry(def)
	if err != nil {
		return err
	}
	sch, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		return err
	}
	acts, err := app.Build(app.BuildOptions{DB: b.db, Store: store.New(b.db), Integrations: reg, Schemas: sch, Logger: log, Temporal: b.c})
	if err != nil {
		return err
	}
	b.def = def.Normalize()
	w := worker.New(b.c, b.tq, worker.Options{})
	app.Register(w, acts)
	if err := w.Start(); err != nil {
		return err
	}
	b.onClose(w.Stop)
	if b.sink, err = pgsink.NewTableWriter(*def.Destination.Postgres); err != nil {
		return err
	}
	return nil
}

// compare syncs the integration, measures both contenders without drift
// and with drift, and checks that nothing differs after the repair.
func (b *bench) compare(records int, drift float64) error {
	fmt.Printf("reconcilebench: %d source records, drift %.2f%%, %d cores\n", records, drift*100, runtime.NumCPU())
	t0 := time.Now()
	if err := b.sync(); err != nil {
		return err
	}
	fmt.Printf("initial sync: %s\n\n", time.Since(t0).Round(time.Millisecond))
	fmt.Printf("%-10s %-24s %9s %12s %14s %11s %10s %10s\n", "drift", "contender", "time", "source read", "dest to Go", "differences", "live heap", "rows fixed")

	if err := b.scenario("0%", false); err != nil {
		return err
	}
	n, err := b.seedDrift(drift)
	if err != nil {
		return err
	}
	if err := b.scenario(fmt.Sprintf("%.2g%% (%d)", drift*100, n), true); err != nil {
		return err
	}
	after, err := b.reconcile(false)
	if err != nil {
		return err
	}
	if d := after.Missing + after.Changed + after.Extra; d != 0 {
		return fmt.Errorf("a reconciliation after the repair still found %d differences", d)
	}
	fmt.Printf("\nafter the repair: a reconciliation found 0 differences in %d chunks\n", after.Chunks)
	return nil
}

// scenario measures the naive comparison, then the reconciliation (which
// repairs when repair is set), and checks they agree.
func (b *bench) scenario(label string, repair bool) error {
	var naive naiveResult
	nd, peakN, err := measure(func() error {
		var err error
		naive, err = b.naive()
		return err
	})
	if err != nil {
		return fmt.Errorf("naive comparison: %w", err)
	}
	fmt.Printf("%-10s %-24s %9s %12d %14d %11d %10s %10s\n", label, "naive full compare", nd.Round(time.Millisecond),
		naive.sourceRead, naive.destRead, naive.differences(), mib(peakN), "-")
	var rep syncstep.ReconcileReport
	rd, peakR, err := measure(func() error {
		var err error
		rep, err = b.reconcile(!repair)
		return err
	})
	if err != nil {
		return fmt.Errorf("reconciliation: %w", err)
	}
	fixed := "dry run"
	if repair {
		fixed = fmt.Sprint(rep.Repaired + rep.ExtrasHandled)
	}
	fmt.Printf("%-10s %-24s %9s %12d %14d %11d %10s %10s\n", label, "reconciliation", rd.Round(time.Millisecond),
		rep.SourceRead, rep.ChunksDiffering+rep.RowsCompared, rep.Missing+rep.Changed+rep.Extra, mib(peakR), fixed)
	fmt.Printf("%-10s %-24s chunks %d, differing %d; destination rows digested in PostgreSQL %d, compared by key %d\n",
		"", "", rep.Chunks, rep.ChunksDiffering, rep.DestinationRows, rep.RowsCompared)
	if naive.missing != rep.Missing || naive.changed != rep.Changed || naive.extra != rep.Extra {
		return fmt.Errorf("the contenders disagree: naive %+v, reconciliation missing %d changed %d extra %d",
			naive, rep.Missing, rep.Changed, rep.Extra)
	}
	return nil
}

func (b *bench) sync() error {
	run, err := b.c.ExecuteWorkflow(b.ctx, client.StartWorkflowOptions{ID: "crm-contacts/sync/bench", TaskQueue: b.tq},
		datasync.WorkflowType, datasync.Input{Integration: b.def.Name, Trigger: "bench"})
	if err != nil {
		return err
	}
	return run.Get(b.ctx, nil)
}

func (b *bench) reconcile(dryRun bool) (syncstep.ReconcileReport, error) {
	b.runID++
	run, err := b.c.ExecuteWorkflow(b.ctx, client.StartWorkflowOptions{
		ID: fmt.Sprintf("crm-contacts/reconcile/bench-%d", b.runID), TaskQueue: b.tq,
	}, reconcile.WorkflowType, reconcile.Input{Integration: b.def.Name, DryRun: dryRun, Extras: integration.ExtrasDelete, Trigger: "bench"})
	if err != nil {
		return syncstep.ReconcileReport{}, err
	}
	var rep syncstep.ReconcileReport
	err = run.Get(b.ctx, &rep)
	return rep, err
}

// seedDrift deletes, edits and adds a third of share × rows each.
func (b *bench) seedDrift(share float64) (int, error) {
	var total int
	if err := b.db.QueryRowContext(b.ctx, `SELECT count(*) FROM crm_contacts`).Scan(&total); err != nil {
		return 0, err
	}
	each := max(1, int(float64(total)*share/3))
	r := rand.New(rand.NewPCG(7, 7))
	stmts := []string{
		`DELETE FROM crm_contacts WHERE id IN (SELECT id FROM crm_contacts ORDER BY md5(id::text || $1::text) LIMIT $2)`,
		`UPDATE crm_contacts SET score = score + 1000 WHERE id IN (SELECT id FROM crm_contacts ORDER BY md5(id::text || $1::text) LIMIT $2)`,
		`INSERT INTO crm_contacts (id, email, created_at, updated_at)
		 SELECT 10000000 + g, 'extra' || g || '@example.com', now(), now() FROM generate_series(1, $2) g WHERE $1::int >= 0`,
	}
	for _, q := range stmts {
		if _, err := b.db.ExecContext(b.ctx, q, r.IntN(1<<30), each); err != nil {
			return 0, err
		}
	}
	return 3 * each, nil
}

type naiveResult struct {
	sourceRead, destRead    int
	missing, changed, extra int
}

func (n naiveResult) differences() int { return n.missing + n.changed + n.extra }

// naive reads the whole source (validated, transformed, and cast to the
// column types by PostgreSQL, as the reconciliation compares) and the
// whole destination table into maps, and compares them by key.
func (b *bench) naive() (naiveResult, error) {
	var res naiveResult
	source_, read, err := b.readSource()
	res.sourceRead = read
	if err != nil {
		return res, err
	}
	dest, read, err := b.readDestination()
	res.destRead = read
	if err != nil {
		return res, err
	}
	for k, r := range source_ {
		d, ok := dest[k]
		switch {
		case !ok:
			res.missing++
		case d != r:
			res.changed++
		}
	}
	for k := range dest {
		if _, ok := source_[k]; !ok {
			res.extra++
		}
	}
	return res, nil
}

// readSource reads every page of the source and returns the texts of its
// valid records' rows, as PostgreSQL casts them, by key, and how many
// records it read.
func (b *bench) readSource() (rows map[string]string, read int, err error) {
	src, err := httpsource.New(b.def.Name, *b.def.Source.HTTP)
	if err != nil {
		return nil, read, err
	}
	toRows, err := b.rowsFunc()
	if err != nil {
		return nil, read, err
	}
	rows = map[string]string{}
	req := connector.Request{Integration: b.def.Name, Limit: b.def.BatchSize, Since: cursor.Checkpoint{Cursor: b.def.InitialCursor}}
	for {
		page, err := src.Fetch(b.ctx, req)
		if err != nil {
			return nil, read, err
		}
		read += len(page.Records)
		texts, _, err := b.sink.RowTexts(b.ctx, b.db, toRows(page.Records))
		if err != nil {
			return nil, read, err
		}
		for _, t := range texts {
			rows[t.Key] = t.Row
		}
		if page.Done {
			break
		}
		req.Position = page.Next
	}
	return rows, read, nil
}

// rowsFunc returns what turns a page's records into rows: each one
// decoded, validated against the integration's schema and transformed;
// a record that fails any of these is left out.
func (b *bench) rowsFunc() (func([]json.RawMessage) []pgsink.Row, error) {
	reg, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		return nil, err
	}
	v, err := reg.Get(b.def.Schema)
	if err != nil {
		return nil, err
	}
	mapFn, err := b.def.Mapping.Compile()
	if err != nil {
		return nil, err
	}
	fn := mapping.Chain(mapFn, b.def.Transform)
	return func(records []json.RawMessage) []pgsink.Row {
		var rows []pgsink.Row
		for _, raw := range records {
			rec, err := schema.Decode(raw)
			m, ok := rec.(map[string]any)
			if err != nil || !ok || len(v.Validate(rec)) > 0 {
				continue
			}
			out, err := fn(m)
			if err != nil {
				continue
			}
			rows = append(rows, pgsink.Row(out))
		}
		return rows
	}, nil
}

// readDestination reads the whole destination table's row texts by key,
// and returns how many rows it read.
func (b *bench) readDestination() (rows map[string]string, read int, err error) {
	e := b.sink.Exprs()
	rs, err := b.db.QueryContext(b.ctx, `SELECT `+e.Key+`, `+e.Row+` FROM `+e.Target+` t`)
	if err != nil {
		return nil, read, err
	}
	defer rs.Close()
	rows = map[string]string{}
	for rs.Next() {
		var k, r string
		if err := rs.Scan(&k, &r); err != nil {
			return nil, read, err
		}
		rows[k] = r
		read++
	}
	if err := rs.Err(); err != nil {
		return nil, read, err
	}
	return rows, read, nil
}

// measure times fn and samples the process's peak live heap (as of the
// last garbage collection) while it runs, above the live heap before it.
func measure(fn func() error) (time.Duration, uint64, error) {
	runtime.GC()
	base := liveHeap()
	var peak uint64
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if h := liveHeap(); h > base {
					mu.Lock()
					peak = max(peak, h-base)
					mu.Unlock()
				}
			}
		}
	}()
	t0 := time.Now()
	err := fn()
	d := time.Since(t0)
	close(done)
	mu.Lock()
	defer mu.Unlock()
	return d, peak, err
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
