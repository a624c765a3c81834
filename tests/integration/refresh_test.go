package integration

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// seedGone inserts n destination rows whose records the source does not
// have (deleted upstream since the last sync), with ids from first on, and
// returns their ids.
func seedGone(t *testing.T, s *stack, table string, first, n int) []int64 {
	t.Helper()
	var q string
	switch table {
	case "crm_contacts":
		q = `INSERT INTO crm_contacts (id, email, full_name, status, score, updated_at)
SELECT g, 'gone-' || g || '@example.com', 'Gone ' || g, 'active', 1, now() FROM generate_series($1::bigint, $2::bigint) g`
	case "crm_companies":
		q = `INSERT INTO crm_companies (id, name, employees, updated_at)
SELECT g, 'Gone ' || g, 1, now() FROM generate_series($1::bigint, $2::bigint) g`
	default:
		t.Fatalf("seedGone: no seed for %s", table)
	}
	if _, err := s.schema.DB.Exec(q, first, first+n-1); err != nil {
		t.Fatalf("seed %d rows the source does not have into %s: %v", n, table, err)
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(first + i)
	}
	return ids
}

// checkCompanies compares crm_companies with the sandbox row by row: every
// company is there with its mapped values, nothing else is.
func checkCompanies(t *testing.T, s *stack) {
	t.Helper()
	rows := companyRows(s)
	companies := s.sandbox.Companies()
	for _, c := range companies {
		row, ok := rows[c.ID]
		if !ok {
			t.Errorf("company %d missing from crm_companies", c.ID)
			continue
		}
		if got, want := row["name"], strings.Join(strings.Fields(c.Name), " "); got != want {
			t.Errorf("company %d: name %v, want %v", c.ID, got, want)
		}
		if got := row["employees"]; got != float64(c.Employees) {
			t.Errorf("company %d: employees %v, want %d", c.ID, got, c.Employees)
		}
		gotAt, err := time.Parse(time.RFC3339Nano, fmt.Sprint(row["updated_at"]))
		wantAt, err2 := time.Parse(time.RFC3339Nano, c.UpdatedAt)
		if err != nil || err2 != nil || !gotAt.Equal(wantAt) {
			t.Errorf("company %d: updated_at %v, want %v", c.ID, row["updated_at"], c.UpdatedAt)
		}
	}
	if len(rows) != len(companies) {
		t.Errorf("crm_companies has %d rows, want %d", len(rows), len(companies))
	}
}

// checkRefreshLeftoversGone checks that no run keeps seen keys or
// before-images once the runs ended.
func checkRefreshLeftoversGone(t *testing.T, s *stack) {
	t.Helper()
	if n := s.count(`SELECT count(*) FROM tether_seen_keys`); n != 0 {
		t.Errorf("%d seen keys left behind after the runs ended", n)
	}
	if n := s.count(`SELECT count(*) FROM tether_before_images`); n != 0 {
		t.Errorf("%d before-images left behind after the runs ended", n)
	}
}

