package twoway

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/heartbeat"
	"github.com/tetherflow/tether/activities/run"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Activities are the two-way steps.
type Activities struct {
	Defs  *Registry
	Store *store.Store
	// Sides opens the integrations' sides by kind: the worker's connector
	// registry (connector/builtin and any registered with RegisterSide).
	Sides *connector.Registry
	// History, when set, names who resolved a conflict (from the
	// Update's event).
	History run.History
	// Metrics, when set, counts what the cycles and resolutions did.
	Metrics *Metrics
	// MaxChanges bounds the changes a cycle reads from a side (0:
	// DefaultMaxChanges); a larger backlog is read over several cycles.
	MaxChanges int

	mu     sync.Mutex
	opened map[string]*sides // by integration: opened once per worker
}

// Register puts the steps on a worker.
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.Sync, activity.RegisterOptions{Name: syncstep.TwoWaySync.Name()})
	r.RegisterActivityWithOptions(a.ResolveConflict, activity.RegisterOptions{Name: syncstep.ResolveConflict.Name()})
}

// sides holds an integration's two open endpoints.
type sides struct {
	def    Definition
	gen    int // the definition's generation in the registry
	ep     [2]Endpoint
	fields []string
	// parked are the ids of the conflicts waiting for a person when the
	// cycle began, by pair (set per cycle, on a copy).
	parked map[int64][]int64
}

// open returns the integration's endpoints, opened on first use and kept
// until its definition changes: an HTTP side's connections and rate limit
// carry over from cycle to cycle.
func (a *Activities) open(name string) (*sides, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	def, gen, err := a.Defs.current(name)
	if err != nil {
		return nil, failure.Permanent(failure.TypeConfig, err)
	}
	if s, ok := a.opened[name]; ok && s.gen == gen {
		return s, nil
	}
	s := &sides{def: def, gen: gen, fields: slices.Sorted(maps.Keys(def.A.Fields()))}
	for i, spec := range []SideSpec{def.A, def.B} {
		if s.ep[i], err = spec.Open(name, a.Sides); err != nil {
			return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("two-way integration %q, side %s: %w", name, spec.Name, err))
		}
	}
	if a.opened == nil {
		a.opened = map[string]*sides{}
	}
	a.opened[name] = s
	return s, nil
}

var sideOf = [2]Side{A, B}

func idx(s Side) int {
	if s == B {
		return 1
	}
	return 0
}

// item is one pair to look at in a cycle: the pair as last in sync, and
// what each side's feed gave of it.
type item struct {
	pair store.TwoWayPair
	ch   [2]*Change
	// saved, when set, takes the pair's new state to save in a batch.
	saved func(store.TwoWayPair)
}

