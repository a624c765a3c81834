package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

// table is the destination table of every scenario's integration.
const table = "crm_contacts"

// worldOptions shape a scenario's stack.
type worldOptions struct {
	workers int
	// batchSize is the integration's batch (and page) size (default
	// Config.BatchSize).
	batchSize int
	// timeout is the source's per-request timeout (default 5s).
	timeout time.Duration
	// rateLimit (requests per second per worker, with burst) paces the
	// source; 0 leaves it unlimited.
	rateLimit float64
	burst     int
	// sourceProxy puts an HTTP handler in front of the sandbox's (the
	// source fault proxy); the workers call it instead.
	sourceProxy func(sandbox http.Handler) http.Handler
	// pgProxy puts a TCP proxy between the workers and PostgreSQL.
	pgProxy bool
	// temporal and client override the Env's dev server.
	temporal string
	client   client.Client
	// extraEnv is added to every worker's environment.
	extraEnv []string
	// configFile writes worker slot i's config file (TETHER_CONFIG) and
	// returns its path; nil: none.
	configFile func(worker int) (string, error)
}

// world is one scenario's stack: a schema, the sandbox (maybe behind a
// proxy), an integration file, worker processes on a task queue of their
// own, and what to stop at the end.
type world struct {
	e       *Env
	c       Config
	o       worldOptions
	name    string
	id      string
	dir     string
	schema  string
	integ   string
	tq      string
	appName string
	// workerDSN is the workers' PostgreSQL (through pgp when there is
	// one), with the schema as search_path and appName.
	workerDSN string
	pgp       *pgProxy
	sb        *sandbox.Server
	srcURL    string
	temporal  string
	client    client.Client
	workers   []*devstack.Process
	started   int
	rng       *rand.Rand
	closers   []func()
}

func (w *world) onClose(f func()) { w.closers = append(w.closers, f) }

func (w *world) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// newWorld sets a scenario's stack up, without workers.
func newWorld(ctx context.Context, e *Env, c Config, name string, o worldOptions) (*world, error) {
	if o.batchSize == 0 {
		o.batchSize = c.BatchSize
	}
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	w := &world{e: e, c: c, o: o, name: name, id: suffix(), temporal: e.Temporal, client: e.Client,
		rng: rand.New(rand.NewPCG(c.Seed, uint64(len(name))))}
	if o.temporal != "" {
		w.temporal, w.client = o.temporal, o.client
	}
	w.integ = "chaos-" + name + "-" + w.id
	w.tq = "chaos-" + name + "-" + w.id
	w.appName = "tether-chaos-" + w.id
	w.schema = "chaos_" + strings.ReplaceAll(name, "-", "_") + "_" + w.id
	w.dir = filepath.Join(e.Work, name+"-"+w.id)
	if err := os.MkdirAll(filepath.Join(w.dir, "integrations"), 0o755); err != nil {
		return nil, err
	}
	if err := w.setUp(ctx); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *world) setUp(ctx context.Context) error {
	if _, err := w.e.Admin.ExecContext(ctx, "CREATE SCHEMA "+w.schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	w.onClose(func() {
		// Anything of ours still connected (a worker that would not stop).
		_, _ = w.e.Admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, w.appName)
		if _, err := w.e.Admin.Exec("DROP SCHEMA " + w.schema + " CASCADE"); err != nil {
			w.e.logf("   drop schema %s: %v", w.schema, err)
		}
	})
	var err error
	if w.sb, err = sandbox.New(sandbox.Options{Seed: w.c.Seed, Contacts: w.c.Records, Faults: sandbox.Faults{InvalidRate: w.c.InvalidRate, Latency: w.c.SourceLatency}}); err != nil {
		return err
	}
	var h http.Handler = w.sb.Handler()
	if w.o.sourceProxy != nil {
		h = w.o.sourceProxy(h)
	}
	if w.srcURL, err = w.serve(h); err != nil {
		return err
	}
	dsn, err := postgres.WithSearchPath(w.e.DSN, w.schema)
	if err != nil {
		return err
	}
	if w.o.pgProxy {
		u, err := url.Parse(dsn)
		if err != nil {
			return err
		}
		target := u.Host
		switch {
		case u.Hostname() == "":
			return fmt.Errorf("the PostgreSQL proxy needs a DSN with a TCP host, not %s", postgres.RedactDSN(dsn))
		case u.Port() == "":
			target = net.JoinHostPort(u.Hostname(), "5432")
		}
		if w.pgp, err = startPGProxy(target); err != nil {
			return err
		}
		w.onClose(w.pgp.close)
		u.Host = w.pgp.addr()
		q := u.Query()
		// The proxy reads the protocol in the clear.
		q.Set("sslmode", "disable")
		u.RawQuery = q.Encode()
		dsn = u.String()
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("application_name", w.appName)
	u.RawQuery = q.Encode()
	w.workerDSN = u.String()
	return os.WriteFile(filepath.Join(w.dir, "integrations", w.integ+".yaml"), []byte(w.integrationFile()), 0o644)
}

// serve serves h on a loopback port until the world closes.
func (w *world) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // ends with Close
	w.onClose(func() { hs.Close() })
	return "http://" + ln.Addr().String(), nil
}