// TestRefresh_MakesTheDestinationEqualToTheSource: rows the source no
// longer has are deleted, changed and new records applied; a second
// refresh changes nothing. For an incremental integration (crm-contacts)
// and for a full-read, atomic one with ETags (crm-companies: the refresh
// must not take pages answered 304 for unseen rows).
func TestRefresh_MakesTheDestinationEqualToTheSource(t *testing.T) {
	tests := []struct {
		name, integration, table, resource string
		touch, add, gone                   int
		check                              func(*testing.T, *stack)
	}{
		{name: "incremental contacts", integration: "crm-contacts", table: "crm_contacts", resource: sandbox.ResourceContacts,
			touch: 120, add: 40, gone: 50, check: checkContacts},
		{name: "atomic companies read whole with ETags", integration: "crm-companies", table: "crm_companies", resource: sandbox.ResourceCompanies,
			touch: 30, add: 10, gone: 20, check: checkCompanies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 31, Contacts: 5000}})
			s.mustSync(datasync.Input{Integration: tt.integration})
			gone := seedGone(t, s, tt.table, 900001, tt.gone)
			touched := s.sandbox.Touch(tt.resource, tt.touch)
			added := s.sandbox.Add(tt.resource, tt.add)
			before := s.tableRows(tt.table)

			run := s.start(datasync.Input{Integration: tt.integration, Refresh: true})
			if !strings.Contains(run.GetID(), "/refresh/") {
				t.Errorf("workflow id %q does not say it is a refresh", run.GetID())
			}
			res, err := s.wait(run)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if res.Status != progress.StatusCompleted {
				t.Fatalf("refresh status %q", res.Status)
			}
			c := res.Counts
			if c.Deleted != len(gone) || c.Inserted != len(added) || c.Updated != len(touched) || c.NotModified != 0 {
				t.Errorf("refresh counts %+v, want %d deleted, %d inserted, %d updated, no page not modified",
					c, len(gone), len(added), len(touched))
			}
			tt.check(t, s)
			after := s.tableRows(tt.table)
			for _, id := range gone {
				if _, ok := after[id]; ok {
					t.Errorf("row %d, gone from the source, is still in %s", id, tt.table)
				}
			}
			// Every row the source still has and the refresh did not
			// change is exactly as it was.
			changed := map[int64]bool{}
			for _, id := range touched {
				changed[id] = true
			}
			for id, row := range before {
				if _, ok := after[id]; ok && !changed[id] && !reflect.DeepEqual(row, after[id]) {
					t.Errorf("row %d changed although its record did not: %v -> %v", id, row, after[id])
				}
			}
			runs, err := s.store.ListRuns(context.Background(), tt.integration, 1)
			if err != nil || len(runs) != 1 || runs[0].Kind != "refresh" || runs[0].Counts.Deleted != len(gone) {
				t.Errorf("runs table: %+v (err %v), want the refresh with %d deleted", runs, err, len(gone))
			}

			// A second refresh finds nothing to write or delete.
			res2 := s.mustSync(datasync.Input{Integration: tt.integration, Refresh: true})
			if res2.Counts.Deleted != 0 || res2.Counts.Applied() != 0 || res2.Counts.Unchanged == 0 {
				t.Errorf("second refresh counts %+v, want nothing deleted or applied", res2.Counts)
			}
			if !reflect.DeepEqual(after, s.tableRows(tt.table)) {
				t.Errorf("the second refresh changed %s", tt.table)
			}
			checkRefreshLeftoversGone(t, s)
		})
	}
}

// TestRefresh_QuarantinedRecordsKeepTheirRows: a record that became
// invalid in the source is quarantined by the refresh, and its row stays
// as it was (the source still has the record); a record served without its
// key cannot be matched to a row, so that row goes like a deleted one.
func TestRefresh_QuarantinedRecordsKeepTheirRows(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 32, Contacts: 3000}})
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	before := s.tableRows("crm_contacts")
	gone := seedGone(t, s, "crm_contacts", 800001, 10)
	s.sandbox.SetFaults(sandbox.Faults{InvalidRate: 0.03})

	res, err := s.sync(datasync.Input{Integration: "crm-contacts", Refresh: true})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	runID := s.lastRunID("crm-contacts")
	keyed, keyless := map[int64]bool{}, map[int64]bool{}
	for _, c := range s.sandbox.Contacts() {
		switch c.Defect {
		case sandbox.DefectNone:
		case sandbox.DefectMissingID:
			keyless[c.ID] = true
		default:
			keyed[c.ID] = true
		}
	}
	if len(keyed) == 0 || len(keyless) == 0 {
		t.Fatalf("the sandbox made %d keyed and %d keyless invalid records; the test needs both", len(keyed), len(keyless))
	}
	if res.Counts.Invalid != len(keyed)+len(keyless) {
		t.Errorf("refresh quarantined %d records, want %d", res.Counts.Invalid, len(keyed)+len(keyless))
	}
	if n := s.count(`SELECT count(*) FROM tether_quarantine WHERE run_id = $1 AND record_key <> ''`, runID); n != len(keyed) {
		t.Errorf("%d records quarantined by the refresh with their key, want %d", n, len(keyed))
	}
	if want := len(gone) + len(keyless); res.Counts.Deleted != want {
		t.Errorf("refresh deleted %d rows, want %d (%d gone, %d keyless)", res.Counts.Deleted, want, len(gone), len(keyless))
	}
	after := s.tableRows("crm_contacts")
	for id := range keyed {
		row, ok := after[id]
		if !ok {
			t.Errorf("contact %d, quarantined by the refresh, lost its row", id)
			continue
		}
		if !reflect.DeepEqual(row, before[id]) {
			t.Errorf("contact %d, quarantined, had its row changed: %v -> %v", id, before[id], row)
		}
	}
	for id := range keyless {
		if _, ok := after[id]; ok {
			t.Errorf("contact %d, served without its key, still has its row", id)
		}
	}
	for _, id := range gone {
		if _, ok := after[id]; ok {
			t.Errorf("row %d, gone from the source, is still there", id)
		}
	}
	valid := 0
	for _, c := range s.sandbox.Contacts() {
		if c.Defect != sandbox.DefectNone {
			continue
		}
		valid++
		if !reflect.DeepEqual(after[c.ID], before[c.ID]) {
			t.Errorf("contact %d, valid and unchanged, has row %v, want %v", c.ID, after[c.ID], before[c.ID])
		}
	}
	if len(after) != valid+len(keyed) {
		t.Errorf("crm_contacts has %d rows, want %d valid and %d quarantined", len(after), valid, len(keyed))
	}
	checkRefreshLeftoversGone(t, s)
}