// Sync is one cycle of a two-way integration: it reads both sides' change
// feeds since where they were read up to, resolves every pair that
// changed, writes what must be written where, records conflicts, and
// moves the feeds' cursors. Retrying it is safe: a pair whose writes went
// through before a crash now holds the same record on both sides and is
// only recorded as in sync.
func (a *Activities) Sync(ctx context.Context, in syncstep.TwoWayInput) (syncstep.TwoWayCycle, error) {
	// Alive while its calls take their time (an API's retries): a lost
	// worker is noticed by the heartbeat timeout, not a slow side.
	defer heartbeat.Keep(ctx, "two-way cycle of "+in.Integration)()
	opened, err := a.open(in.Integration)
	if err != nil {
		return syncstep.TwoWayCycle{}, err
	}
	cycle := *opened // this cycle's own parked set
	s := &cycle
	out := syncstep.TwoWayCycle{Fields: s.fields, Sides: [2]string{s.def.A.Name, s.def.B.Name}, Every: s.def.Every}
	// Read both feeds first: a pair both sides changed is resolved once,
	// with both changes.
	maxChanges := a.MaxChanges
	if maxChanges <= 0 {
		maxChanges = DefaultMaxChanges
	}
	var changes [2][]Change
	var last [2]Change
	var partial [2]bool
	for i := range s.ep {
		side := string(sideOf[i])
		cur, key, wasPartial, err := a.Store.TwoWayCursor(ctx, in.Integration, side)
		if err != nil {
			return out, err
		}
		from, fromKey := cur, key
		if cur != "" && !wasPartial {
			// A complete read before: go back the overlap (a change
			// committed late under an earlier time).
			t, err := time.Parse(time.RFC3339Nano, cur)
			if err != nil {
				return out, fmt.Errorf("the %s cursor %q: %w", side, cur, err)
			}
			from, fromKey = t.Add(-s.def.Overlap).Format(time.RFC3339Nano), ""
		}
		// After a read cut at its limit, strictly after where it stopped,
		// or a backlog larger than the limit would be read again forever.
		done := Change{Cursor: cur, Key: key}
		last[i] = done
		byKey := map[string]int{}
		err = s.ep[i].Changes(ctx, from, fromKey, func(page []Change) error {
			if len(changes[i]) >= maxChanges {
				// (checked per page: a cycle reads whole pages)
				return errEnough // the rest next cycle, from where this one stops
			}
			activity.RecordHeartbeat(ctx, fmt.Sprintf("read %d changes of %s", len(changes[i])+len(page), sideName(s.def, i)))
			for _, c := range page {
				if wasPartial && !after(c, done) {
					continue
				}
				if j, ok := byKey[c.Key]; ok {
					changes[i][j] = c // the latest change of a record wins
				} else {
					byKey[c.Key] = len(changes[i])
					changes[i] = append(changes[i], c)
				}
				if after(c, last[i]) {
					last[i] = c
				}
			}
			return nil
		})
		partial[i] = errors.Is(err, errEnough)
		if err != nil && !partial[i] {
			return out, fmt.Errorf("read the changes of %s: %w", sideName(s.def, i), err)
		}
	}
	out.Counts.ReadA, out.Counts.ReadB = len(changes[0]), len(changes[1])
	if s.parked, err = a.Store.ParkedConflicts(ctx, in.Integration); err != nil {
		return out, err
	}

	// Pairs the changes belong to; linked ones first, so that a record an
	// earlier attempt created is linked before it could be created again.
	items := map[int64]*item{}
	var order []*item
	var unlinked [2][]Change
	for i := range changes {
		keys := make([]string, len(changes[i]))
		for j, c := range changes[i] {
			keys[j] = c.Key
		}
		pairs, err := a.Store.TwoWayPairs(ctx, in.Integration, string(sideOf[i]), keys)
		if err != nil {
			return out, err
		}
		for j := range changes[i] {
			c := &changes[i][j]
			p, ok := pairs[c.Key]
			if !ok {
				unlinked[i] = append(unlinked[i], *c)
				continue
			}
			it := items[p.ID]
			if it == nil {
				it = &item{pair: p}
				items[p.ID] = it
				order = append(order, it)
			}
			it.ch[i] = c
		}
	}
	if err := a.settleAll(ctx, s, order, &out.Counts); err != nil {
		return out, err
	}
	// Records not linked yet: matched with their twin by the match
	// fields, or new; a's first, then b's (each looked up again: a record
	// an earlier attempt created is linked by then).
	twins := map[string]int{}
	for j, c := range unlinked[1] {
		if k := matchKey(s.def.Match, c); k != "" {
			twins[k] = j
		}
	}
	used := map[int]bool{}
	for i := range unlinked {
		var phase []*item
		for j := range unlinked[i] {
			c := unlinked[i][j]
			if i == 1 && used[j] {
				continue
			}
			it := &item{pair: store.TwoWayPair{Integration: in.Integration}}
			it.ch[i] = &c
			if i == 0 {
				if k := matchKey(s.def.Match, c); k != "" {
					if tj, ok := twins[k]; ok && !used[tj] {
						used[tj] = true
						twin := unlinked[1][tj]
						it.ch[1] = &twin
					}
				}
			}
			phase = append(phase, it)
		}
		if err := a.linkSince(ctx, in.Integration, phase); err != nil {
			return out, err
		}
		if err := a.settleAll(ctx, s, phase, &out.Counts); err != nil {
			return out, err
		}
	}
	for i := range last {
		if last[i].Key == "" {
			continue
		}
		if err := a.Store.SaveTwoWayCursor(ctx, in.Integration, string(sideOf[i]), last[i].Cursor, last[i].Key, partial[i]); err != nil {
			return out, err
		}
	}
	byPair, err := a.Store.ParkedConflicts(ctx, in.Integration)
	if err != nil {
		return out, err
	}
	for _, ids := range byPair {
		out.ParkedTotal += len(ids)
	}
	shown, err := a.Store.ListConflicts(ctx, store.ConflictFilter{Integration: in.Integration, Status: store.ConflictParked, Limit: syncstep.MaxParkedShown})
	if err != nil {
		return out, err
	}
	for _, c := range shown {
		out.Parked = append(out.Parked, syncstep.ParkedConflict{ID: c.ID, AKey: c.AKey, BKey: c.BKey, Fields: c.Fields, DetectedAt: c.DetectedAt})
	}
	a.Metrics.cycle(in.Integration, out, time.Now())
	return out, nil
}

