// Command scalebench measures scale-out: 1, 2, 3, ... worker processes of
// tether's worker binary on one task queue, running several integrations
// at once, and where the CPU goes while they do:
//
//	go run ./tests/bench/cmd/scalebench [--records 50000] [--integrations 3] [--workers 1,2,3]
//
// It starts one Temporal dev server (headless) and one sandbox CRM API on
// loopback serving --records contacts, and builds the worker binary. Then,
// for each worker count, it creates a fresh PostgreSQL schema and a task
// queue, writes --integrations copies of the crm-contacts mapping as
// integration files (each its own name and its own destination table, all
// reading the same sandbox), starts that many worker processes, starts
// every integration's sync at once, waits for all of them and checks that
// every destination table has all the rows. During that phase it reads the
// CPU seconds (utime+stime in /proc) of the worker processes, the dev
// server, PostgreSQL (every "postgres:" process plus what the postmaster
// reaped from backends that exited) and itself (the sandbox API), and the
// machine's idle share (/proc/stat). It prints a table per worker count
// and the per-record CPU cost of each component, which says what saturates
// and what a cluster would reach. Schemas are dropped and processes
// stopped when it ends, also on error or ^C.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/chaos"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/datasync"
)

// clkTck is the kernel's USER_HZ, the unit of /proc's CPU times (100 on
// every Linux tether runs on).
const clkTck = 100

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
}

type options struct {
	records, integrations, batch int
	workers                      []int
	dsn                          string
	timeout                      time.Duration
	keep                         bool
}

func parseFlags() (options, error) {
	var o options
	var workers string
	flag.IntVar(&o.records, "records", 50000, "contacts the sandbox serves: each integration syncs all of them")
	flag.IntVar(&o.integrations, "integrations", 3, "integrations synced at once (copies of crm-contacts, each into its own table)")
	flag.StringVar(&workers, "workers", "1,2,3", "worker process counts to measure, comma-separated, one phase each")
	flag.IntVar(&o.batch, "batch", 1000, "the integrations' batch (and page) size")
	flag.StringVar(&o.dsn, "database-url", pgtest.BaseDSN(), "PostgreSQL (a fresh schema per phase is created and dropped)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "the whole command's limit")
	flag.BoolVar(&o.keep, "keep", false, "keep the logs (schemas are dropped anyway)")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	for _, s := range strings.Split(workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("--workers: %q is not a positive count", s)
		}
		o.workers = append(o.workers, n)
	}
	if o.records < 1 || o.integrations < 1 || o.batch < 1 {
		return o, errors.New("--records, --integrations and --batch must be positive")
	}
	return o, nil
}

