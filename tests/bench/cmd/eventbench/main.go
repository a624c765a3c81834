// Command eventbench measures webhook events end to end: how long a sender
// waits for its answer (accept) and how long until the event's row version
// is committed in the destination (applied), at fixed send rates, beside a
// plain handler that verifies the same signature and upserts the row into
// PostgreSQL before answering (the floor without Temporal), measured in the
// same run on the same machine:
//
//	go run ./tests/bench/cmd/eventbench [--rates 10,100,1000] [--events N] [--dsn URL] [--dump DIR] [--modes webhooks,capture]
//
// It starts a Temporal dev server (an installed temporal binary; `make
// temporal-cli` installs the pinned one), a fresh PostgreSQL schema, an
// in-process worker running crm-contacts under a name of its own, and the
// production webhook receiver (webhook.TemporalAccepter) on 127.0.0.1. For
// each rate, an open-loop sender posts signed contact events over 200
// entities with increasing versions; a deferred trigger on each
// destination table stamps every committed row version with the
// database's clock, so each event is joined to its commit without polling.
// By default each rate sends 10 seconds' worth (at most 5,000 events), and
// a full run takes about a minute and a half. --dump DIR writes every
// event's times and every shard workflow's history, to see where a slow
// event spent its time.
//
// Then it measures PostgreSQL change capture the same way (--modes
// capture; see capture_report.go): the same number of row changes per
// rate, each its own transaction, committed into a source table of the
// bench schema, from each source commit to the commit of that row version
// in the destination (both stamped by deferred triggers), for tether (an
// integration with events.capture, its CaptureWorkflow started by
// app.ApplyCaptures on an in-process worker) beside a plain loop on the
// capture package without Temporal, each on its own source table and
// outbox. This adds about a minute. Everything it starts stops when it
// ends, both captures are removed (trigger, function, outbox) and the
// schema is dropped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetherflow/tether/tests/pgtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "eventbench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	rates       []int
	events      int
	seconds     int
	maxEvents   int
	entities    int
	concurrency int
	drain       time.Duration
	dsn         string
	dump        string
	shards      int
	wftPollers  int
	webhooks    bool // --modes webhooks
	capture     bool // --modes capture
	capConns    int
}

// perRate is how many events are sent at rate.
func (o options) perRate(rate int) int {
	if o.events > 0 {
		return o.events
	}
	return max(1, min(rate*o.seconds, o.maxEvents))
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()

	// What the machine does without us: it may be shared.
	before := sampleCPU(0)
	time.Sleep(2 * time.Second)
	otherLoad := sampleCPU(0).since(before, 2*time.Second)

	st, err := start(ctx, o)
	if err != nil {
		return err
	}
	defer st.close()

	printSetup(st, otherLoad)
	idle0 := sampleCPU(st.devPid)
	time.Sleep(2 * time.Second)
	if idle := sampleCPU(st.devPid).since(idle0, 2*time.Second); idle.ok {
		fmt.Printf("idle:       with nothing sent, the bench process used %.0f%%, the dev server %.0f%%, postgres %.0f%% of one CPU\n\n", idle.self, idle.dev, idle.pg)
	}
	var results []*result
	if o.webhooks {
		if results, err = runWebhooks(ctx, st); err != nil {
			return err
		}
	}

	var capResults []*capResult
	var capErr error
	if o.capture {
		capResults, capErr = runCapture(ctx, st)
	}

	lost := lostEvents(results, capResults)
	if capErr != nil {
		return capErr
	}
	if len(lost) > 0 {
		return fmt.Errorf("events lost or refused:\n  %s", strings.Join(lost, "\n  "))
	}
	return nil
}

// parseFlags reads and checks the command's flags.
func parseFlags() (options, error) {
	var o options
	rates := flag.String("rates", "10,100,1000", "send rates to measure, events per second, comma-separated")
	flag.IntVar(&o.events, "events", 0, "events per rate (0: --seconds worth at the rate, at most --max-events)")
	flag.IntVar(&o.seconds, "seconds", 10, "seconds of sending per rate when --events is 0")
	flag.IntVar(&o.maxEvents, "max-events", 5000, "bound on the events per rate when --events is 0")
	flag.IntVar(&o.entities, "entities", 200, "entities the events are spread over (each rate has its own)")
	flag.IntVar(&o.concurrency, "concurrency", 256, "requests in flight at most")
	flag.DurationVar(&o.drain, "drain", 60*time.Second, "how long to wait after the last send for every event to be applied")
	flag.StringVar(&o.dsn, "dsn", pgtest.BaseDSN(), "PostgreSQL (a fresh schema is created and dropped)")
	flag.StringVar(&o.dump, "dump", "", "write every event's times to DIR/events.csv")
	flag.IntVar(&o.shards, "shards", 0, "event workflows of the integration (0: its default)")
	flag.IntVar(&o.wftPollers, "wft-pollers", 0, "the worker's workflow task pollers (0: the SDK's default, as the worker runs)")
	modes := flag.String("modes", "webhooks,capture", "what to measure, comma-separated: webhooks, capture (PostgreSQL change capture)")
	flag.IntVar(&o.capConns, "capture-conns", 16, "capture: connections the source writers share")
	flag.Parse()
	for m := range strings.SplitSeq(*modes, ",") {
		switch strings.TrimSpace(m) {
		case "webhooks":
			o.webhooks = true
		case "capture":
			o.capture = true
		default:
			return o, fmt.Errorf("--modes: %q is not webhooks or capture", m)
		}
	}
	var err error
	if o.rates, err = parseRates(*rates); err != nil {
		return o, err
	}
	if o.entities < 1 || o.entities > 100000 || o.capConns < 1 || o.concurrency < 1 || o.events < 0 || o.seconds < 1 || o.maxEvents < 1 || o.shards < 0 || o.wftPollers < 0 {
		return o, errors.New("--entities (1..100000), --concurrency, --seconds and --max-events must be positive, --events, --shards and --wft-pollers not negative")
	}
	return o, nil
}