func sideName(d Definition, i int) string {
	if i == 0 {
		return d.A.Name
	}
	return d.B.Name
}

// after reports whether c comes after l in a feed.
func after(c, l Change) bool {
	if l.Cursor == "" {
		return true
	}
	ct, err1 := time.Parse(time.RFC3339Nano, c.Cursor)
	lt, err2 := time.Parse(time.RFC3339Nano, l.Cursor)
	if err1 != nil || err2 != nil {
		return c.Cursor > l.Cursor
	}
	return ct.After(lt) || (ct.Equal(lt) && c.Key > l.Key)
}

// matchKey is the change's match fields' values, or "" when it has none
// of them.
func matchKey(fields []string, c Change) string {
	if len(fields) == 0 || c.Record == nil {
		return ""
	}
	var parts []string
	for _, f := range fields {
		v, ok := c.Record[f]
		if !ok || v == nil {
			return ""
		}
		parts = append(parts, strings.ToLower(fmt.Sprint(v)))
	}
	return strings.Join(parts, "\x00")
}

// observed is side i of the pair as the resolution sees it: the feed's
// change, or, when the feed gave none, the base (the side is as last in
// sync), or nothing when the side has no record.
func observed(it *item, base Record, i int) *Observed {
	if c := it.ch[i]; c != nil {
		return observedOf(*c)
	}
	key := it.pair.AKey
	if i == 1 {
		key = it.pair.BKey
	}
	if key == "" || base == nil {
		return nil
	}
	return &Observed{Record: base}
}

func decode(raw json.RawMessage) (Record, error) {
	if raw == nil {
		return nil, nil
	}
	var r Record
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	return r, nil
}

func encode(r Record) json.RawMessage {
	if r == nil {
		return nil
	}
	b, _ := json.Marshal(r)
	return b
}

// DefaultMaxChanges bounds the changes a cycle reads from a side (its
// memory): a larger backlog is read over several cycles. The pairs of the
// changes left for later are safe meanwhile: a write to a record whose
// newer change was not read is refused by its version, and waits for it.
const DefaultMaxChanges = 20000

// errEnough stops a feed read at maxChanges.
var errEnough = errors.New("enough changes for one cycle")

// settleParallel bounds the pairs settled at once: they are independent,
// and each waits on the sides' round trips.
const settleParallel = 8

// pairBatch is how many pairs' states are saved in one statement.
const pairBatch = 100