// TestRefresh_ReadersNeverSeeAHalfLoadedTable reads the destination over
// and over while a refresh of thousands of records runs: every row the
// source still has is always there, and the rows the source no longer has
// are all there or all gone (one transaction), never some of them.
func TestRefresh_ReadersNeverSeeAHalfLoadedTable(t *testing.T) {
	smallPages := contactsInPagesOf(250) // 6,000 records: 24 pages
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 33, Contacts: 6000}, defs: smallPages})
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	stay := map[int64]bool{}
	for id := range s.tableRows("crm_contacts") {
		stay[id] = true
	}
	gone := seedGone(t, s, "crm_contacts", 700001, 40)
	s.sandbox.Touch(sandbox.ResourceContacts, 500)
	s.sandbox.SetFaults(sandbox.Faults{Latency: 30 * time.Millisecond})

	// The reader stops by itself after maxReads, when the refresh ended,
	// or after ten violations.
	var (
		done            atomic.Bool
		reads, goneSeen int
		violations      []string
		sawAll, sawNone bool
		readErr         error
		finished        = make(chan struct{})
		maxReads        = 20000
		goneList        = gone
	)
	go func() {
		defer close(finished)
		for reads < maxReads && !done.Load() && len(violations) < 10 {
			rows, err := s.schema.DB.Query(`SELECT id FROM crm_contacts`)
			if err != nil {
				readErr = err
				return
			}
			present := make(map[int64]bool, len(stay)+len(goneList))
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					readErr = err
					rows.Close()
					return
				}
				present[id] = true
			}
			rows.Close()
			reads++
			missing := 0
			for id := range stay {
				if !present[id] {
					missing++
				}
			}
			if missing > 0 {
				violations = append(violations, fmt.Sprintf("read %d: %d rows the source still has were missing", reads, missing))
			}
			goneSeen = 0
			for _, id := range goneList {
				if present[id] {
					goneSeen++
				}
			}
			switch {
			case goneSeen == len(goneList):
				if sawNone {
					violations = append(violations, fmt.Sprintf("read %d: deleted rows came back", reads))
				}
				sawAll = true
			case goneSeen == 0:
				sawNone = true
			default:
				violations = append(violations, fmt.Sprintf("read %d: %d of the %d rows gone from the source were deleted: a half-done sweep", reads, len(goneList)-goneSeen, len(goneList)))
			}
		}
	}()
	res, err := s.sync(datasync.Input{Integration: "crm-contacts", Refresh: true})
	done.Store(true)
	<-finished
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if readErr != nil {
		t.Fatalf("reader: %v", readErr)
	}
	for _, v := range violations {
		t.Error(v)
	}
	if !sawAll {
		t.Errorf("the reader never saw the table before the sweep (%d reads): the test proved nothing", reads)
	}
	if res.Counts.Deleted != len(gone) {
		t.Errorf("refresh deleted %d rows, want %d", res.Counts.Deleted, len(gone))
	}
	t.Logf("%d reads during the refresh (%d pages)", reads, res.Counts.Pages)
	checkContacts(t, s)
}