// printSetup prints what the bench runs on and against; otherLoad is what
// the machine did before the stack started.
func printSetup(st *stack, otherLoad cpuUse) {
	o := st.o
	fmt.Printf("eventbench: rates %v/s, %d entities per rate, at most %d requests in flight\n", o.rates, o.entities, o.concurrency)
	fmt.Printf("machine:    %d CPUs, GOMAXPROCS %d, %s, load average %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), loadAverage())
	if otherLoad.ok {
		fmt.Printf("            before start, the machine was %.0f%% busy (in %% of one CPU) without this bench\n", otherLoad.machine)
		if otherLoad.machine > 50 {
			fmt.Printf("            WARNING: other work shares these CPUs; compare tether with the baseline of the same run only\n")
		}
	}
	fmt.Printf("postgres:   %s (schema %s), %s\n", st.shownDSN, st.schema, st.pgVersion)
	fmt.Printf("temporal:   %s\n", st.devCmdline)
	pollers := "SDK default"
	if o.wftPollers > 0 {
		pollers = strconv.Itoa(o.wftPollers)
	}
	fmt.Printf("worker:     in process, task queue %s, integration %s (%d event shards), %d DB connections, %d local activities, %d workflow tasks, workflow task pollers %s\n",
		st.taskQueue, st.integration, st.shards, st.cfg.Database.MaxOpenConns, st.cfg.Worker.MaxConcurrentLocalActivities, st.cfg.Worker.MaxConcurrentWorkflowTasks, pollers)
	fmt.Printf("receivers:  tether %s (rate limit %g/s, burst %d), baseline %s\n", st.tether.url, st.rateLimit.PerSecond, st.rateLimit.Burst, st.baseline.url)
}

// runWebhooks measures both receivers at every rate, prints the results
// and, with --dump, writes every event's times and the shard histories.
func runWebhooks(ctx context.Context, st *stack) ([]*result, error) {
	o := st.o
	if err := st.warmUp(ctx); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	printHeader()
	var results []*result
	for i, rate := range o.rates {
		specs := makeSpecs(i, o.perRate(rate), o.entities)
		for _, c := range []*contender{st.tether, st.baseline} {
			res, err := st.measure(ctx, c, rate, specs)
			if err != nil {
				return nil, fmt.Errorf("%s at %d/s: %w", c.name, rate, err)
			}
			results = append(results, res)
			printRow(res)
			time.Sleep(time.Second) // let the previous run's stragglers settle
		}
	}
	printLegend()
	fmt.Println()
	printCPU(results)
	fmt.Println()
	printChecks(results)
	printTargets(results)
	if o.dump == "" {
		return results, nil
	}
	name, err := dump(o.dump, results)
	if err != nil {
		return nil, fmt.Errorf("--dump: %w", err)
	}
	fmt.Printf("\nevery event: %s\n", name)
	sum, err := st.dumpHistories(ctx, o.dump)
	if err != nil {
		return nil, fmt.Errorf("--dump: %w", err)
	}
	fmt.Printf("shard histories: %s/shard-*.txt\n  %s\n", o.dump, strings.Join(sum, "\n  "))
	return results, nil
}

// lostEvents describes every measure that lost or refused events.
func lostEvents(results []*result, capResults []*capResult) []string {
	var lost []string
	for _, r := range results {
		if r.lost() > 0 || r.failed > 0 {
			lost = append(lost, fmt.Sprintf("%s at %d/s: %d lost, %d never accepted", r.contender, r.rate, r.lost(), r.failed))
		}
	}
	for _, r := range capResults {
		if r.lost() > 0 || r.failed > 0 || r.pending > 0 {
			lost = append(lost, fmt.Sprintf("capture, %s at %d/s: %d lost, %d failed to commit, %d left in the outbox", r.contender, r.rate, r.lost(), r.failed, r.pending))
		}
	}
	return lost
}

func parseRates(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 20000 {
			return nil, fmt.Errorf("--rates: %q is not a rate between 1 and 20000 events per second", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("--rates: no rate given")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