// integrationFile is the crm-contacts mapping (workers/integrations/yaml/
// crm-contacts-yaml.yaml) under the world's name, its source the sandbox
// (or the proxy in front of it), into crm_contacts.
func (w *world) integrationFile() string {
	return ContactsIntegrationFile(ContactsFile{Name: w.integ, Description: "chaos scenario " + w.name, SourceURL: w.srcURL,
		Timeout: w.o.timeout.String(), RateLimit: w.o.rateLimit, Burst: w.o.burst, Table: "crm_contacts", BatchSize: w.o.batchSize})
}

// ContactsFile is what ContactsIntegrationFile varies.
type ContactsFile struct {
	Name, Description string
	SourceURL         string // the sandbox's (or a proxy's) base URL
	Timeout           string // one request's bound ("30s")
	RateLimit         float64
	Burst             int
	Table             string
	BatchSize         int
}

// ContactsIntegrationFile is an integration file with crm-contacts' source,
// schema and mapping (workers/integrations/yaml/crm-contacts-yaml.yaml),
// under another name, into another table.
func ContactsIntegrationFile(f ContactsFile) string {
	rate := ""
	if f.RateLimit > 0 {
		rate = fmt.Sprintf("    rate_limit: {requests_per_second: %g, burst: %d}\n", f.RateLimit, max(1, f.Burst))
	}
	return fmt.Sprintf(`name: %s
description: %s
version: 1
source:
  http:
    base_url: %s
    path: /v1/contacts
    records_path: data
    pagination: {style: page, page_param: page, size_param: per_page}
    incremental: {param: updated_since}
    auth: {kind: none}
    timeout: %s
%sschema: contacts.schema.json
key_field: id
cursor_field: updated_at
mapping:
  - {to: id, from: id, cast: int, required: true}
  - {to: uuid, from: uuid, cast: string}
  - {to: first_name, from: first_name, normalize: [trim, collapse_spaces]}
  - {to: last_name, from: last_name, normalize: [trim, collapse_spaces]}
  - {to: full_name, join: [first_name, last_name], normalize: [collapse_spaces]}
  - {to: email, from: email, normalize: [email], required: true}
  - {to: phone, from: phone, normalize: [trim]}
  - {to: company_id, from: company_id, cast: int}
  - {to: status, from: status, normalize: [lower]}
  - {to: score, from: score, cast: int, default: 0}
  - {to: opt_in, from: opt_in, cast: bool, default: false}
  - {to: opt_in_at, from: opt_in_at, cast: timestamp}
  - {to: website, from: website}
  - {to: city, from: address.city, normalize: [trim]}
  - {to: country, from: address.country, normalize: [upper]}
  - {to: tags, from: tags, cast: json}
  - {to: created_at, from: created_at, cast: timestamp, required: true}
  - {to: updated_at, from: updated_at, cast: timestamp, required: true}
destination:
  postgres:
    name: %s
    columns:
      - {name: id, type: bigint, not_null: true}
      - {name: uuid, type: uuid}
      - {name: first_name, type: text}
      - {name: last_name, type: text}
      - {name: full_name, type: text}
      - {name: email, type: text, not_null: true}
      - {name: phone, type: text}
      - {name: company_id, type: bigint}
      - {name: status, type: text}
      - {name: score, type: integer}
      - {name: opt_in, type: boolean}
      - {name: opt_in_at, type: timestamptz}
      - {name: website, type: text}
      - {name: city, type: text}
      - {name: country, type: text}
      - {name: tags, type: "text[]"}
      - {name: created_at, type: timestamptz}
      - {name: updated_at, type: timestamptz}
    key: [id]
    version_column: updated_at
atomic: false
invalid_threshold: 0.05
batch_size: %d
pages_in_flight: 4
`, f.Name, f.Description, f.SourceURL, f.Timeout, rate, f.Table, f.BatchSize)
}

// workerEnv is a worker's environment.
func (w *world) workerEnv(i int) ([]string, error) {
	env := []string{
		"TEMPORAL_ADDRESS=" + w.temporal, "DATABASE_URL=" + w.workerDSN, "TETHER_TEMPORAL_TASK_QUEUE=" + w.tq,
		"TETHER_INTEGRATIONS_DIR=" + filepath.Join(w.dir, "integrations"), "TETHER_WORKER_INTEGRATIONS=" + w.integ,
		"TETHER_LOG_LEVEL=warn", "TETHER_WORKER_GRACEFUL_STOP=1s", "TETHER_METRICS_LISTEN=",
		// PostgreSQL is shared: at most 3 workers x 8.
		"TETHER_DATABASE_MAX_OPEN_CONNS=8",
	}
	if w.o.configFile != nil {
		f, err := w.o.configFile(i)
		if err != nil {
			return nil, err
		}
		env = append(env, "TETHER_CONFIG="+f)
	}
	return append(env, w.o.extraEnv...), nil
}