// TestRefresh_WorkerRestartedMidRefreshResumes: the worker is replaced
// while a refresh reads; the run goes on from where it was (pages are not
// read again, beyond the few in flight) and ends exact.
func TestRefresh_WorkerRestartedMidRefreshResumes(t *testing.T) {
	smallPages := contactsInPagesOf(250) // 10,000 records: 40 pages
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 34, Contacts: 10000}, defs: smallPages})
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	gone := seedGone(t, s, "crm_contacts", 600001, 25)
	touched := s.sandbox.Touch(sandbox.ResourceContacts, 300)
	s.sandbox.SetFaults(sandbox.Faults{Latency: 40 * time.Millisecond})
	requestsBefore := s.sandbox.Stats().Total

	run := s.start(datasync.Input{Integration: "crm-contacts", Refresh: true})
	deadline := time.Now().Add(2 * time.Minute)
	for s.count(`SELECT count(*) FROM tether_applied_batches`) < 8 {
		if time.Now().After(deadline) {
			t.Fatal("the refresh applied fewer than 8 batches in 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.restartWorker(s.defs, nil)
	applied := s.count(`SELECT count(*) FROM tether_applied_batches`)
	if applied >= 40 {
		t.Fatalf("the restart landed after %d batches; want it mid-refresh", applied)
	}
	t.Logf("worker restarted after %d of 40 batches", applied)

	res, err := s.wait(run)
	if err != nil {
		t.Fatalf("refresh after the restart: %v", err)
	}
	requests := s.sandbox.Stats().Total - requestsBefore
	if got := res.Counts.Fetched - res.Counts.Skipped; got != 10000 {
		t.Errorf("the refresh took %d records for the source's 10000 (counts %+v): it read some twice", got, res.Counts)
	}
	if requests >= res.Counts.Pages*3/2 {
		t.Errorf("the sandbox answered %d page requests for a %d-page refresh: pages were read again after the restart", requests, res.Counts.Pages)
	}
	t.Logf("%d page requests for %d pages", requests, res.Counts.Pages)
	if res.Counts.Deleted != len(gone) || res.Counts.Updated != len(touched) || res.Counts.Inserted != 0 {
		t.Errorf("refresh counts %+v, want %d deleted, %d updated, 0 inserted", res.Counts, len(gone), len(touched))
	}
	checkContacts(t, s)
	checkRefreshLeftoversGone(t, s)
}

// TestRefresh_AtomicRefreshThatFailsInTheSweepIsCompensated: the sweep of
// an atomic refresh fails after its DELETE ran (a trigger refuses it), or
// the run is cancelled while the sweep runs: the whole refresh is undone,
// deleted, changed and new rows alike, and a later refresh succeeds.
func TestRefresh_AtomicRefreshThatFailsInTheSweepIsCompensated(t *testing.T) {
	tests := []struct {
		name    string
		trigger string // what an AFTER DELETE statement trigger on crm_companies does in the sweep
		cancel  bool
	}{
		{
			name:    "sweep refused after deleting",
			trigger: `RAISE EXCEPTION 'deleting companies is not allowed now' USING ERRCODE = '42501';`,
		},
		{
			name:    "cancelled during the sweep",
			trigger: `PERFORM pg_sleep(60);`,
			cancel:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 35, Contacts: 20000}}) // 2,000 companies
			s.mustSync(datasync.Input{Integration: "crm-companies"})
			seedGone(t, s, "crm_companies", 500001, 15)
			s.sandbox.Touch(sandbox.ResourceCompanies, 100)
			s.sandbox.Add(sandbox.ResourceCompanies, 20)
			before := companyRows(s)
			// Only the sweep's statement reads the seen keys: the
			// compensation's deletes pass.
			if _, err := s.schema.DB.Exec(`CREATE FUNCTION refuse_sweep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
IF current_query() LIKE '%tether_seen_keys%' THEN ` + tt.trigger + ` END IF; RETURN NULL; END $$;
CREATE TRIGGER refuse_sweep AFTER DELETE ON crm_companies FOR EACH STATEMENT EXECUTE FUNCTION refuse_sweep();`); err != nil {
				t.Fatal(err)
			}

			run := s.start(datasync.Input{Integration: "crm-companies", Refresh: true})
			if tt.cancel {
				deadline := time.Now().Add(2 * time.Minute)
				for queryProgress(t, s, run.GetID()).Step != "SweepRefresh" ||
					s.count(`SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%DELETE FROM "crm_companies"%'`) == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the refresh did not reach its sweep within 2 minutes")
					}
					time.Sleep(50 * time.Millisecond)
				}
				if err := s.client.CancelWorkflow(context.Background(), run.GetID(), ""); err != nil {
					t.Fatal(err)
				}
			}
			res, err := s.wait(run)
			var appErr *temporal.ApplicationError
			var canceled *temporal.CanceledError
			switch {
			case tt.cancel && !errors.As(err, &canceled):
				t.Fatalf("want the refresh cancelled, got %v", err)
			case !tt.cancel && (!errors.As(err, &appErr) || appErr.Type() != failure.TypeSinkSQL ||
				!strings.Contains(err.Error(), "SweepRefresh failed") || !strings.Contains(err.Error(), "deleting companies is not allowed now")):
				t.Fatalf("want a %s failure of SweepRefresh naming the trigger's refusal, got %v", failure.TypeSinkSQL, err)
			}
			if res.Status != "" && res.Status != progress.StatusCompensated {
				t.Errorf("status %q, want %q", res.Status, progress.StatusCompensated)
			}
			if after := companyRows(s); !reflect.DeepEqual(before, after) {
				t.Errorf("crm_companies not restored: %d rows before the refresh, %d after", len(before), len(after))
			}
			runs, err := s.store.ListRuns(context.Background(), "crm-companies", 1)
			if err != nil || len(runs) != 1 || runs[0].Status != progress.StatusCompensated {
				t.Errorf("last run on record: %+v (err %v), want it compensated", runs, err)
			}
			checkRefreshLeftoversGone(t, s)

			if _, err := s.schema.DB.Exec(`DROP TRIGGER refuse_sweep ON crm_companies`); err != nil {
				t.Fatal(err)
			}
			res2 := s.mustSync(datasync.Input{Integration: "crm-companies", Refresh: true})
			if res2.Counts.Deleted != 15 || res2.Counts.Inserted != 20 || res2.Counts.Updated != 100 {
				t.Errorf("refresh after the repair: counts %+v, want 15 deleted, 20 inserted, 100 updated", res2.Counts)
			}
			checkCompanies(t, s)
		})
	}
}

