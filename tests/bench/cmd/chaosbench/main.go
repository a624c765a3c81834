// Command chaosbench runs tether under faults (package tests/chaos) and
// checks each scenario's destination row by row against its source:
//
//	go run ./tests/bench/cmd/chaosbench [--scenarios a,b] [--records 100000] [--kills 10] [--events 10000]
//
// Each scenario runs on a fresh PostgreSQL schema, task queue and
// integration, with worker processes of tether's worker binary; it ends
// with the row-by-row comparison. The command prints a table: scenario,
// faults injected, rows lost, duplicated, older than the source or
// differing, whether the quarantine is exactly the invalid records, and
// the time. It exits non-zero when any row is wrong or a scenario could
// not finish. Everything runs on loopback (a Temporal dev server, the
// sandbox API, the workers, PostgreSQL) and stops by itself; the logs of a
// failed scenario are kept.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/tests/chaos"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaosbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var c chaos.Config
	var list, dsn string
	var keep bool
	flag.StringVar(&list, "scenarios", "all", "scenarios to run, comma-separated (see below)")
	flag.IntVar(&c.Records, "records", 100000, "contacts the source serves in each sync scenario")
	flag.IntVar(&c.Kills, "kills", 10, "faults of the repeated kinds: SIGKILLs, pg_terminate_backend rounds, lost COMMIT answers")
	flag.IntVar(&c.Events, "events", 10000, "distinct webhook events of the webhooks scenario")
	flag.Float64Var(&c.InvalidRate, "invalid-rate", 0.01, "fraction of contacts served invalid (they must end in quarantine)")
	flag.DurationVar(&c.Timeout, "timeout", 20*time.Minute, "bound on one scenario")
	flag.StringVar(&dsn, "database-url", pgtest.BaseDSN(), "PostgreSQL (fresh schemas are created and dropped)")
	flag.BoolVar(&keep, "keep", false, "keep the logs even when every scenario passed")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: chaosbench [flags]\n\nflags:\n")
		flag.PrintDefaults()
		fmt.Fprintf(flag.CommandLine.Output(), "\nscenarios:\n")
		for _, s := range chaos.Scenarios() {
			fmt.Fprintf(flag.CommandLine.Output(), "  %-18s %s\n", s.Name, s.About)
		}
	}
	flag.Parse()
	scenarios, err := chaos.Select(list)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	work, err := os.MkdirTemp("", "tether-chaos")
	if err != nil {
		return err
	}
	e := &chaos.Env{DSN: dsn, Work: work, Log: os.Stderr}
	if e.Admin, err = postgres.Open(ctx, dsn); err != nil {
		return err
	}
	closers = append(closers, func() { e.Admin.Close() })
	if e.TemporalCLI, err = devstack.EnsureTemporalCLI(ctx, os.Stderr); err != nil {
		return err
	}
	srv, err := devstack.StartDevServer(ctx, devstack.DevServerOptions{CLI: e.TemporalCLI, Headless: true, LogFile: filepath.Join(work, "temporal.log")})
	if err != nil {
		return err
	}
	closers = append(closers, func() { _ = srv.Stop(10 * time.Second) })
	e.Temporal = srv.Address
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	if e.WorkerBin, err = devstack.BuildBinary(ctx, dir, "./workers/cmd/worker", work); err != nil {
		return err
	}
	if e.Client, err = app.Dial(ctx, config.Temporal{Address: srv.Address, Namespace: "default"}, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	closers = append(closers, e.Client.Close)

	var names []string
	for _, s := range scenarios {
		names = append(names, s.Name)
	}
	fmt.Printf("tether chaosbench: %d records, %d kills, %d webhook events; scenarios %s\n", c.Records, c.Kills, c.Events, strings.Join(names, ", "))
	var results []chaos.Result
	failed := false
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		r := s.Run(ctx, e, c)
		results = append(results, r)
		failed = failed || !r.OK()
	}
	fmt.Println()
	chaos.PrintTable(os.Stdout, results)
	printBounds(results)
	if failed || keep {
		fmt.Printf("logs: %s\n", work)
	} else {
		closers = append(closers, func() { os.RemoveAll(work) })
	}
	if failed {
		return errors.New("rows are wrong, or a scenario did not finish")
	}
	return ctx.Err()
}

// printBounds holds the kill scenarios to the recovery bound of the
// operations issue, when the baseline ran: twice the fault-free time plus
// 10 s per kill (a step on a killed worker waits out its 10 s heartbeat
// timeout). It is reported, not enforced: the machine may be shared.
func printBounds(results []chaos.Result) {
	var base time.Duration
	for _, r := range results {
		if r.Scenario == "baseline" && r.Err == nil {
			base = r.Dur
		}
	}
	if base == 0 {
		return
	}
	for _, r := range results {
		if !strings.HasPrefix(r.Scenario, "kill-") || r.Err != nil {
			continue
		}
		bound := 2*base + time.Duration(r.Injected)*10*time.Second
		verdict := "within"
		if r.Dur > bound {
			verdict = "MISSED"
		}
		fmt.Printf("%s: recovery bound (2 x baseline + 10 s per kill) %s, took %s: %s\n", r.Scenario, bound.Round(100*time.Millisecond), r.Dur.Round(100*time.Millisecond), verdict)
	}
}
