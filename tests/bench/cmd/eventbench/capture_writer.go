package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"time"
)

// The mix of row changes, in percent: the rest are updates.
const (
	capInsertPct = 20
	capDeletePct = 10
)

// capChange is one row change to commit into a source table: the same
// plan for every contender.
type capChange struct {
	op     byte // 'I' insert, 'U' update, 'D' delete
	id     int64
	name   string
	status string
	score  int
}

var capStatuses = []string{"lead", "customer", "churned"}

// capBase is the first id of the entities of rate index ri (ri ==
// len(rates): the warm-up's). Each rate has its own million ids.
func capBase(ri int) int64 { return int64(ri+1) * 1_000_000 }

// makeCapChanges plans n changes for rate index ri over the entities
// seeded for it (capBase(ri)+1 .. +entities) and those it inserts:
// capInsertPct% inserts of new ids, capDeletePct% deletes, the rest
// updates, entities drawn at random (seeded). An id inserted (or, for a
// delete, last changed) in the plan is changed again only gap changes
// later (a fifth of a second at rate), so a change seldom reaches the
// database before the one it follows has committed; when it does, it
// changes nothing (counted no-op). Deleted ids are never used again.
func makeCapChanges(ri, n, entities, rate int) []capChange {
	r := rand.New(rand.NewPCG(uint64(ri)+1, 7))
	base := capBase(ri)
	gap := max(1, rate/5)
	live := make([]int64, 0, entities+n)
	pos := map[int64]int{}      // index in live
	inserted := map[int64]int{} // plan index of the insert (ids inserted by the plan)
	last := map[int64]int{}     // plan index of the last change
	for i := range entities {
		id := base + int64(i) + 1
		pos[id] = len(live)
		live = append(live, id)
		last[id] = -gap
	}
	next := base + int64(entities) + 1
	pick := func(ok func(int64) bool) (int64, bool) {
		for range 8 {
			if len(live) == 0 {
				return 0, false
			}
			id := live[r.IntN(len(live))]
			if ok(id) {
				return id, true
			}
		}
		return 0, false
	}
	mature := func(i int) func(int64) bool {
		return func(id int64) bool {
			at, ok := inserted[id]
			return !ok || i-at >= gap
		}
	}
	out := make([]capChange, n)
	for i := range out {
		seq := ri*1_000_000 + i + 1
		c := capChange{op: 'U', name: fmt.Sprintf("Person rev %d", seq), status: capStatuses[seq%len(capStatuses)], score: seq % 101}
		k := r.IntN(100)
		if k < capDeletePct && len(live) > entities/2 {
			if id, ok := pick(func(id int64) bool { return i-last[id] >= gap }); ok {
				c.op, c.id = 'D', id
				// Remove from live: swap with the last.
				j := pos[id]
				live[j] = live[len(live)-1]
				pos[live[j]] = j
				live = live[:len(live)-1]
				delete(pos, id)
			}
		}
		if c.op != 'D' && k < capDeletePct+capInsertPct {
			c.op = 'I'
		}
		if c.op == 'U' {
			if id, ok := pick(mature(i)); ok {
				c.id = id
			} else {
				c.op = 'I'
			}
		}
		if c.op == 'I' {
			c.id = next
			next++
			pos[c.id] = len(live)
			live = append(live, c.id)
			inserted[c.id] = i
		}
		last[c.id] = i
		out[i] = c
	}
	return out
}

// capWrite is what happened to one planned change.
type capWrite struct {
	sched, start, done time.Time
	rows               int64 // rows it changed: 0 is a no-op
	err                string
}

// capWriter commits planned changes into a source table, one short
// transaction each, at a fixed rate, open loop.
type capWriter struct {
	db          *sql.DB
	table       string
	concurrency int
	insert      string
	update      string
	remove      string
}

func newCapWriter(db *sql.DB, table string, concurrency int) *capWriter {
	return &capWriter{
		db: db, table: table, concurrency: concurrency,
		insert: `INSERT INTO ` + table + ` (id, email, full_name, status, score, updated_at) VALUES ($1, $2, $3, $4, $5, clock_timestamp())`,
		// Increasing per row whatever the clock does: the update re-reads
		// the row it waited for.
		update: `UPDATE ` + table + ` SET full_name = $2, status = $3, score = $4,
			updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond') WHERE id = $1`,
		remove: `DELETE FROM ` + table + ` WHERE id = $1`,
	}
}

// seed inserts the entities of the rate indexes ris, one transaction
// each.
func (w *capWriter) seed(ctx context.Context, ris []int, entities int) error {
	for _, ri := range ris {
		base := capBase(ri)
		if _, err := w.db.ExecContext(ctx, `INSERT INTO `+w.table+` (id, email, full_name, status, score, updated_at)
			SELECT $1::bigint + g, 'c' || ($1::bigint + g) || '@example.com', 'Person ' || g, 'lead', g % 101, clock_timestamp()
			FROM generate_series(1, $2::int) g`, base, entities); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// run commits changes at rate (openLoop), each as its own transaction.
func (w *capWriter) run(ctx context.Context, changes []capChange, rate int) []capWrite {
	out := make([]capWrite, len(changes))
	openLoop(ctx, len(changes), rate, w.concurrency, func(i int, due time.Time) {
		out[i].sched = due
		w.commit(ctx, &changes[i], &out[i])
	})
	return out
}

// commit runs one change as its own transaction.
func (w *capWriter) commit(ctx context.Context, c *capChange, r *capWrite) {
	r.start = time.Now()
	var res sql.Result
	var err error
	switch c.op {
	case 'I':
		res, err = w.db.ExecContext(ctx, w.insert, c.id, fmt.Sprintf("c%d@example.com", c.id), c.name, c.status, c.score)
	case 'U':
		res, err = w.db.ExecContext(ctx, w.update, c.id, c.name, c.status, c.score)
	default:
		res, err = w.db.ExecContext(ctx, w.remove, c.id)
	}
	r.done = time.Now()
	if err != nil {
		r.err = err.Error()
		return
	}
	r.rows, _ = res.RowsAffected()
}
