// Package chaos runs tether under injected faults and then compares the
// destination with the source row by row: no row lost, none duplicated,
// none older than the source, the quarantine exactly the invalid records.
// `make chaos` (tests/bench/cmd/chaosbench) runs every scenario at scale
// and prints a table; tests/integration's chaos test runs a few of them
// small.
//
// Every scenario runs on loopback, on a PostgreSQL schema, a task queue and
// an integration name of its own, with tether's worker binary as separate
// processes (so that they can be killed): the sandbox CRM's contacts
// synced into crm_contacts by an integration file (the crm-contacts
// mapping), or, for the webhook scenario, signed contact events.
package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"
)

// Env is what every scenario shares: where PostgreSQL and the Temporal dev
// server are, the worker binary, and where files go.
type Env struct {
	// DSN is the base PostgreSQL URL; scenarios create and drop schemas in
	// it.
	DSN string
	// Temporal is the gRPC address of a running dev server (namespace
	// default); Client is a client on it.
	Temporal string
	Client   client.Client
	// TemporalCLI is the temporal binary: the dev-server scenario starts a
	// dev server of its own with it.
	TemporalCLI string
	// WorkerBin is the worker binary (workers/cmd/worker), built.
	WorkerBin string
	// Work is a directory for the scenarios' files and logs (each scenario
	// makes a directory in it).
	Work string
	// Log receives progress lines (nil: none).
	Log io.Writer
	// Admin is a pool on DSN for setting up and checking (direct, never
	// through a fault).
	Admin *sql.DB
}

func (e *Env) logf(format string, args ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, format+"\n", args...)
	}
}

// Config sizes the scenarios.
type Config struct {
	// Records is the contacts the sandbox serves (default 100,000).
	Records int
	// Kills is the number of faults of the scenarios that repeat one
	// (SIGKILLs, terminated backends, lost commit answers; default 10).
	Kills int
	// Events is the number of distinct webhook events (default 10,000).
	Events int
	// InvalidRate is the fraction of contacts served invalid, which must
	// end in quarantine (default 0.01).
	InvalidRate float64
	// Seed makes the data and the fault choices repeatable (default 7).
	Seed uint64
	// Timeout bounds one scenario (default 20 minutes).
	Timeout time.Duration
	// BatchSize is the integration's batch and page size (default 1000;
	// the source-faults scenario uses at most 250).
	BatchSize int
	// SourceLatency is added by the sandbox to every page it serves.
	SourceLatency time.Duration
}

func (c Config) withDefaults() Config {
	if c.Records <= 0 {
		c.Records = 100000
	}
	if c.Kills <= 0 {
		c.Kills = 10
	}
	if c.Events <= 0 {
		c.Events = 10000
	}
	if c.InvalidRate == 0 {
		c.InvalidRate = 0.01
	}
	if c.Seed == 0 {
		c.Seed = 7
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Timeout <= 0 {
		c.Timeout = 20 * time.Minute
	}
	return c
}

// Scenario is one fault and what it is run against.
type Scenario struct {
	Name string
	// About says what the scenario does, for -h.
	About string
	run   func(ctx context.Context, e *Env, c Config) Result
}

// Scenarios are every scenario, in the order `make chaos` runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "baseline", About: "no fault: the reference time, 2 workers", run: runBaseline},
		{Name: "kill-2w", About: "SIGKILL a random worker of 2 at random points of the sync (--kills times), restarting it", run: func(ctx context.Context, e *Env, c Config) Result { return runKills(ctx, e, c, "kill-2w", 2) }},
		{Name: "kill-3w", About: "the same with 3 workers on the task queue", run: func(ctx context.Context, e *Env, c Config) Result { return runKills(ctx, e, c, "kill-3w", 3) }},
		{Name: "source-faults", About: "source behind a fault proxy: 30% 5xx, bursts of 429 + Retry-After, answers slower than the timeout, truncated and malformed bodies; rate limited", run: runSourceFaults},
		{Name: "pg-terminate", About: "pg_terminate_backend on the workers' connections while a transaction is open (--kills rounds)", run: runPGTerminate},
		{Name: "pg-refuse", About: "PostgreSQL refusing connections (a TCP proxy closed, its connections reset) twice for 8 s", run: runPGRefuse},
		{Name: "commit-lost", About: "the destination commits and the answer is lost: the proxy cuts the connection instead of passing on COMMIT's reply (--kills times)", run: runCommitLost},
		{Name: "devserver-restart", About: "the Temporal dev server (with its database file) stopped and restarted mid-sync", run: runDevServerRestart},
		{Name: "webhooks", About: "--events signed webhooks, 10% redelivered, shuffled, to two workers' receivers while workers are SIGKILLed and restarted", run: runWebhooks},
	}
}