// startWorker starts worker slot i (a new process; the slot's old one
// must have exited).
func (w *world) startWorker(i int) error {
	env, err := w.workerEnv(i)
	if err != nil {
		return err
	}
	w.started++
	p, err := devstack.StartProcess(fmt.Sprintf("worker-%d", w.started), filepath.Join(w.dir, fmt.Sprintf("worker-%d.log", w.started)), env, w.e.WorkerBin)
	if err != nil {
		return err
	}
	for len(w.workers) <= i {
		w.workers = append(w.workers, nil)
	}
	w.workers[i] = p
	return nil
}

// startWorkers starts n workers and waits until one polls.
func (w *world) startWorkers(ctx context.Context, n int) error {
	w.onClose(func() {
		for _, p := range w.workers {
			if p != nil {
				_ = p.Stop(5 * time.Second)
			}
		}
	})
	for i := range n {
		if err := w.startWorker(i); err != nil {
			return err
		}
	}
	return w.waitPollers(ctx)
}

// killAndRestart SIGKILLs worker i (its whole process group) and starts a
// new one in its place.
func (w *world) killAndRestart(i int) error {
	w.workers[i].Kill()
	return w.startWorker(i)
}

// waitPollers waits until a worker polls the task queue.
func (w *world) waitPollers(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := w.client.DescribeTaskQueue(ctx, w.tq, 1)
		if err == nil && len(d.GetPollers()) > 0 {
			return nil
		}
		for _, p := range w.workers {
			if exited, perr := p.Exited(); exited {
				return fmt.Errorf("%s exited before polling (%v); logs in %s", p.Name, perr, w.dir)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("no worker polled within 2 minutes; logs in %s", w.dir)
}

// applied counts the destination's rows (0 before the table exists).
func (w *world) applied(ctx context.Context) int {
	var n int
	if err := w.e.Admin.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s.%s", w.schema, table)).Scan(&n); err != nil {
		return 0
	}
	return n
}

// expected is the number of rows the destination must end with.
func (w *world) expected() int { return w.c.Records - len(w.sb.InvalidContactIDs()) }

// syncOutcome is what a sync returned.
type syncOutcome struct {
	dur time.Duration
	res datasync.Result
}

// runSync starts a sync of the world's integration and waits for its end,
// calling hook about every 100 ms with the fraction of the expected rows
// applied so far (a hook may block: to stop a server, say). A sync still
// running at ctx's end, or failed, is an error.
func (w *world) runSync(ctx context.Context, hook func(frac float64) error) (syncOutcome, error) {
	var out syncOutcome
	t0 := time.Now()
	h, err := cli.StartSync(ctx, w.client, w.tq, datasync.Input{Integration: w.integ, Trigger: "chaos"})
	if err != nil {
		return out, err
	}
	done := make(chan error, 1)
	go func() { done <- w.waitWorkflow(ctx, h.GetID(), &out.res) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	want := max(1, w.expected())
	for {
		select {
		case err := <-done:
			out.dur = time.Since(t0)
			if err != nil {
				return out, fmt.Errorf("sync %s: %w (logs in %s)", h.GetID(), err, w.dir)
			}
			return out, nil
		case <-tick.C:
			if hook == nil {
				continue
			}
			if err := hook(float64(w.applied(ctx)) / float64(want)); err != nil {
				return out, err
			}
		}
	}
}

// waitWorkflow waits for a workflow's result, riding out a dev server that
// is away: only the workflow's own end (or ctx's) stops it.
func (w *world) waitWorkflow(ctx context.Context, id string, res any) error {
	for {
		err := w.client.GetWorkflow(ctx, id, "").Get(ctx, res)
		var wee *temporal.WorkflowExecutionError
		switch {
		case err == nil, errors.As(err, &wee):
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("not finished: %w", ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// plan spreads n faults over a sync: the k-th is due once the fraction
// of the rows applied passes a point drawn at random in the k-th of n
// equal parts of [0.05, 0.85) (so that the last lands before the end),
// and at least gap after the previous one (see due).
type plan struct {
	at   []float64
	gap  time.Duration
	last time.Time
	done int
}

func newPlan(n int, gap time.Duration, rng *rand.Rand) *plan {
	p := &plan{gap: gap}
	for k := range n {
		p.at = append(p.at, 0.05+0.8*(float64(k)+rng.Float64())/float64(n))
	}
	return p
}

// due says the next fault is due at frac. Past 85% the gap no longer
// holds: faults still to land land one per call, before the sync ends.
func (p *plan) due(frac float64) bool {
	return p.done < len(p.at) && frac >= p.at[p.done] && (time.Since(p.last) >= p.gap || frac >= 0.85)
}

// landed records a fault.
func (p *plan) landed() {
	p.done++
	p.last = time.Now()
}

// missed is a note when faults were planned and not all landed.
func (p *plan) missed(what string) []string {
	if p.done < len(p.at) {
		return []string{fmt.Sprintf("only %d of %d %s landed before the sync ended", p.done, len(p.at), what)}
	}
	return nil
}

// syncNotes describes the sync's result.
func syncNotes(o syncOutcome) string {
	c := o.res.Counts
	return fmt.Sprintf("run %s, %d batches, %d executions, counts %+v", o.res.Status, o.res.Batches, o.res.Executions, c)
}