// env is what every phase shares.
type env struct {
	o         options
	admin     *sql.DB
	dev       *devstack.DevServer
	client    client.Client
	workerBin string
	srcURL    string
	work      string
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	e := &env{o: o}
	if e.work, err = os.MkdirTemp("", "tether-scale"); err != nil {
		return err
	}
	failed := true
	closers = append(closers, func() {
		if failed || o.keep {
			fmt.Fprintf(os.Stderr, "logs: %s\n", e.work)
			return
		}
		os.RemoveAll(e.work)
	})
	if e.admin, err = postgres.Open(ctx, o.dsn); err != nil {
		return err
	}
	closers = append(closers, func() { e.admin.Close() })
	cliBin, err := devstack.EnsureTemporalCLI(ctx, os.Stderr)
	if err != nil {
		return err
	}
	if e.dev, err = devstack.StartDevServer(ctx, devstack.DevServerOptions{CLI: cliBin, Headless: true, LogFile: filepath.Join(e.work, "temporal.log")}); err != nil {
		return err
	}
	closers = append(closers, func() { _ = e.dev.Stop(10 * time.Second) })
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	if e.workerBin, err = devstack.BuildBinary(ctx, dir, "./workers/cmd/worker", e.work); err != nil {
		return err
	}
	if e.client, err = app.Dial(ctx, config.Temporal{Address: e.dev.Address, Namespace: "default"}, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	closers = append(closers, e.client.Close)
	sb, err := sandbox.New(sandbox.Options{Seed: 7, Contacts: o.records})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // ends with Close
	closers = append(closers, func() { hs.Close() })
	e.srcURL = "http://" + ln.Addr().String()

	fmt.Printf("tether scalebench: %d integrations x %d records (batch %d), worker processes %v on one task queue; %d CPUs (%s/%s)\n",
		o.integrations, o.records, o.batch, o.workers, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	var results []result
	for _, n := range o.workers {
		r, err := e.phase(ctx, n)
		if err != nil {
			return fmt.Errorf("%d workers: %w", n, err)
		}
		fmt.Fprintf(os.Stderr, "  %d workers: %s, %.0f records/s\n", n, r.wall.Round(100*time.Millisecond), r.rate())
		results = append(results, r)
	}
	fmt.Println()
	printTable(os.Stdout, results)
	fmt.Println()
	printAnalysis(os.Stdout, results)
	failed = false
	return nil
}

// result is one phase's measurement.
type result struct {
	workers, integrations int
	records               int // rows applied, over every integration
	batches               int
	wall                  time.Duration
	cpu                   cpuDelta
}

func (r result) rate() float64 { return float64(r.records) / r.wall.Seconds() }

// cpuDelta is the CPU seconds each component used during a phase, and the
// machine's idle share.
type cpuDelta struct {
	workers, dev, pg, self float64
	idle                   float64 // 0..1
	busy                   float64 // machine CPU seconds not idle
}

// phase runs the integrations with n workers on a fresh schema and task
// queue.
func (e *env) phase(ctx context.Context, n int) (r result, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := suffix()
	schema := fmt.Sprintf("scale_%dw_%s", n, id)
	tq := fmt.Sprintf("scale-%dw-%s", n, id)
	appName := "tether-scale-" + id
	dir := filepath.Join(e.work, fmt.Sprintf("%dw-%s", n, id))
	if err := os.MkdirAll(filepath.Join(dir, "integrations"), 0o755); err != nil {
		return r, err
	}
	if _, err := e.admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return r, fmt.Errorf("create schema: %w", err)
	}
	var workers []*devstack.Process
	defer func() {
		for _, p := range workers {
			_ = p.Stop(5 * time.Second)
		}
		_, _ = e.admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, appName)
		if _, derr := e.admin.Exec("DROP SCHEMA " + schema + " CASCADE"); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop schema %s: %w", schema, derr))
		}
	}()
	dsn, err := postgres.WithSearchPath(e.o.dsn, schema)
	if err != nil {
		return r, err
	}
	if dsn, err = withAppName(dsn, appName); err != nil {
		return r, err
	}
	var names, tables []string
	for i := 1; i <= e.o.integrations; i++ {
		name, table := fmt.Sprintf("scale-%dw-%d-%s", n, i, id), fmt.Sprintf("crm_contacts_%d", i)
		if err := os.WriteFile(filepath.Join(dir, "integrations", name+".yaml"), []byte(integrationFile(name, e.srcURL, table, e.o.batch)), 0o644); err != nil {
			return r, err
		}
		names, tables = append(names, name), append(tables, table)
	}
	wenv := []string{
		"TEMPORAL_ADDRESS=" + e.dev.Address, "DATABASE_URL=" + dsn, "TETHER_TEMPORAL_TASK_QUEUE=" + tq,
		"TETHER_INTEGRATIONS_DIR=" + filepath.Join(dir, "integrations"), "TETHER_WORKER_INTEGRATIONS=" + strings.Join(names, ","),
		"TETHER_LOG_LEVEL=warn", "TETHER_WORKER_GRACEFUL_STOP=1s", "TETHER_METRICS_LISTEN=",
		// PostgreSQL is shared: at most 3 workers x 8.
		"TETHER_DATABASE_MAX_OPEN_CONNS=8",
	}
	for i := range n {
		p, err := devstack.StartProcess(fmt.Sprintf("worker-%d", i+1), filepath.Join(dir, fmt.Sprintf("worker-%d.log", i+1)), wenv, e.workerBin)
		if err != nil {
			return r, err
		}
		workers = append(workers, p)
	}
	if err := waitPollers(ctx, e.client, tq, workers, dir); err != nil {
		return r, err
	}
	// Let the workers finish starting (their pools, caches) before the
	// measurement.
	time.Sleep(2 * time.Second)

	var wpids []int
	for _, p := range workers {
		wpids = append(wpids, p.Pid())
	}
	before, err := e.snapshot(wpids)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	res := make([]datasync.Result, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		h, err := cli.StartSync(ctx, e.client, tq, datasync.Input{Integration: name, Trigger: "scalebench"})
		if err != nil {
			return r, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Get(ctx, &res[i])
		}()
	}
	wg.Wait()
	r.wall = time.Since(t0)
	after, err := e.snapshot(wpids)
	if err != nil {
		return r, err
	}
	for i, err := range errs {
		if err != nil {
			return r, fmt.Errorf("sync %s: %w (logs in %s)", names[i], err, dir)
		}
	}
	r.cpu = after.minus(before)
	r.workers, r.integrations = n, len(names)
	for i, t := range tables {
		var got int
		if err := e.admin.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s.%s", schema, t)).Scan(&got); err != nil {
			return r, fmt.Errorf("count %s: %w", t, err)
		}
		if got != e.o.records {
			return r, fmt.Errorf("%s has %d rows, want %d (run %s, counts %+v; logs in %s)", t, got, e.o.records, res[i].Status, res[i].Counts, dir)
		}
		r.records += got
		r.batches += res[i].Batches
	}
	return r, nil
}

