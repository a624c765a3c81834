package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
)

// finish checks the world after its sync and makes the scenario's Result.
func (w *world) finish(ctx context.Context, out syncOutcome, runErr error, injected int, faults string, notes ...string) Result {
	r := Result{Faults: faults, Injected: injected, Dur: out.dur, Notes: notes}
	if runErr != nil {
		r.Err = runErr
		return r
	}
	ch, err := w.check(ctx)
	r.Check = ch
	r.Err = err
	if !r.OK() {
		r.Notes = append(r.Notes, syncNotes(out), "logs in "+w.dir)
	}
	return r
}

// syncWith runs a world of o's shape: workers, a sync with hook, checks.
func syncWith(ctx context.Context, e *Env, c Config, name string, o worldOptions, hook func(w *world) func(float64) error, faults func(w *world) (int, string, []string)) Result {
	w, err := newWorld(ctx, e, c, name, o)
	if err != nil {
		return Result{Err: err}
	}
	defer w.close()
	if err := w.startWorkers(ctx, o.workers); err != nil {
		return Result{Err: err}
	}
	var h func(float64) error
	if hook != nil {
		h = hook(w)
	}
	out, runErr := w.runSync(ctx, h)
	n, desc, notes := 0, "none", []string(nil)
	if faults != nil {
		n, desc, notes = faults(w)
	}
	return w.finish(ctx, out, runErr, n, desc, notes...)
}

func runBaseline(ctx context.Context, e *Env, c Config) Result {
	return syncWith(ctx, e, c, "baseline", worldOptions{workers: 2}, nil, nil)
}

// runKills SIGKILLs a random worker (its process group) c.Kills times at
// random points of the sync, starting a new one each time.
func runKills(ctx context.Context, e *Env, c Config, name string, workers int) Result {
	var p *plan
	return syncWith(ctx, e, c, name, worldOptions{workers: workers},
		func(w *world) func(float64) error {
			p = newPlan(c.Kills, 300*time.Millisecond, w.rng)
			return func(frac float64) error {
				if !p.due(frac) {
					return nil
				}
				if err := w.killAndRestart(w.rng.IntN(len(w.workers))); err != nil {
					return err
				}
				p.landed()
				return nil
			}
		},
		func(w *world) (int, string, []string) {
			return p.done, fmt.Sprintf("%d SIGKILLs of %d workers", p.done, workers), p.missed("kills")
		})
}

// runSourceFaults syncs through the source fault proxy, the source paced
// at 5 requests/s per worker (burst 1) with a 2 s timeout and pages of 250 (at
// most).
func runSourceFaults(ctx context.Context, e *Env, c Config) Result {
	const rate, burst, workers = 5.0, 1, 2
	timeout := 2 * time.Second
	var sf *sourceFaults
	o := worldOptions{workers: workers, batchSize: min(250, c.BatchSize), timeout: timeout, rateLimit: rate, burst: burst,
		sourceProxy: func(h http.Handler) http.Handler {
			sf = newSourceFaults(h, timeout, c.Seed)
			return sf
		}}
	var over string
	r := syncWith(ctx, e, c, "source-faults", o, nil, func(w *world) (int, string, []string) {
		n, desc := sf.summary()
		peak, mean := sf.peakRate()
		// Each worker paces its own requests: rate per second plus its burst.
		limit := workers * (int(rate) + burst)
		note := fmt.Sprintf("source requests: peak %d in one second, mean %.1f/s; configured %g/s (burst %d) per worker x %d workers = at most %d in any second",
			peak, mean, rate, burst, workers, limit)
		if peak > limit {
			over = "over the configured rate: " + note
		}
		return n, desc, []string{note}
	})
	if over != "" {
		r.Violations = append(r.Violations, over)
	}
	return r
}

// runPGTerminate terminates the workers' PostgreSQL backends (found by
// the application_name in their DSN) c.Kills times, each time when one
// of them is inside a transaction writing the destination.
func runPGTerminate(ctx context.Context, e *Env, c Config) Result {
	var p *plan
	terminated, midBatch, midTx := 0, 0, 0
	return syncWith(ctx, e, c, "pg-terminate", worldOptions{workers: 2},
		func(w *world) func(float64) error {
			p = newPlan(c.Kills, 500*time.Millisecond, w.rng)
			return func(frac float64) error {
				if !p.due(frac) {
					return nil
				}
				// Wait (up to 3 s) for a backend of ours inside a
				// transaction writing the destination (a batch), else
				// inside any transaction; then terminate all of ours.
				inBatch, inTx := 0, 0
				for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if err := w.e.Admin.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE query LIKE '%' || $2 || '%'), count(*) FROM pg_stat_activity
						WHERE application_name = $1 AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`, w.appName, table).Scan(&inBatch, &inTx); err != nil {
						return err
					}
					if inBatch > 0 {
						break
					}
				}
				var n int
				if err := w.e.Admin.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
					WHERE application_name = $1 AND pid <> pg_backend_pid()`, w.appName).Scan(&n); err != nil {
					return err
				}
				terminated += n
				switch {
				case inBatch > 0:
					midBatch++
				case inTx > 0:
					midTx++
				}
				p.landed()
				return nil
			}
		},
		func(w *world) (int, string, []string) {
			return p.done, fmt.Sprintf("%d rounds (%d mid-batch, %d in another transaction), %d backends terminated", p.done, midBatch, midTx, terminated), p.missed("rounds")
		})
}

