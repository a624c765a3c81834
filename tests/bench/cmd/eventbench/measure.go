package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/workflows/events"
)

// result is one contender's measures at one rate.
type result struct {
	contender string
	rate      int

	events, accepted, failed, non2xx int
	sentRate                         float64
	slipMax                          time.Duration // how late a send started, at most

	accept, applied, caught []time.Duration
	superseded              int // accepted, never committed as such (a newer version won)
	notCaughtUp             int // accepted, its entity never reached its version
	lostRows                int // entities whose final row is not their last accepted version
	lostDeliveries          int // accepted deliveries missing from tether_event_deliveries
	lastErrors              []string
	rows                    []eventRow

	wall  time.Duration // first send to the last commit (or the drain's end)
	drain time.Duration // last answer to the last commit
	cpu   cpuUse

	// tether only: what its shards counted, and their batches.
	counts    *syncstep.EventCounts
	batches   int
	shardErrs []string
	tasks     taskStats
}

func (r *result) lost() int { return r.lostRows + r.lostDeliveries + r.notCaughtUp }

// warmUp sends a few events to every contender and waits for them, so the
// shard workflows run and the connections are open before the measures.
func (st *stack) warmUp(ctx context.Context) error {
	specs := warmUpSpecs(st.shards)
	for _, c := range []*contender{st.tether, st.baseline} {
		fmt.Fprintf(os.Stderr, "eventbench: warming up %s (%d events, %d per shard)\n", c.name, len(specs), len(specs)/max(1, st.shards))
		r, err := st.measure(ctx, c, 50, specs)
		if err != nil {
			return err
		}
		if r.lost() > 0 || r.failed > 0 {
			return fmt.Errorf("%s: %d events lost, %d refused (%v)", c.name, r.lost(), r.failed, r.lastErrors)
		}
	}
	return nil
}

// measure sends specs to c at rate, waits until they are applied (or the
// drain time is over), and computes the latencies from the commit stamps.
func (st *stack) measure(ctx context.Context, c *contender, rate int, specs []spec) (*result, error) {
	res := &result{contender: c.name, rate: rate, events: len(specs)}
	ids := entityIDs(specs)
	var before syncstep.EventCounts
	var beforeBatches int
	if c.deliveries {
		before, beforeBatches, _ = st.progress(ctx)
	}
	fmt.Fprintf(os.Stderr, "eventbench: %s at %d/s: sending %d events\n", c.name, rate, len(specs))
	cpu0 := sampleCPU(st.devPid)
	t0 := time.Now()
	sends := c.sender.run(ctx, specs, rate)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	lastAnswer := t0
	var first, last time.Time
	errs := map[string]int{}
	for i, s := range sends {
		res.non2xx += s.non2xx
		if s.accepted {
			res.accepted++
		} else {
			res.failed++
		}
		for _, e := range s.errs {
			errs[e]++
		}
		if s.done.After(lastAnswer) {
			lastAnswer = s.done
		}
		if i == 0 || s.start.Before(first) {
			first = s.start
		}
		if s.start.After(last) {
			last = s.start
		}
		res.slipMax = max(res.slipMax, s.start.Sub(s.sched))
	}
	for _, e := range slices.Sorted(maps.Keys(errs)) {
		res.lastErrors = append(res.lastErrors, fmt.Sprintf("%s ×%d", e, errs[e]))
	}
	if len(sends) > 1 && last.After(first) {
		res.sentRate = float64(len(sends)-1) / last.Sub(first).Seconds()
	}

	deadline := lastAnswer.Add(st.o.drain)
	var err error
	res.lostRows, res.lostDeliveries, err = st.waitApplied(ctx, c, specs, sends, deadline)
	if err != nil {
		return nil, err
	}
	commits, err := st.commits(ctx, c.table, ids)
	if err != nil {
		return nil, err
	}
	end := time.Now()
	if n := len(commits); n > 0 && res.lostRows == 0 && res.lostDeliveries == 0 {
		end = commits[n-1].at // in commit order
	}
	res.wall = end.Sub(t0)
	res.drain = max(0, end.Sub(lastAnswer))
	res.cpu = sampleCPU(st.devPid).since(cpu0, time.Since(t0))
	res.compute(specs, sends, commits)

	if c.deliveries {
		if res.tasks, err = st.workflowTasks(ctx, t0, time.Now()); err != nil {
			return nil, err
		}
		after, batches, shardErrs := st.progress(ctx)
		d := subCounts(after, before)
		res.counts, res.batches, res.shardErrs = &d, batches-beforeBatches, shardErrs
	}
	return res, nil
}

// subCounts is a minus b, field by field.
func subCounts(a, b syncstep.EventCounts) syncstep.EventCounts {
	return syncstep.EventCounts{
		Received: a.Received - b.Received, Inserted: a.Inserted - b.Inserted, Updated: a.Updated - b.Updated,
		Deleted: a.Deleted - b.Deleted, Unchanged: a.Unchanged - b.Unchanged, Stale: a.Stale - b.Stale,
		Superseded: a.Superseded - b.Superseded, Duplicates: a.Duplicates - b.Duplicates, Quarantined: a.Quarantined - b.Quarantined,
	}
}

func entityIDs(specs []spec) []int64 {
	seen := map[int64]bool{}
	var ids []int64
	for _, sp := range specs {
		if !seen[sp.id] {
			seen[sp.id] = true
			ids = append(ids, sp.id)
		}
	}
	return ids
}