// contactsInPagesOf is the crm-contacts integration reading pages of n.
func contactsInPagesOf(n int) func(config.Connection) []integration.Definition {
	return func(crm config.Connection) []integration.Definition {
		d := integrations.CRMContacts(crm)
		d.BatchSize = n
		return []integration.Definition{d}
	}
}

// TestRefresh_WorkerProcessKilledMidRefreshResumes: a worker process is
// killed (SIGKILL) while a refresh that continues as new every 3 pages
// reads; another worker finishes it from where it was, and the sweep
// deletes exactly the rows the source lost.
func TestRefresh_WorkerProcessKilledMidRefreshResumes(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 35, Contacts: 12000}, noWorker: true})
	bin := workerBinary(t)
	logDir := t.TempDir()
	env := s.workerEnv("TETHER_WORKER_GRACEFUL_STOP=1s")
	w1 := s.startWorkerProcess("worker-1", logDir, env, bin)
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	gone := seedGone(t, s, "crm_contacts", 700001, 40)
	s.sandbox.SetFaults(sandbox.Faults{Latency: 150 * time.Millisecond})
	requestsBefore := s.sandbox.Stats().Total
	batchesBefore := s.count(`SELECT count(*) FROM tether_applied_batches`)

	run := s.start(datasync.Input{Integration: "crm-contacts", Refresh: true, PagesPerExecution: 3})
	deadline := time.Now().Add(2 * time.Minute)
	for s.count(`SELECT count(*) FROM tether_applied_batches`) < batchesBefore+4 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the kill; worker log:\n%s", w1.logTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	w1.Kill()
	if n := s.count(`SELECT count(*) FROM crm_contacts WHERE id >= 700001`); n != len(gone) {
		t.Fatalf("%d of the %d rows the source lost are gone before the read ended", len(gone)-n, len(gone))
	}
	w2 := s.startWorkerProcess("worker-2", logDir, env, bin)
	res, err := s.wait(run)
	if err != nil {
		t.Fatalf("refresh after the kill: %v\nworker-2 log:\n%s", err, w2.logTail(30))
	}
	if res.Executions < 3 {
		t.Errorf("the refresh used %d execution(s); want it to continue as new", res.Executions)
	}
	requests := s.sandbox.Stats().Total - requestsBefore
	if requests >= res.Counts.Pages*3/2 {
		t.Errorf("%d page requests for a %d-page refresh: it started over after the kill", requests, res.Counts.Pages)
	}
	if res.Counts.Deleted != len(gone) || res.Counts.Inserted != 0 {
		t.Errorf("refresh counts %+v, want %d deleted and nothing inserted", res.Counts, len(gone))
	}
	t.Logf("%d page requests for %d pages in %d executions", requests, res.Counts.Pages, res.Executions)
	checkContacts(t, s)
	checkRefreshLeftoversGone(t, s)
}