// settleAll settles items, settleParallel at a time, adding to n what
// they did; the first error stops the rest.
func (a *Activities) settleAll(ctx context.Context, s *sides, items []*item, n *syncstep.TwoWayCounts) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *item)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(settleParallel, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine syncstep.TwoWayCounts
			var batch []store.TwoWayPair
			fail := func(err error) {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
			flush := func() {
				if len(batch) > 0 {
					if err := a.Store.SaveTwoWayPairs(ctx, s.def.Name, batch); err != nil {
						fail(err)
					}
					batch = batch[:0]
				}
			}
			for it := range work {
				it.saved = func(p store.TwoWayPair) { batch = append(batch, p) }
				if err := a.settle(ctx, s, it, &mine); err != nil {
					fail(err)
				}
				if len(batch) >= pairBatch {
					flush()
				}
			}
			flush()
			mu.Lock()
			n.Add(mine)
			mu.Unlock()
		}()
	}
	for i, it := range items {
		if i%100 == 0 {
			activity.RecordHeartbeat(ctx, fmt.Sprintf("settling %d of %d changed records", i, len(items)))
		}
		select {
		case work <- it:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// linkSince gives the new items of a phase the pairs their records got
// since the cycle began (an earlier phase linked them: a record an earlier
// attempt created, found again), looked up in one query a side; by a's
// key first.
func (a *Activities) linkSince(ctx context.Context, integration string, items []*item) error {
	for i := range sideOf {
		var keys []string
		for _, it := range items {
			if it.ch[i] != nil && it.pair.ID == 0 {
				keys = append(keys, it.ch[i].Key)
			}
		}
		if len(keys) == 0 {
			continue
		}
		pairs, err := a.Store.TwoWayPairs(ctx, integration, string(sideOf[i]), keys)
		if err != nil {
			return err
		}
		for _, it := range items {
			if it.ch[i] == nil || it.pair.ID != 0 {
				continue
			}
			if p, ok := pairs[it.ch[i].Key]; ok {
				it.pair = p
			}
		}
	}
	return nil
}

// settle resolves one pair, writes what must be written, and records it
// as in sync (or its conflict as parked).
func (a *Activities) settle(ctx context.Context, s *sides, it *item, n *syncstep.TwoWayCounts) error {
	p := it.pair
	base, err := decode(p.Base)
	if err != nil {
		return fmt.Errorf("pair %d: base: %w", p.ID, err)
	}
	keys := [2]string{p.AKey, p.BKey}
	versions := [2]string{p.AVersion, p.BVersion}
	for i, c := range it.ch {
		if c != nil {
			keys[i], versions[i] = c.Key, c.Version
		}
	}
	pr := Pair{Base: base, A: observed(it, base, 0), B: observed(it, base, 1)}
	for i, c := range it.ch {
		if c != nil && c.Invalid != "" {
			return a.parkFailed(ctx, s, p, keys, versions, pr, fmt.Sprintf("could not read record %s of %s: %s", c.Key, sideName(s.def, i), c.Invalid), n)
		}
	}
	res, err := Resolve(pr, s.def.Policy)
	if err != nil { // a custom resolver that failed: a person decides
		res = Outcome{Parked: true, Conflict: conflictOf(pr), Resolution: err.Error()}
	}
	for i, c := range it.ch {
		if c != nil && !slices.Contains(res.Changed, sideOf[i]) {
			n.Unchanged++
			if i == 0 {
				n.UnchangedA++
			}
		}
	}
	if len(res.Changed) == 2 && res.Conflict == nil && p.ID == 0 && pr.A.Has() && pr.B.Has() {
		n.Linked++
	}
	if res.Parked {
		if p.ID == 0 {
			p.AKey, p.BKey = keys[0], keys[1]
			if p, err = a.Store.SaveTwoWayPair(ctx, p); err != nil {
				return err
			}
		}
		n.Conflicts++
		n.Parked++
		_, err := a.Store.RecordConflict(ctx, conflictRow(s.def, p.ID, keys, versions, res.Conflict, store.ConflictParked, res.Resolution, nil))
		return err
	}
	// Before anything is created, the pair is recorded with the keys it
	// will have, so that a retry finds what this attempt created.
	held := [2]*Observed{pr.A, pr.B}
	creates := [2]bool{}
	for _, side := range res.Write {
		i := idx(side)
		softDeleted := held[i] != nil && held[i].Deleted && keys[i] != "" && s.def.sideSpec(i).Postgres != nil && s.def.sideSpec(i).Postgres.DeletedAt != ""
		if held[i].Has() || softDeleted {
			continue // an update (of a soft-deleted row: it comes back)
		}
		creates[i] = true
		keys[i] = ""
		if s.def.sideSpec(i).Postgres != nil {
			keys[i] = derivedKey(s.def.Name, sideOf[1-i], keys[1-i])
		}
		if p.ID == 0 || p.AKey != keys[0] || p.BKey != keys[1] {
			p.AKey, p.BKey = keys[0], keys[1]
			if p, err = a.Store.SaveTwoWayPair(ctx, p); err != nil {
				return err
			}
		}
	}
	for _, side := range res.Write {
		i := idx(side)
		key, expect, idem := keys[i], versions[i], ""
		if creates[i] {
			key, expect, idem = "", "", keys[i]
			if idem == "" {
				// The same create, retried, sends the same key; a later one
				// (the record deleted and made again) another.
				sum := sha256.Sum256(fmt.Appendf(encode(res.Result), "|%s", versions[1-i]))
				idem = fmt.Sprintf("tether-%s-pair-%d-%s-%x", s.def.Name, p.ID, side, sum[:6])
			}
		}
		w, err := s.ep[i].Put(ctx, key, res.Result, expect, idem)
		if errors.Is(err, ErrChanged) {
			n.Deferred++
			return a.keepKeys(ctx, p, keys)
		}
		if failure.IsPermanent(err) {
			return a.parkFailed(ctx, s, p, keys, versions, pr, fmt.Sprintf("could not write to %s: %v", sideName(s.def, i), err), n)
		}
		if err != nil {
			return fmt.Errorf("write %s of pair %d on %s: %w", keys[i], p.ID, sideName(s.def, i), err)
		}
		if creates[i] {
			n.Created++
		}
		keys[i], versions[i] = w.Key, w.Version
		countWrite(n, i)
	}
	for _, side := range slices.Concat(res.Delete, res.Tombstone) {
		i := idx(side)
		if err := s.ep[i].Delete(ctx, keys[i], versions[i]); errors.Is(err, ErrChanged) {
			n.Deferred++
			return a.keepKeys(ctx, p, keys)
		} else if failure.IsPermanent(err) {
			return a.parkFailed(ctx, s, p, keys, versions, pr, fmt.Sprintf("could not delete on %s: %v", sideName(s.def, i), err), n)
		} else if err != nil {
			return fmt.Errorf("delete %s of pair %d on %s: %w", keys[i], p.ID, sideName(s.def, i), err)
		}
		n.Deleted++
		countWrite(n, i)
	}
	if res.Conflict != nil {
		n.Conflicts++
		n.Resolved++
		if _, err := a.Store.RecordConflict(ctx, conflictRow(s.def, p.ID, keys, versions, res.Conflict, store.ConflictResolved, res.Resolution, res.Result)); err != nil {
			return err
		}
	}
	p.AKey, p.BKey, p.AVersion, p.BVersion, p.Base = keys[0], keys[1], versions[0], versions[1], encode(res.Result)
	if p.ID != 0 && it.saved != nil {
		// Saved with others in one statement: lost with a crash, the pair
		// is resolved again from the sides, which now agree.
		it.saved(p)
	} else if p, err = a.Store.SaveTwoWayPair(ctx, p); err != nil {
		return err
	}
	// A conflict parked earlier that the sides have since settled.
	for _, id := range s.parked[p.ID] {
		if _, err := a.Store.SettleConflict(ctx, s.def.Name, id, store.ConflictSuperseded, "the sides changed again: "+res.Resolution, encode(res.Result), ""); err != nil {
			return err
		}
	}
	return nil
}

// derivedKey is the key a record made on side from's key gets on a
// PostgreSQL side: a UUID derived from it, the same on every attempt.
func derivedKey(integration string, from Side, key string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(fmt.Sprintf("tether:%s:%s:%s", integration, from, key))).String()
}

// parkFailed parks a pair a side refused to take (a validation error, a
// permanent failure): nothing is lost, and a person decides, as for a
// conflict (why says what happened).
func (a *Activities) parkFailed(ctx context.Context, s *sides, p store.TwoWayPair, keys, versions [2]string, pr Pair, why string, n *syncstep.TwoWayCounts) error {
	if p.ID == 0 || p.AKey != keys[0] || p.BKey != keys[1] {
		p.AKey, p.BKey = keys[0], keys[1]
		var err error
		if p, err = a.Store.SaveTwoWayPair(ctx, p); err != nil {
			return err
		}
	}
	n.Parked++
	activity.GetLogger(ctx).Warn("a record could not be written; it waits for a person", "pair", p.ID, "why", why)
	_, err := a.Store.RecordConflict(ctx, conflictRow(s.def, p.ID, keys, versions, conflictOf(pr), store.ConflictParked, why, nil))
	return err
}

// keepKeys records a pair's keys when a write was deferred, so that the
// next cycle finds its records.
func (a *Activities) keepKeys(ctx context.Context, p store.TwoWayPair, keys [2]string) error {
	if p.AKey == keys[0] && p.BKey == keys[1] && p.ID != 0 {
		return nil
	}
	p.AKey, p.BKey = keys[0], keys[1]
	_, err := a.Store.SaveTwoWayPair(ctx, p)
	return err
}

func countWrite(n *syncstep.TwoWayCounts, i int) {
	if i == 0 {
		n.WritesA++
	} else {
		n.WritesB++
	}
}

func (d Definition) sideSpec(i int) SideSpec {
	if i == 0 {
		return d.A
	}
	return d.B
}

// conflictOf is the conflict of a pair whose resolution failed.
func conflictOf(pr Pair) *Conflict {
	c := &Conflict{Base: pr.Base}
	if pr.A != nil {
		c.AAt = pr.A.At
	}
	if pr.B != nil {
		c.BAt = pr.B.At
	}
	if pr.A.Has() {
		c.A = pr.A.Record
	} else {
		c.ADeleted = pr.A != nil
	}
	if pr.B.Has() {
		c.B = pr.B.Record
	} else {
		c.BDeleted = pr.B != nil
	}
	if c.A != nil && c.B != nil {
		c.Fields = bothChanged(pr.Base, c.A, c.B)
	}
	return c
}

// conflictRow is c as the conflicts table keeps it.
func conflictRow(d Definition, pairID int64, keys, versions [2]string, c *Conflict, status, resolution string, result Record) store.Conflict {
	return store.Conflict{Integration: d.Name, PairID: pairID, AKey: keys[0], BKey: keys[1],
		Base: encode(c.Base), A: encode(c.A), B: encode(c.B), ADeleted: c.ADeleted, BDeleted: c.BDeleted,
		AVersion: versions[0], BVersion: versions[1], AAt: c.AAt, BAt: c.BAt, Fields: c.Fields,
		Policy: d.Policy.Kind, Status: status, Resolution: resolution, Result: encode(result)}
}

// ResolveConflict applies a person's resolution of a parked conflict:
// both sides are written to the chosen record (each only when it differs,
// each conditional on the version the conflict saw), the pair is recorded
// as in sync, and the conflict as resolved by the Update's sender, who is
// audited. A side changed since the conflict was parked refuses the
// resolution: the next cycle looks at the record again.
func (a *Activities) ResolveConflict(ctx context.Context, in syncstep.ResolveInput) (syncstep.ResolveResult, error) {
	out := syncstep.ResolveResult{Conflict: in.Conflict}
	s, err := a.open(in.Integration)
	if err != nil {
		return out, err
	}
	list, err := a.Store.ListConflicts(ctx, store.ConflictFilter{Integration: in.Integration, ID: in.Conflict})
	if err != nil {
		return out, err
	}
	if len(list) == 0 {
		return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no conflict %d in %s", in.Conflict, in.Integration), TypeNoConflict, nil)
	}
	c := list[0]
	if c.Status != store.ConflictParked {
		return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("conflict %d is %s already (%s)", c.ID, c.Status, c.Resolution), TypeNoConflict, nil)
	}
	result, how, err := ChosenRecord(c, in, s.fields)
	if err != nil {
		return out, temporal.NewNonRetryableApplicationError(err.Error(), TypeBadResolution, nil)
	}
	p, err := a.Store.TwoWayPair(ctx, in.Integration, c.PairID)
	if err != nil {
		return out, err
	}
	keys, versions := [2]string{c.AKey, c.BKey}, [2]string{c.AVersion, c.BVersion}
	held := [2]Record{}
	deleted := [2]bool{c.ADeleted, c.BDeleted}
	for i, raw := range []json.RawMessage{c.A, c.B} {
		if held[i], err = decode(raw); err != nil {
			return out, err
		}
	}
	var writes [2]int
	for i := range s.ep {
		has := held[i] != nil && !deleted[i]
		var err error
		switch {
		case result == nil && has:
			err = s.ep[i].Delete(ctx, keys[i], versions[i])
			if err == nil {
				writes[i]++
			}
		case result != nil && (!has || !equal(held[i], result)):
			key, idem := keys[i], keys[i]
			if !has && s.def.sideSpec(i).HTTP != nil {
				key, idem = "", fmt.Sprintf("tether-%s-conflict-%d-%s", s.def.Name, c.ID, sideOf[i])
			} else if !has && (s.def.sideSpec(i).Postgres.DeletedAt == "" || key == "") {
				key = ""
				if idem == "" {
					idem = derivedKey(s.def.Name, sideOf[1-i], keys[1-i])
				}
			}
			var w Written
			if w, err = s.ep[i].Put(ctx, key, result, versions[i], idem); err == nil {
				keys[i], versions[i] = w.Key, w.Version
				writes[i]++
			}
		}
		if errors.Is(err, ErrChanged) {
			return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("the record changed on %s since conflict %d was detected: the next cycle looks at it again", sideName(s.def, i), c.ID), TypeBadResolution, nil)
		}
		if err != nil {
			return out, err
		}
	}
	by := a.updateSender(ctx, in.UpdateID)
	if by == store.UnknownActor && strings.TrimSpace(in.By) != "" {
		by = syncstep.NamedBy(strings.TrimSpace(in.By))
	}
	p.AKey, p.BKey, p.AVersion, p.BVersion, p.Base = keys[0], keys[1], versions[0], versions[1], encode(result)
	if _, err := a.Store.SaveTwoWayPair(ctx, p); err != nil {
		return out, err
	}
	if _, err := a.Store.SettleConflict(ctx, in.Integration, c.ID, store.ConflictResolved, how, encode(result), by); err != nil {
		return out, err
	}
	info := activity.GetInfo(ctx)
	if err := a.Store.RecordAudit(ctx, store.AuditEntry{Actor: by, Via: "update", Action: store.AuditResolve, Integration: in.Integration,
		Target: info.WorkflowExecution.ID, TargetRun: fmt.Sprintf("conflict-%d", c.ID),
		Details: map[string]any{"conflict": c.ID, "resolution": how}}); err != nil {
		return out, err
	}
	out.Resolution, out.Result, out.ResolvedBy, out.Writes = how, result, by, writes[0]+writes[1]
	a.Metrics.resolved(in.Integration, writes)
	return out, nil
}