// waitPollers waits until every worker polls the task queue.
func waitPollers(ctx context.Context, c client.Client, tq string, workers []*devstack.Process, dir string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := c.DescribeTaskQueue(ctx, tq, 1)
		if err == nil && len(d.GetPollers()) >= len(workers) {
			return nil
		}
		for _, p := range workers {
			if exited, perr := p.Exited(); exited {
				return fmt.Errorf("%s exited before polling (%v); logs in %s", p.Name, perr, dir)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("not every worker polled within 2 minutes; logs in %s", dir)
}

func withAppName(dsn, app string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// snap is the CPU ticks of each component at one moment.
type snap struct {
	workers, dev, pg, self uint64
	idle, total            uint64 // /proc/stat's cpu line
}

func (a snap) minus(b snap) cpuDelta {
	sec := func(t uint64) float64 { return float64(t) / clkTck }
	d := cpuDelta{workers: sec(a.workers - b.workers), dev: sec(a.dev - b.dev), pg: sec(a.pg - b.pg), self: sec(a.self - b.self)}
	if tot := a.total - b.total; tot > 0 {
		d.idle = float64(a.idle-b.idle) / float64(tot)
		d.busy = sec(tot - (a.idle - b.idle))
	}
	return d
}

// proc is one /proc/<pid>/stat.
type proc struct {
	ppid          int
	ticks, cticks uint64 // utime+stime; cutime+cstime (reaped children)
	cmdline       string
}

// snapshot reads the CPU times of the workers (and their children), the
// dev server (and its children), PostgreSQL and this process.
func (e *env) snapshot(workers []int) (snap, error) {
	var s snap
	procs := map[int]proc{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return s, err
	}
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			procs[pid] = p
		}
	}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var tree func(pid int) uint64
	tree = func(pid int) uint64 {
		t := procs[pid].ticks
		for _, c := range children[pid] {
			t += tree(c)
		}
		return t
	}
	for _, w := range workers {
		s.workers += tree(w)
	}
	s.dev = tree(e.dev.Pid())
	s.self = procs[os.Getpid()].ticks
	for _, p := range procs {
		switch {
		case strings.HasPrefix(p.cmdline, "postgres:"):
			s.pg += p.ticks
		case isPostmaster(p.cmdline):
			// The postmaster, with what its exited backends used.
			s.pg += p.ticks + p.cticks
		}
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return s, fmt.Errorf("unexpected /proc/stat: %q", line)
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		s.total += n
		if i == 3 || i == 4 { // idle, iowait
			s.idle += n
		}
	}
	return s, nil
}

// isPostmaster says a command line is PostgreSQL's server (".../postgres
// -D ..."), not one of its "postgres: ..." children.
func isPostmaster(cmdline string) bool {
	bin, _, _ := strings.Cut(cmdline, " ")
	return filepath.Base(bin) == "postgres" || filepath.Base(bin) == "postmaster"
}

func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	// The command name is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return proc{}, false
	}
	num := func(k int) uint64 { n, _ := strconv.ParseUint(f[k-3], 10, 64); return n }
	p := proc{ppid: int(num(4)), ticks: num(14) + num(15), cticks: num(16) + num(17)}
	if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		p.cmdline = strings.TrimSpace(strings.ReplaceAll(string(c), "\x00", " "))
	}
	return p, true
}

