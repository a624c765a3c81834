package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/converter"

	"github.com/tetherflow/tether/activities/connector/pgsource/capture"
	"github.com/tetherflow/tether/activities/syncstep"
	wfcapture "github.com/tetherflow/tether/workflows/capture"
)

// runCapture measures change capture: for every rate, the same planned
// row changes into tether's source table, then into the baseline's. It
// removes both captures at the end and prints what it measured.
func runCapture(ctx context.Context, st *stack) ([]*capResult, error) {
	cs, err := startCapture(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	cs.printSetup()
	idle0 := sampleCPU(st.devPid)
	time.Sleep(3 * time.Second)
	if idle := sampleCPU(st.devPid).since(idle0, 3*time.Second); idle.ok {
		fmt.Printf("idle:       both captures installed, nothing changing: the bench process used %.0f%%, the dev server %.0f%%, postgres %.0f%% of one CPU\n",
			idle.self, idle.dev, idle.pg)
	}
	if err := cs.warmUp(ctx); err != nil {
		return nil, fmt.Errorf("capture warm-up: %w", err)
	}
	fmt.Println()

	results, plain, err := cs.measureRates(ctx)
	if err != nil {
		return nil, err
	}
	printCapLegend()
	fmt.Println()
	printCapCPU(append(results, plain))
	fmt.Println()
	printCapWaits(append(results, plain))
	fmt.Println()
	printCapChecks(results)
	cs.printWorkflowCounts(ctx)

	if err := cs.removeAndPrint(ctx); err != nil {
		return results, fmt.Errorf("capture removal: %w", err)
	}
	return results, nil
}

// printSetup prints what the capture measures change and how each
// contender captures.
func (cs *capStack) printSetup() {
	st := cs.st
	o := st.o
	per := make([]string, len(o.rates))
	for i, rate := range o.rates {
		per[i] = fmt.Sprint(o.perRate(rate))
	}
	fmt.Printf("\nchange capture: rates %v/s, %s changes, one transaction each: %d%% inserts of new ids, %d%% deletes,\n",
		o.rates, strings.Join(per, "/"), capInsertPct, capDeletePct)
	fmt.Printf("            %d%% updates over %d entities seeded per rate; at most %d in flight on %d connections\n",
		100-capInsertPct-capDeletePct, o.entities, o.concurrency, o.capConns)
	fmt.Printf("tether:     %s.%s → %s by integration %s (events.capture, batch size %d): CaptureWorkflow %s\n",
		st.schema, capSourceTether, capDestTether, cs.name, capBatchSize, wfcapture.WorkflowID(cs.name))
	fmt.Printf("            started by app.ApplyCaptures on task queue %s (a worker of its own, in process), outbox %s.%q\n",
		cs.taskQueue, capture.DefaultOutboxSchema, cs.name)
	fmt.Printf("baseline:   %s.%s → %s by a loop in this process on package capture: Wait → Read → one transaction → Ack,\n",
		st.schema, capSourceBaseline, capDestBaseline)
	fmt.Printf("            outbox %s.%q\n", capture.DefaultOutboxSchema, cs.baseName)
}

// measureRates measures tether and the baseline at every rate, then the
// writers alone (plain) at the highest rate, printing a row for each.
func (cs *capStack) measureRates(ctx context.Context) (results []*capResult, plain *capResult, err error) {
	o := cs.st.o
	printCapHeader()
	for ri, rate := range o.rates {
		changes := makeCapChanges(ri, o.perRate(rate), o.entities, rate)
		for _, c := range []*capContender{cs.tether, cs.baseline} {
			res, err := cs.measure(ctx, c, ri, rate, changes)
			if err != nil {
				return nil, nil, fmt.Errorf("capture, %s at %d/s: %w", c.name, rate, err)
			}
			results = append(results, res)
			printCapRow(res)
			time.Sleep(time.Second)
		}
	}
	// What the writers cost without capture, at the highest rate.
	top := len(o.rates) - 1
	res, err := cs.measure(ctx, cs.plain, top, o.rates[top], makeCapChanges(top, o.perRate(o.rates[top]), o.entities, o.rates[top]))
	if err != nil {
		return nil, nil, fmt.Errorf("capture, %s: %w", cs.plain.name, err)
	}
	printCapRow(res)
	return results, res, nil
}

// printWorkflowCounts prints the counts tether's capture workflow reports:
// its progress query and the running activity's last heartbeat.
func (cs *capStack) printWorkflowCounts(ctx context.Context) {
	if p, err := cs.queryProgress(ctx); err == nil {
		fmt.Printf("        tether's progress query (counts as of the last CaptureChanges to return; each runs a minute): %s, %d executions,\n", p.Status, p.Executions)
		fmt.Printf("          %d batches, %s, outbox %d pending\n", p.Batches, countsLine(p.Counts), p.Pending)
	}
	if out, at, ok := cs.heartbeat(ctx); ok {
		fmt.Printf("        the running CaptureChanges's last heartbeat (%.0f s before the end): %d batches, %s, outbox %d pending\n",
			time.Since(at).Seconds(), out.Batches, countsLine(out.Counts), out.Pending)
	}
}

// removeAndPrint removes both captures and prints what the removal did.
func (cs *capStack) removeAndPrint(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := cs.remove(rctx)
	fmt.Println("\ncapture removal")
	for _, l := range cs.removed {
		fmt.Println("  " + l)
	}
	return err
}

func printCapHeader() {
	fmt.Printf("%6s  %-22s %7s %8s  %-26s  %-26s  %-26s %10s %5s %5s %6s\n",
		"rate/s", "contender", "changes", "commit/s",
		"write ms   p50 / p99 / max", "applied ms p50 / p99 / max", "caught-up ms p50/p99/max",
		"superseded", "no-op", "lost", "outbox")
}

func printCapRow(r *capResult) {
	fmt.Printf("%6d  %-22s %7d %8.1f  %s  %s  %s %10d %5d %5d %6d\n",
		r.rate, r.contender, r.committed, r.commitRate, triple(r.write), triple(r.applied), triple(r.caught),
		r.superseded, r.noop, r.lost(), r.pending)
}

func printCapLegend() {
	fmt.Print(`
changes    source commits (inserts, updates, deletes that changed a row); commit/s: first to last source commit
write      the writer's transaction, start → commit returned, waiting for a connection included (the capture
           trigger's cost is in it, and so is the wait when the machine is busy)
applied    source commit → commit of the same row version (a deletion: of the row's deletion) in the destination,
           both stamped by a deferred trigger with clock_timestamp() at commit
caught-up  source commit → first destination commit of its row at that version or newer, or of its deletion (every change)
superseded committed, never applied as such: a newer change of its row came in the same batch
no capture the same changes at the highest rate into a table without capture trigger (the writers' cost alone)
no-op      planned changes that found no row (an update or delete that ran before its row's insert committed)
lost       rows that differ between source and destination at the end + changes never caught up;
           outbox = changes still in the outbox at the end
`)
}

func printCapCPU(results []*capResult) {
	fmt.Println("time and CPU (CPU in % of one core over first change → last destination commit; the bench process also runs the writers)")
	fmt.Printf("%6s  %-22s %8s %9s %10s %8s %8s %8s %8s %8s %10s\n",
		"rate/s", "contender", "wall s", "drain ms", "slip max", "bench", "temporal", "postgres", "machine", "batches", "ch/batch")
	for _, r := range results {
		per := "-"
		if r.batches > 0 {
			per = fmt.Sprintf("%.1f", float64(r.committed)/float64(r.batches))
		}
		fmt.Printf("%6d  %-22s %8.1f %9.0f %8.1fms %s %8d %10s\n",
			r.rate, r.contender, r.wall.Seconds(), ms(r.drain), ms(r.slipMax),
			r.cpu.cells(), r.batches, per)
	}
}

func printCapChecks(results []*capResult) {
	fmt.Println("checks (destination against source, row by row, over the rate's ids)")
	for _, r := range results {
		var parts []string
		if r.lost() > 0 {
			parts = append(parts, fmt.Sprintf("LOST: %d rows differ, %d changes never caught up", r.diff, r.notCaughtUp))
		} else {
			parts = append(parts, fmt.Sprintf("%d rows equal, %d deletes propagated", r.rows, r.deletes))
		}
		if r.pending > 0 {
			parts = append(parts, fmt.Sprintf("OUTBOX: %d changes waiting, the oldest since %s", r.pending, r.oldest.Format(time.RFC3339Nano)))
		} else {
			parts = append(parts, "outbox empty")
		}
		if r.failed > 0 {
			parts = append(parts, fmt.Sprintf("%d changes failed to commit", r.failed))
		}
		if r.quarantined > 0 || r.invalid > 0 {
			parts = append(parts, fmt.Sprintf("%d quarantined, %d invalid skipped", r.quarantined, r.invalid))
		}
		parts = append(parts, r.errs...)
		fmt.Printf("%6d  %-22s %s\n", r.rate, r.contender, strings.Join(parts, "; "))
	}
}

// printCapWaits prints what the source writers' connections waited for.
func printCapWaits(results []*capResult) {
	fmt.Println("source writers' waits (pg_stat_activity every 20 ms while they commit: share of the samples of active writer connections;")
	fmt.Println("Lock:object is the lock every transaction that notified holds through its commit, IO:WALSync the commit's flush)")
	for _, r := range results {
		if r.waitSamples == 0 {
			fmt.Printf("%6d  %-22s no writer seen active\n", r.rate, r.contender)
			continue
		}
		keys := slices.SortedFunc(maps.Keys(r.waits), func(a, b string) int { return cmp.Compare(r.waits[b], r.waits[a]) })
		var parts []string
		for i, k := range keys {
			if i == 5 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*float64(r.waits[k])/float64(r.waitSamples)))
		}
		fmt.Printf("%6d  %-22s %4.1f active on average: %s\n", r.rate, r.contender,
			float64(r.waitSamples)/float64(max(1, r.sampleRounds)), strings.Join(parts, ", "))
	}
}

func countsLine(c syncstep.EventCounts) string {
	return fmt.Sprintf("received %d, inserted %d, updated %d, deleted %d, unchanged %d, stale %d, superseded %d, quarantined %d",
		c.Received, c.Inserted, c.Updated, c.Deleted, c.Unchanged, c.Stale, c.Superseded, c.Quarantined)
}

// heartbeat is the running CaptureChanges's last heartbeat: its figures
// so far, and when it was sent.
func (cs *capStack) heartbeat(ctx context.Context) (syncstep.CaptureOutput, time.Time, bool) {
	var out syncstep.CaptureOutput
	d, err := cs.st.c.DescribeWorkflowExecution(ctx, wfcapture.WorkflowID(cs.name), "")
	if err != nil {
		return out, time.Time{}, false
	}
	for _, a := range d.GetPendingActivities() {
		if a.GetActivityType().GetName() != syncstep.CaptureChangesName || a.GetHeartbeatDetails() == nil {
			continue
		}
		if err := converter.GetDefaultDataConverter().FromPayloads(a.GetHeartbeatDetails(), &out); err != nil {
			return out, time.Time{}, false
		}
		return out, a.GetLastHeartbeatTime().AsTime(), true
	}
	return out, time.Time{}, false
}