// runPGRefuse makes PostgreSQL refuse the workers' connections twice for
// 8 s, at about 30% and 60% of the sync: the proxy in between stops
// listening and resets every connection it carries.
func runPGRefuse(ctx context.Context, e *Env, c Config) Result {
	const outage = 8 * time.Second
	at := []float64{0.3, 0.6}
	done, reset := 0, 0
	return syncWith(ctx, e, c, "pg-refuse", worldOptions{workers: 2, pgProxy: true},
		func(w *world) func(float64) error {
			return func(frac float64) error {
				if done >= len(at) || frac < at[done] {
					return nil
				}
				n, err := w.pgp.refuse(outage)
				reset += n
				done++
				return err
			}
		},
		func(w *world) (int, string, []string) {
			var notes []string
			if done < len(at) {
				notes = append(notes, fmt.Sprintf("only %d of %d outages landed before the sync ended", done, len(at)))
			}
			return done, fmt.Sprintf("%d outages of %s (%d connections reset)", done, outage, reset), notes
		})
}

// runCommitLost loses the answer of a batch's COMMIT c.Kills times: the
// proxy cuts the connection after the server committed a transaction that
// wrote the destination table.
func runCommitLost(ctx context.Context, e *Env, c Config) Result {
	var p *plan
	return syncWith(ctx, e, c, "commit-lost", worldOptions{workers: 2, pgProxy: true},
		func(w *world) func(float64) error {
			p = newPlan(c.Kills, 300*time.Millisecond, w.rng)
			return func(frac float64) error {
				// One armed at a time; it lands on the next COMMIT.
				if p.due(frac) && w.pgp.arm() {
					p.landed()
				}
				return nil
			}
		},
		func(w *world) (int, string, []string) {
			n := w.pgp.lostCommits()
			var notes []string
			if n < c.Kills {
				notes = append(notes, fmt.Sprintf("only %d of %d commit answers lost before the sync ended", n, c.Kills))
			}
			return n, fmt.Sprintf("%d COMMIT answers of batches lost", n), notes
		})
}

// runDevServerRestart runs the sync on a dev server of its own, with a
// database file, which it stops (SIGTERM) at about 40% of the sync and
// starts again on the same port and file.
func runDevServerRestart(ctx context.Context, e *Env, c Config) Result {
	if e.TemporalCLI == "" {
		return Result{Err: fmt.Errorf("no temporal binary")}
	}
	port, err := devstack.FreePort()
	if err != nil {
		return Result{Err: err}
	}
	dir := filepath.Join(e.Work, "devserver-"+suffix())
	opts := devstack.DevServerOptions{CLI: e.TemporalCLI, Port: port, Headless: true, DBFile: filepath.Join(dir, "temporal.db"), LogFile: filepath.Join(dir, "temporal.log")}
	srv, err := devstack.StartDevServer(ctx, opts)
	if err != nil {
		return Result{Err: err}
	}
	defer func() {
		if srv != nil {
			_ = srv.Stop(10 * time.Second)
		}
	}()
	cl, err := app.Dial(ctx, config.Temporal{Address: srv.Address, Namespace: "default"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return Result{Err: err}
	}
	defer cl.Close()
	restarted := false
	var down time.Duration
	return syncWith(ctx, e, c, "devserver-restart", worldOptions{workers: 2, temporal: srv.Address, client: cl},
		func(w *world) func(float64) error {
			return func(frac float64) error {
				if restarted || frac < 0.4 {
					return nil
				}
				restarted = true
				t0 := time.Now()
				if err := srv.Stop(15 * time.Second); err != nil {
					e.logf("   dev server stop: %v", err)
				}
				srv = nil
				time.Sleep(2 * time.Second)
				s, err := devstack.StartDevServer(ctx, opts)
				if err != nil {
					return fmt.Errorf("restart the dev server: %w", err)
				}
				srv = s
				down = time.Since(t0)
				return nil
			}
		},
		func(w *world) (int, string, []string) {
			if !restarted {
				return 0, "none (the sync ended first)", []string{"the dev server was not restarted before the sync ended"}
			}
			return 1, fmt.Sprintf("1 stop + restart (%.1f s without a server)", down.Seconds()), nil
		})
}