// Select returns the scenarios named in a comma-separated list ("" or
// "all": every one), in the order given.
func Select(list string) ([]Scenario, error) {
	all := Scenarios()
	if strings.TrimSpace(list) == "" || strings.TrimSpace(list) == "all" {
		return all, nil
	}
	var out []Scenario
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == name })
		if i < 0 {
			var names []string
			for _, s := range all {
				names = append(names, s.Name)
			}
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// Run runs s with c's defaults filled in, bounded by c.Timeout.
func (s Scenario) Run(ctx context.Context, e *Env, c Config) Result {
	c = c.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	e.logf("== %s", s.Name)
	r := s.run(ctx, e, c)
	r.Scenario = s.Name
	if r.Err != nil {
		e.logf("   %s: %v", s.Name, r.Err)
	} else {
		e.logf("   %s: %s in %s: lost %d, duplicated %d, older %d, differing %d, quarantine %s",
			s.Name, r.Faults, r.Dur.Round(100*time.Millisecond), r.Lost, r.Dup, r.Older, r.Differing, r.Quarantine)
	}
	return r
}

// Check is the row-by-row comparison of a destination with its source.
type Check struct {
	// Expected is the rows the destination must hold.
	Expected int
	// Lost: expected rows missing (for webhooks also deliveries never
	// accepted or missing from the ledger of applied deliveries). Dup:
	// rows beyond the first of a key (for webhooks also events processed
	// more than once, entities inserted twice). Older: rows older than the
	// source's version (for webhooks: than the newest version sent).
	// Differing: rows at the source's version with other values, or rows
	// that must not be there (an invalid record, an unknown key).
	Lost, Dup, Older, Differing int
	// QuarantineOK says the pending quarantine is exactly the invalid
	// records, each once; Quarantine says how many of how many.
	QuarantineOK bool
	Quarantine   string
}

// Result is what one scenario did and left.
type Result struct {
	Scenario string
	// Faults says how many faults landed, and which.
	Faults string
	// Injected is the number of faults that landed (0 when the scenario
	// wanted some means the fault missed the run).
	Injected int
	Check
	// Dur is from the start of the sync (or of the sending) to its end.
	Dur time.Duration
	// Notes are details worth printing under the table.
	Notes []string
	// Violations are promises other than the rows' that the run broke
	// (the source's configured rate).
	Violations []string
	// Err is why the scenario could not finish (the run failed, a stack
	// part did not start): its rows were not all checked.
	Err error
}

// OK says the scenario finished with every row right.
func (r Result) OK() bool {
	return r.Err == nil && r.Lost+r.Dup+r.Older+r.Differing == 0 && r.QuarantineOK && len(r.Violations) == 0
}

// Problem says what is wrong, or "".
func (r Result) Problem() string {
	switch {
	case r.Err != nil:
		return r.Err.Error()
	case len(r.Violations) > 0:
		return strings.Join(r.Violations, "; ")
	case !r.OK():
		return fmt.Sprintf("lost %d, duplicated %d, older %d, differing %d, quarantine %s", r.Lost, r.Dup, r.Older, r.Differing, r.Quarantine)
	}
	return ""
}

// PrintTable writes the results as a table, then each failure and note.
func PrintTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfaults injected\trows lost\trows duplicated\trows older than source\trows differing\tquarantine as expected\ttime\tresult")
	for _, r := range results {
		q := "no (" + r.Quarantine + ")"
		if r.QuarantineOK {
			q = "yes (" + r.Quarantine + ")"
		}
		verdict := "ok"
		if !r.OK() {
			verdict = "FAIL"
		}
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%s\tERROR\n", r.Scenario, r.Faults, r.Dur.Round(100*time.Millisecond))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Scenario, r.Faults, r.Lost, r.Dup, r.Older, r.Differing, q, r.Dur.Round(100*time.Millisecond), verdict)
	}
	tw.Flush()
	for _, r := range results {
		if p := r.Problem(); p != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Scenario, p)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s: %s\n", r.Scenario, n)
		}
	}
}

// suffix is a short random hex string for names.
func suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errOf joins what went wrong for a Result.
func errOf(errs ...error) error { return errors.Join(errs...) }
