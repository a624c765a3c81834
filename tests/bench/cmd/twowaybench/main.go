// Command twowaybench measures a two-way integration (make bench-twoway):
// the time both sides take to converge after N edits split between them,
// and the writes per edit (1.0: no echo, nothing written twice), beside
// the same number of edits made on one side only, carried one way by the
// same integration, in the same run.
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
	"time"

	tlog "go.temporal.io/sdk/log"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
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
	one, err := integration.NewRegistry()
	if err != nil {
		return err
	}
	schs, err := schema.NewRegistry(schemas.FS())
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
	if err := b.patchBilling(ctx, half+1, o.edits); err != nil {
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
	fmt.Printf("\nratio two-way/one-way time: %.2f; both sides identical after each phase\n", float64(conv.dur)/float64(oneWay.dur))
	return nil
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
func (b *bench) patchBilling(ctx context.Context, from, to int) error {
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
				body, _ := json.Marshal(map[string]any{"plan": "enterprise"})
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
