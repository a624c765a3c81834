package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"
)

// capResult is one contender's measures at one rate.
type capResult struct {
	contender string
	rate      int

	changes, committed, noop, failed int
	commitRate                       float64       // source commits per second, first to last
	slipMax                          time.Duration // how late a change started, at most

	write, applied, caught []time.Duration
	superseded             int // committed, never applied as such: a newer change of its row won in the same batch
	notCaughtUp            int // committed, its row never reached that version (or its delete)
	diff                   int // rows that differ between source and destination at the end
	rows, deletes          int // source rows of the rate at the end, deletes committed
	pending                int64
	oldest                 time.Time
	batches                int // destination transactions
	quarantined, invalid   int
	errs                   []string

	// Samples of the writers' connections while they run: what each
	// active one waited for ("CPU": nothing), and how many samples.
	waits        map[string]int
	waitSamples  int
	sampleRounds int

	wall  time.Duration // first change to the last destination commit
	drain time.Duration // last source commit to the last destination commit
	cpu   cpuUse
}

func (r *capResult) lost() int { return r.diff + r.notCaughtUp }

// capStamp is one committed row version, as bench_cdc_commits has it.
type capStamp struct {
	id      int64
	op      byte
	version time.Time
	xid     int64
	at      time.Time
}

// warmUp seeds every rate's entities (and the warm-up's) in both source
// tables, waits until both destinations have them, then commits a few
// changes at 50/s to each contender, so connections, caches and the
// capture workflow's activity are warm before the measures.
func (cs *capStack) warmUp(ctx context.Context) error {
	o := cs.st.o
	ris := make([]int, len(o.rates)+1)
	for i := range ris {
		ris[i] = i
	}
	for _, c := range []*capContender{cs.tether, cs.baseline} {
		fmt.Fprintf(os.Stderr, "eventbench: capture: seeding %s with %d rows\n", c.source, len(ris)*o.entities)
		t0 := time.Now()
		if err := c.writer.seed(ctx, ris, o.entities); err != nil {
			return err
		}
		if diff, pending, err := cs.waitConverged(ctx, c, capBase(0), capBase(len(ris)), time.Now().Add(60*time.Second)); err != nil {
			return err
		} else if diff > 0 || pending > 0 {
			return fmt.Errorf("%s: seed not applied after 60s: %d rows differ, %d changes in the outbox; %s", c.name, diff, pending, cs.progress(ctx))
		}
		fmt.Fprintf(os.Stderr, "eventbench: capture: %s applied the seed in %.0f ms\n", c.name, ms(time.Since(t0)))
	}
	if err := cs.plain.writer.seed(ctx, ris, o.entities); err != nil {
		return err
	}
	warm := len(o.rates)
	changes := makeCapChanges(warm, 50, o.entities, 50)
	for _, c := range []*capContender{cs.tether, cs.baseline} {
		fmt.Fprintf(os.Stderr, "eventbench: capture: warming up %s (%d changes)\n", c.name, len(changes))
		r, err := cs.measure(ctx, c, warm, 50, changes)
		if err != nil {
			return err
		}
		if r.lost() > 0 || r.failed > 0 {
			return fmt.Errorf("capture warm-up, %s: %d rows differ, %d changes never applied, %d failed (%v)", c.name, r.diff, r.notCaughtUp, r.failed, r.errs)
		}
	}
	return nil
}