// waitApplied polls until every entity's row is at its last accepted
// version and (tether) every accepted delivery is recorded, or until the
// deadline; it returns what is still missing. Polling only decides when
// to stop: the latencies come from the commit stamps.
func (st *stack) waitApplied(ctx context.Context, c *contender, specs []spec, sends []sent, deadline time.Time) (lostRows, lostDeliveries int, err error) {
	want := map[int64]spec{}
	var deliveries []string
	for i, sp := range specs {
		if !sends[i].accepted {
			continue
		}
		deliveries = append(deliveries, sp.delivery)
		if w, ok := want[sp.id]; !ok || sp.version.After(w.version) {
			want[sp.id] = sp
		}
	}
	ids := slices.Collect(maps.Keys(want))
	for {
		lostRows, lostDeliveries = 0, 0
		got := map[int64]string{}
		rows, err := st.db.QueryContext(ctx, `SELECT id, coalesce(last_name, '') FROM `+c.table+` WHERE id = ANY($1)`, pq.Array(ids))
		if err != nil {
			return 0, 0, err
		}
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return 0, 0, err
			}
			got[id] = name
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, 0, err
		}
		for id, sp := range want {
			if got[id] != sp.marker {
				lostRows++
			}
		}
		if c.deliveries {
			var n int
			if err := st.db.QueryRowContext(ctx, `SELECT count(*) FROM tether_event_deliveries WHERE source = $1 AND delivery_id = ANY($2)`,
				sourceName, pq.Array(deliveries)).Scan(&n); err != nil {
				return 0, 0, err
			}
			lostDeliveries = len(deliveries) - n
		}
		if lostRows == 0 && lostDeliveries == 0 {
			return 0, 0, nil
		}
		if time.Now().After(deadline) {
			return lostRows, lostDeliveries, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// commit is one row version committed, as the trigger stamped it.
type commit struct {
	id      int64
	marker  string
	version time.Time
	at      time.Time
}

// commits reads the commit stamps of the entities ids in table, in
// commit order.
func (st *stack) commits(ctx context.Context, table string, ids []int64) ([]commit, error) {
	rows, err := st.db.QueryContext(ctx, `SELECT id, coalesce(last_name, ''), version, at FROM bench_commits
		WHERE tbl = $1 AND id = ANY($2) ORDER BY at`, table, pq.Array(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []commit
	for rows.Next() {
		var c commit
		if err := rows.Scan(&c.id, &c.marker, &c.version, &c.at); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// compute joins every accepted event to its commit (applied) and to the
// first commit of its entity at its version or newer (caught up), both
// from the start of its first request.
func (r *result) compute(specs []spec, sends []sent, commits []commit) {
	at := map[string]time.Time{}
	byEntity := map[int64][]commit{} // in commit order
	for _, c := range commits {
		if _, ok := at[c.marker]; !ok {
			at[c.marker] = c.at
		}
		byEntity[c.id] = append(byEntity[c.id], c)
	}
	r.rows = make([]eventRow, 0, len(specs))
	for i, sp := range specs {
		s := sends[i]
		row := eventRow{spec: &specs[i], sent: s}
		if !s.accepted {
			r.rows = append(r.rows, row)
			continue
		}
		r.accept = append(r.accept, s.done.Sub(s.start))
		if t, ok := at[sp.marker]; ok {
			r.applied = append(r.applied, t.Sub(s.start))
			row.committed = t
		} else {
			r.superseded++
		}
		for _, c := range byEntity[sp.id] {
			if !c.version.Before(sp.version) {
				r.caught = append(r.caught, c.at.Sub(s.start))
				row.caughtUp, row.caughtBy = c.at, c.marker
				break
			}
		}
		if row.caughtUp.IsZero() {
			r.notCaughtUp++
		}
		r.rows = append(r.rows, row)
	}
}

// eventRow is one event's record, for --dump.
type eventRow struct {
	spec      *spec
	sent      sent
	committed time.Time // its own version's commit (zero: superseded)
	caughtUp  time.Time // the first commit of its version or newer
	caughtBy  string    // that commit's marker
}

// dump writes every event of results as CSV to dir/events.csv.
func dump(dir string, results []*result) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := filepath.Join(dir, "events.csv")
	f, err := os.Create(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"contender", "rate", "seq", "entity", "version", "delivery", "sched", "start", "done",
		"attempts", "status", "accepted", "committed", "caught_up", "caught_by"})
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	for _, r := range results {
		for _, e := range r.rows {
			_ = w.Write([]string{r.contender, strconv.Itoa(r.rate), strconv.Itoa(e.spec.seq), strconv.FormatInt(e.spec.id, 10),
				e.spec.version.Format(time.RFC3339), e.spec.delivery, ts(e.sent.sched), ts(e.sent.start), ts(e.sent.done),
				strconv.Itoa(e.sent.attempts), strconv.Itoa(e.sent.status), strconv.FormatBool(e.sent.accepted),
				ts(e.committed), ts(e.caughtUp), e.caughtBy})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return "", err
	}
	return name, f.Close()
}

// progress sums the progress of the integration's shard workflows.
func (st *stack) progress(ctx context.Context) (syncstep.EventCounts, int, []string) {
	var sum syncstep.EventCounts
	batches := 0
	var errs []string
	for shard := range st.shards {
		resp, err := st.c.QueryWorkflow(ctx, events.WorkflowID(st.integration, shard), "", events.QueryProgress)
		if err != nil {
			continue // not started, or finished idle
		}
		var p events.Progress
		if err := resp.Get(&p); err != nil {
			continue
		}
		sum = sum.Add(p.Counts)
		batches += p.Batches
		if p.LastError != "" {
			errs = append(errs, fmt.Sprintf("shard %d: %s", shard, p.LastError))
		}
	}
	return sum, batches, errs
}
