// Command chaosbench measures how a sync recovers from worker crashes: the
// crm-contacts sync of the sandbox API, on two worker processes, once
// without faults and once while workers are killed (SIGKILL) and
// restarted, then checks the destination row by row against the source.
//
//	go run ./tests/bench/cmd/chaosbench --records 100000 --kills 10
//
// It prints both times, the bound recovery is held to (twice the
// fault-free time plus 10 s per kill), and the rows lost, duplicated or
// differing (all must be 0). Everything runs on loopback: a Temporal dev
// server, the sandbox API, the workers and PostgreSQL; the command stops
// by itself. It exits non-zero when a row is wrong or the bound is missed.
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
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/datasync"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaosbench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	records, kills, workers int
	dsn                     string
}

// bench is one run of the command: what it started, and how to stop it.
type bench struct {
	o       options
	work    string
	sb      *sandbox.Server
	sbURL   string
	srvAddr string
	bin     string
	admin   *sql.DB
	c       client.Client
	closers []func()
}

func (b *bench) onClose(f func()) { b.closers = append(b.closers, f) }

func (b *bench) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

func run() error {
	var o options
	flag.IntVar(&o.records, "records", 100000, "contacts to sync")
	flag.IntVar(&o.kills, "kills", 10, "worker kills during the chaos run")
	flag.IntVar(&o.workers, "workers", 2, "worker processes")
	flag.StringVar(&o.dsn, "database-url", pgtest.BaseDSN(), "PostgreSQL (fresh schemas are created and dropped)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	b := &bench{o: o}
	defer b.close()
	if err := b.setUp(ctx); err != nil {
		return err
	}
	fmt.Printf("tether chaosbench: %d records, %d workers, %d kills\n", o.records, o.workers, o.kills)

	calm, err := b.sync(ctx, "calm", 0, 0)
	if err != nil {
		return err
	}
	fmt.Printf("fault-free:        %8s   lost %d, duplicated %d, differing %d\n", calm.dur.Round(time.Millisecond), calm.lost, calm.dup, calm.diff)
	// Kills spread over about the fault-free time.
	every := calm.dur / time.Duration(o.kills+2)
	chaos, err := b.sync(ctx, "chaos", o.kills, every)
	if err != nil {
		return err
	}
	bound := 2*calm.dur + time.Duration(chaos.kills)*10*time.Second
	fmt.Printf("with %2d kills:     %8s   lost %d, duplicated %d, differing %d\n", chaos.kills, chaos.dur.Round(time.Millisecond), chaos.lost, chaos.dup, chaos.diff)
	fmt.Printf("bound (2 x fault-free + 10 s per kill): %s: %s\n", bound.Round(time.Millisecond), verdict(chaos.dur <= bound))
	switch {
	case calm.lost+calm.dup+calm.diff+chaos.lost+chaos.dup+chaos.diff > 0:
		return errors.New("rows are wrong")
	case chaos.dur > bound:
		return errors.New("recovery missed the bound")
	case chaos.kills < o.kills:
		return fmt.Errorf("only %d of %d kills landed before the run ended", chaos.kills, o.kills)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "within"
	}
	return "MISSED"
}

// setUp starts the sandbox, the dev server and builds the worker.
func (b *bench) setUp(ctx context.Context) error {
	work, err := os.MkdirTemp("", "tether-chaos")
	if err != nil {
		return err
	}
	b.work = work
	b.onClose(func() { os.RemoveAll(work) })
	if b.admin, err = postgres.Open(ctx, b.o.dsn); err != nil {
		return err
	}
	b.onClose(func() { b.admin.Close() })
	if b.sb, err = sandbox.New(sandbox.Options{Seed: 7, Contacts: b.o.records}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: b.sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln) //nolint:errcheck
	b.onClose(func() { hs.Close() })
	b.sbURL = "http://" + ln.Addr().String()

	cliPath, err := devstack.EnsureTemporalCLI(ctx, os.Stderr)
	if err != nil {
		return err
	}
	srv, err := devstack.StartDevServer(ctx, devstack.DevServerOptions{CLI: cliPath, Headless: true, LogFile: filepath.Join(work, "temporal.log")})
	if err != nil {
		return err
	}
	b.onClose(func() { srv.Stop(10 * time.Second) }) //nolint:errcheck
	b.srvAddr = srv.Address
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	if b.bin, err = devstack.BuildBinary(ctx, dir, "./workers/cmd/worker", work); err != nil {
		return err
	}
	if b.c, err = app.Dial(ctx, config.Temporal{Address: srv.Address, Namespace: "default"}, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	b.onClose(b.c.Close)
	return nil
}

// outcome is what one sync took and left.
type outcome struct {
	dur             time.Duration
	kills           int
	lost, dup, diff int
}

// sync runs crm-contacts into a fresh schema on o.workers workers, killing
// one (and starting a new one) every `every` until kills landed, and
// checks the destination.
func (b *bench) sync(ctx context.Context, name string, kills int, every time.Duration) (outcome, error) {
	schema := fmt.Sprintf("chaos_%s_%d", name, time.Now().UnixNano())
	if _, err := b.admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return outcome{}, err
	}
	defer b.admin.Exec("DROP SCHEMA " + schema + " CASCADE") //nolint:errcheck
	dsn, err := postgres.WithSearchPath(b.o.dsn, schema)
	if err != nil {
		return outcome{}, err
	}
	tq := "chaos-" + schema
	env := []string{
		"TEMPORAL_ADDRESS=" + b.srvAddr, "DATABASE_URL=" + dsn, "TETHER_TEMPORAL_TASK_QUEUE=" + tq,
		"TETHER_CONNECTIONS_CRM_BASE_URL=" + b.sbURL, "TETHER_WORKER_INTEGRATIONS=crm-contacts",
		"TETHER_LOG_LEVEL=warn", "TETHER_WORKER_GRACEFUL_STOP=1s",
	}
	ws := make([]*devstack.Process, b.o.workers)
	started := 0
	start := func(i int) error {
		started++
		p, err := devstack.StartProcess(fmt.Sprintf("worker-%d", started), filepath.Join(b.work, fmt.Sprintf("%s-worker-%d.log", name, started)), env, b.bin)
		ws[i] = p
		return err
	}
	for i := range ws {
		if err := start(i); err != nil {
			return outcome{}, err
		}
	}
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.Stop(5 * time.Second) //nolint:errcheck
			}
		}
	}()
	if err := b.waitPollers(ctx, tq); err != nil {
		return outcome{}, err
	}

	var out outcome
	t0 := time.Now()
	h, err := cli.StartSync(ctx, b.c, tq, datasync.Input{Integration: "crm-contacts", Trigger: "chaosbench"})
	if err != nil {
		return out, err
	}
	done := make(chan error, 1)
	var res datasync.Result
	go func() { done <- b.c.GetWorkflow(ctx, h.GetID(), "").Get(ctx, &res) }()
	tick := time.NewTicker(max(every, time.Second))
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				return out, fmt.Errorf("%s run: %w (logs in %s)", name, err, b.work)
			}
			waiting = false
		case <-tick.C:
			if out.kills >= kills {
				continue
			}
			i := out.kills % len(ws)
			ws[i].Kill()
			out.kills++
			if err := start(i); err != nil {
				return out, err
			}
		}
	}
	out.dur = time.Since(t0)
	out.lost, out.dup, out.diff, err = b.check(ctx, schema)
	return out, err
}