func printTable(out io.Writer, rs []result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\twall\trecords/s (aggregate)\tworker CPU s\tdev server CPU s\tPostgreSQL CPU s\tsandbox CPU s\tmachine busy CPU s\tidle %\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%.1f s\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f %%\t\n", r.workers, r.wall.Seconds(), r.rate(),
			r.cpu.workers, r.cpu.dev, r.cpu.pg, r.cpu.self, r.cpu.busy, 100*r.cpu.idle)
	}
	tw.Flush()
}

// printAnalysis says what saturated and what each component costs per
// record, and what a cluster would reach at those costs.
func printAnalysis(out io.Writer, rs []result) {
	if len(rs) == 0 {
		return
	}
	var recs, w, d, p, s float64
	var batches int
	for _, r := range rs {
		recs += float64(r.records)
		w, d, p, s = w+r.cpu.workers, d+r.cpu.dev, p+r.cpu.pg, s+r.cpu.self
		batches += r.batches
	}
	us := func(sec float64) float64 { return 1e6 * sec / recs }
	fmt.Fprintf(out, "CPU per record (all phases, %.0f records, %d batches): worker %.1f µs, dev server %.1f µs (%.1f ms per batch), PostgreSQL %.1f µs, sandbox %.1f µs; total %.1f µs\n",
		recs, batches, us(w), us(d), 1e3*d/float64(max(1, batches)), us(p), us(s), us(w+d+p+s))
	first, last := rs[0], rs[len(rs)-1]
	cpus := float64(runtime.NumCPU())
	sat := "the machine's CPU is not saturated"
	if last.cpu.idle < 0.10 {
		sat = fmt.Sprintf("the machine's CPU: %.0f%% idle with %d workers", 100*last.cpu.idle, last.workers)
	}
	fmt.Fprintf(out, "scaling: %d -> %d workers: %.0f -> %.0f records/s (x%.2f) on %.0f CPUs; limit: %s\n",
		first.workers, last.workers, first.rate(), last.rate(), last.rate()/first.rate(), cpus, sat)
	fmt.Fprintf(out, "per core at these costs: worker %.0f records/s, dev server %.0f records/s, PostgreSQL %.0f records/s; all on one core: %.0f records/s\n",
		recs/w, recs/d, recs/p, recs/(w+d+p+s))
}

// integrationFile is the crm-contacts mapping under name, its source the
// sandbox, into table.
func integrationFile(name, srcURL, table string, batch int) string {
	return chaos.ContactsIntegrationFile(chaos.ContactsFile{Name: name, Description: "scalebench copy of crm-contacts",
		SourceURL: srcURL, Timeout: "30s", Table: table, BatchSize: batch})
}

func suffix() string {
	return strconv.FormatInt(time.Now().UnixNano()%0xffffff, 16)
}