// Failure types of a manual resolution.
const (
	TypeNoConflict    = syncstep.TypeNoConflict
	TypeBadResolution = syncstep.TypeBadResolution
)

// ChosenRecord is the record a person's choice makes of conflict c (nil:
// deleted on both), and how it reads in the record; an error says what is
// wrong with the choice. fields are the shared fields.
func ChosenRecord(c store.Conflict, in syncstep.ResolveInput, fields []string) (Record, string, error) {
	a, err := decode(c.A)
	if err != nil {
		return nil, "", err
	}
	b, err := decode(c.B)
	if err != nil {
		return nil, "", err
	}
	base, err := decode(c.Base)
	if err != nil {
		return nil, "", err
	}
	if err := syncstep.CheckChoice(in, fields); err != nil {
		return nil, "", err
	}
	switch in.Choose {
	case syncstep.ChooseA:
		return a, "manual: a", nil
	case syncstep.ChooseB:
		return b, "manual: b", nil
	case syncstep.ChooseMerge:
		obs := func(r Record, del bool) *Observed { return &Observed{Record: r, Deleted: del} }
		res, err := Resolve(Pair{Base: base, A: obs(a, c.ADeleted), B: obs(b, c.BDeleted)}, Policy{Kind: Merge, Fallback: in.Prefer, Deletes: DeleteConflicts})
		if err != nil {
			return nil, "", err
		}
		return res.Result, "manual: merge, " + in.Prefer + " on the fields both changed", nil
	default:
		return maps.Clone(Record(in.Values)), "manual: edited values", nil
	}
}

// updateSender is the Temporal identity that sent the Update id, from the
// workflow's history; "unknown" when it cannot be read.
func (a *Activities) updateSender(ctx context.Context, id string) string {
	if a.History == nil || id == "" {
		return store.UnknownActor
	}
	info := activity.GetInfo(ctx)
	iter := a.History.GetWorkflowHistory(ctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return store.UnknownActor
		}
		if at := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); at != nil && at.GetAcceptedRequest().GetMeta().GetUpdateId() == id {
			if who := at.GetAcceptedRequest().GetMeta().GetIdentity(); who != "" {
				return who
			}
		}
	}
	return store.UnknownActor
}