// waitPollers waits until a worker polls the task queue.
func (b *bench) waitPollers(ctx context.Context, tq string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := b.c.DescribeTaskQueue(ctx, tq, 1)
		if err == nil && len(d.GetPollers()) > 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("no worker polled within 2 minutes")
}

// check compares the destination with the source row by row: contacts
// missing, keys present more than once, rows whose values differ.
func (b *bench) check(ctx context.Context, schema string) (lost, dup, diff int, err error) {
	rows, err := b.admin.QueryContext(ctx, fmt.Sprintf(`SELECT id, count(*) OVER (PARTITION BY id), email, updated_at FROM %s.crm_contacts`, schema))
	if err != nil {
		return 0, 0, 0, err
	}
	defer rows.Close()
	type row struct {
		email   string
		updated time.Time
	}
	got := map[int64]row{}
	for rows.Next() {
		var id int64
		var n int
		var r row
		if err := rows.Scan(&id, &n, &r.email, &r.updated); err != nil {
			return 0, 0, 0, err
		}
		if n > 1 {
			dup++
		}
		got[id] = r
	}
	if err := rows.Err(); err != nil {
		return 0, 0, 0, err
	}
	invalid := map[int64]bool{}
	for _, id := range b.sb.InvalidContactIDs() {
		invalid[id] = true
	}
	for _, c := range b.sb.Contacts() {
		if invalid[c.ID] {
			continue
		}
		r, ok := got[c.ID]
		if !ok {
			lost++
			continue
		}
		want, perr := time.Parse(time.RFC3339Nano, c.UpdatedAt)
		if perr != nil || !r.updated.Equal(want) || r.email != strings.ToLower(strings.TrimSpace(c.Email)) {
			diff++
		}
	}
	return lost, dup, diff, nil
}