// measure commits changes into c's source at rate, waits until the
// destination equals the source (or the drain time is over), and joins
// every source commit to its destination commit.
func (cs *capStack) measure(ctx context.Context, c *capContender, ri, rate int, changes []capChange) (*capResult, error) {
	st := cs.st
	res := &capResult{contender: c.name, rate: rate, changes: len(changes)}
	var seq0 int64
	if err := st.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM bench_cdc_commits`).Scan(&seq0); err != nil {
		return nil, err
	}
	q0, err := cs.quarantined(ctx, c)
	if err != nil {
		return nil, err
	}
	_, inv0, _ := cs.loop.stats()
	fmt.Fprintf(os.Stderr, "eventbench: capture: %s at %d/s: committing %d changes\n", c.name, rate, len(changes))
	cpu0 := sampleCPU(st.devPid)
	t0 := time.Now()
	writes := cs.writeSampled(ctx, c, changes, rate, res)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	lastDone := res.countWrites(writes, t0)

	lo, hi := capBase(ri), capBase(ri+1)
	src, dst, err := cs.settle(ctx, c, res, lo, hi, lastDone.Add(st.o.drain), seq0)
	if err != nil {
		return nil, err
	}
	end := time.Now()
	if n := len(dst); n > 0 && res.lost() == 0 {
		end = dst[n-1].at
	}
	res.wall = end.Sub(t0)
	res.cpu = sampleCPU(st.devPid).since(cpu0, time.Since(t0))
	res.compute(src, dst, c.dest != "")
	if c.dest == "" {
		res.wall = lastDone.Sub(t0)
		return res, nil
	}
	if n := len(src); n > 0 {
		res.drain = max(0, end.Sub(src[n-1].at))
	}
	if err := cs.readOutcome(ctx, c, res, lo, hi, q0, inv0); err != nil {
		return nil, err
	}
	return res, nil
}

// writeSampled commits changes into c's source at rate and, meanwhile,
// samples into res what the writers wait for.
func (cs *capStack) writeSampled(ctx context.Context, c *capContender, changes []capChange, rate int, res *capResult) []capWrite {
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		res.waits, res.waitSamples, res.sampleRounds = cs.sampleWaits(sctx)
	}()
	writes := c.writer.run(ctx, changes, rate)
	stopSampling()
	<-sampled
	return writes
}

// countWrites counts the writes' outcomes into r and returns when the last
// one ended (t0 when none ended later).
func (r *capResult) countWrites(writes []capWrite, t0 time.Time) (lastDone time.Time) {
	lastDone = t0
	errs := map[string]int{}
	for _, w := range writes {
		r.slipMax = max(r.slipMax, w.start.Sub(w.sched))
		lastDone = later(lastDone, w.done)
		switch {
		case w.err != "":
			r.failed++
			errs[w.err]++
		case w.rows == 0:
			r.noop++
		default:
			r.write = append(r.write, w.done.Sub(w.start))
		}
	}
	for _, e := range slices.Sorted(maps.Keys(errs)) {
		r.errs = append(r.errs, fmt.Sprintf("writer: %s ×%d", e, errs[e]))
	}
	return lastDone
}

// settle waits, when c has a destination, until it equals the source over
// the ids in (lo, hi] or the deadline passes, then reads the commit stamps
// of c's source and destination after seq0.
func (cs *capStack) settle(ctx context.Context, c *capContender, res *capResult, lo, hi int64, deadline time.Time, seq0 int64) (src, dst []capStamp, err error) {
	if c.dest != "" {
		res.diff, res.pending, err = cs.waitConverged(ctx, c, lo, hi, deadline)
		if err != nil {
			return nil, nil, err
		}
	}
	if src, err = cs.stamps(ctx, c.source, seq0); err != nil {
		return nil, nil, err
	}
	if c.dest != "" {
		if dst, err = cs.stamps(ctx, c.dest, seq0); err != nil {
			return nil, nil, err
		}
	}
	return src, dst, nil
}

// readOutcome reads what is left once c's destination settled: its
// outbox's oldest change, the source rows with ids in (lo, hi], and the
// rows quarantined or skipped as invalid, and the errors, since the
// measure began (with q0 quarantined and inv0 invalid).
func (cs *capStack) readOutcome(ctx context.Context, c *capContender, res *capResult, lo, hi int64, q0, inv0 int) error {
	var err error
	if _, res.oldest, err = c.lag.Lag(ctx); err != nil {
		return err
	}
	if err := cs.st.db.QueryRowContext(ctx, `SELECT count(*) FROM `+c.source+` WHERE id > $1 AND id <= $2`, lo, hi).Scan(&res.rows); err != nil {
		return err
	}
	q1, err := cs.quarantined(ctx, c)
	if err != nil {
		return err
	}
	res.quarantined = q1 - q0
	if !c.workflow {
		_, inv1, loopErrs := cs.loop.stats()
		res.invalid = inv1 - inv0
		for _, e := range slices.Sorted(maps.Keys(loopErrs)) {
			res.errs = append(res.errs, fmt.Sprintf("baseline loop: %s ×%d", e, loopErrs[e]))
		}
	} else if p, err := cs.queryProgress(ctx); err == nil && p.LastError != "" {
		res.errs = append(res.errs, fmt.Sprintf("capture workflow %s: %s", p.Status, p.LastError))
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// waitConverged polls until c's destination rows with ids in (lo, hi]
// equal the source's, row by row, and c's outbox is empty, or until the
// deadline. Polling only decides when to stop: the latencies come from
// the commit stamps.
func (cs *capStack) waitConverged(ctx context.Context, c *capContender, lo, hi int64, deadline time.Time) (diff int, pending int64, err error) {
	q := `SELECT count(*) FROM (SELECT * FROM ` + c.source + ` WHERE id > $1 AND id <= $2) s
FULL JOIN (SELECT * FROM ` + c.dest + ` WHERE id > $1 AND id <= $2) d USING (id)
WHERE s.id IS NULL OR d.id IS NULL
   OR (lower(trim(s.email)), s.full_name, s.status, s.score, s.updated_at) IS DISTINCT FROM (d.email, d.full_name, d.status, d.score, d.updated_at)`
	for {
		if pending, _, err = c.lag.Lag(ctx); err != nil {
			return 0, 0, err
		}
		if err := cs.st.db.QueryRowContext(ctx, q, lo, hi).Scan(&diff); err != nil {
			return 0, 0, err
		}
		if (diff == 0 && pending == 0) || time.Now().After(deadline) {
			return diff, pending, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stamps reads the commit stamps of table after seq, in commit order.
func (cs *capStack) stamps(ctx context.Context, table string, after int64) ([]capStamp, error) {
	rows, err := cs.st.db.QueryContext(ctx, `SELECT id, op, version, xid, at FROM bench_cdc_commits WHERE tbl = $1 AND seq > $2 ORDER BY at, seq`, table, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []capStamp
	for rows.Next() {
		var s capStamp
		var op string
		if err := rows.Scan(&s.id, &op, &s.version, &s.xid, &s.at); err != nil {
			return nil, err
		}
		s.op = op[0]
		out = append(out, s)
	}
	return out, rows.Err()
}

// quarantined counts c's quarantined rows (tether only).
func (cs *capStack) quarantined(ctx context.Context, c *capContender) (int, error) {
	if !c.workflow {
		return 0, nil
	}
	var n int
	err := cs.st.db.QueryRowContext(ctx, `SELECT count(*) FROM tether_quarantine WHERE integration = $1`, cs.name).Scan(&n)
	return n, err
}

// compute joins every source commit to the destination commit of the
// same row version (applied) and to the first destination commit of its
// row at that version or newer, or of its deletion (caught up), both
// from the source commit.
func (r *capResult) compute(src, dst []capStamp, captured bool) {
	type version struct {
		id int64
		op byte
		v  int64
	}
	// A row's deletion is matched on its key alone: the row the
	// destination deletes may be older than the source's when the last
	// update and the delete came in one batch.
	key := func(s capStamp) version {
		if s.op == 'D' {
			return version{s.id, 'D', 0}
		}
		return version{s.id, s.op, s.version.UnixMicro()}
	}
	at := map[version]time.Time{}
	byID := map[int64][]capStamp{} // in commit order
	xids := map[int64]bool{}
	for _, d := range dst {
		k := key(d)
		if _, ok := at[k]; !ok {
			at[k] = d.at
		}
		byID[d.id] = append(byID[d.id], d)
		xids[d.xid] = true
	}
	r.batches = len(xids)
	r.committed = len(src)
	for _, s := range src {
		if s.op == 'D' {
			r.deletes++
		}
		if !captured {
			continue
		}
		if t, ok := at[key(s)]; ok {
			r.applied = append(r.applied, t.Sub(s.at))
		} else {
			r.superseded++
		}
		caught := false
		for _, d := range byID[s.id] {
			if d.op == 'D' || (s.op != 'D' && !d.version.Before(s.version)) {
				r.caught = append(r.caught, d.at.Sub(s.at))
				caught = true
				break
			}
		}
		if !caught {
			r.notCaughtUp++
		}
	}
	if n := len(src); n > 1 {
		if d := src[n-1].at.Sub(src[0].at); d > 0 {
			r.commitRate = float64(n-1) / d.Seconds()
		}
	}
}

// writerApp is the application_name of the source writers' connections.
const writerApp = "eventbench-writer"

// sampleWaits samples, every 20ms until ctx ends, what the writers'
// active connections wait for, as pg_stat_activity says: "Lock:object"
// is NOTIFY's commit lock, "IO:WALSync" the commit's flush, "CPU" no wait.
func (cs *capStack) sampleWaits(ctx context.Context) (waits map[string]int, samples, rounds int) {
	waits = map[string]int{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return waits, samples, rounds
		case <-tick.C:
		}
		rows, err := cs.st.admin.QueryContext(ctx, `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'active'`, writerApp)
		if err != nil {
			continue // ctx ended
		}
		rounds++
		for rows.Next() {
			var w string
			if rows.Scan(&w) == nil {
				waits[w]++
				samples++
			}
		}
		rows.Close()
	}
}
