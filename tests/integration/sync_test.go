package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// checkContacts compares crm_contacts with the sandbox row by row: every
// valid contact is there with its mapped values, nothing else is.
func checkContacts(t *testing.T, s *stack) {
	t.Helper()
	rows := s.tableRows("crm_contacts")
	invalid := map[int64]bool{}
	for _, id := range s.sandbox.InvalidContactIDs() {
		invalid[id] = true
	}
	want := 0
	for _, c := range s.sandbox.Contacts() {
		if invalid[c.ID] {
			if _, ok := rows[c.ID]; ok {
				t.Errorf("contact %d is schema-invalid but was applied", c.ID)
			}
			continue
		}
		want++
		row, ok := rows[c.ID]
		if !ok {
			t.Errorf("contact %d missing from crm_contacts", c.ID)
			continue
		}
		if got, exp := row["email"], strings.ToLower(strings.TrimSpace(c.Email)); got != exp {
			t.Errorf("contact %d: email %v, want %v", c.ID, got, exp)
		}
		if got := row["score"]; got != float64(c.Score) {
			t.Errorf("contact %d: score %v, want %d", c.ID, got, c.Score)
		}
		if got := row["status"]; got != c.Status {
			t.Errorf("contact %d: status %v, want %s", c.ID, got, c.Status)
		}
		if got, exp := row["full_name"], strings.Join(strings.Fields(c.FirstName+" "+c.LastName), " "); got != exp {
			t.Errorf("contact %d: full_name %v, want %v", c.ID, got, exp)
		}
		gotAt, err := time.Parse(time.RFC3339Nano, fmt.Sprint(row["updated_at"]))
		wantAt, err2 := time.Parse(time.RFC3339Nano, c.UpdatedAt)
		if err != nil || err2 != nil || !gotAt.Equal(wantAt) {
			t.Errorf("contact %d: updated_at %v, want %v", c.ID, row["updated_at"], c.UpdatedAt)
		}
	}
	if len(rows) != want {
		t.Errorf("crm_contacts has %d rows, want %d", len(rows), want)
	}
}

func TestSync_TenThousandContactsRowByRow(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 1, Contacts: 10000}})
	res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	if res.Status != progress.StatusCompleted {
		t.Fatalf("status %q", res.Status)
	}
	if got := res.Counts.Fetched - res.Counts.Skipped; got != 10000 {
		t.Errorf("fetched-skipped = %d, want 10000 (counts %+v)", got, res.Counts)
	}
	if res.Counts.Inserted != 10000 || res.Counts.Invalid != 0 {
		t.Errorf("counts %+v, want 10000 inserted, 0 invalid", res.Counts)
	}
	checkContacts(t, s)
	before := s.tableRows("crm_contacts")

	// A rerun finds nothing new and changes nothing.
	res2 := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	if res2.Counts.Applied() != 0 {
		t.Errorf("rerun applied %d rows, want 0 (counts %+v)", res2.Counts.Applied(), res2.Counts)
	}
	if !reflect.DeepEqual(before, s.tableRows("crm_contacts")) {
		t.Error("rerun changed crm_contacts")
	}

	// A full rerun reads everything and rewrites nothing.
	res3 := s.mustSync(datasync.Input{Integration: "crm-contacts", Full: true})
	if res3.Counts.Applied() != 0 || res3.Counts.Unchanged != 10000 {
		t.Errorf("full rerun counts %+v, want 0 applied and 10000 unchanged", res3.Counts)
	}

	// The run is on record in PostgreSQL.
	runs, err := s.store.ListRuns(t.Context(), "crm-contacts", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[2].Status != progress.StatusCompleted || runs[2].Counts.Inserted != 10000 {
		t.Errorf("runs table: %+v", runs)
	}
}

func TestSync_IncrementalAfterSourceChanged(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 2, Contacts: 3000}})
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	touched := s.sandbox.Touch("contacts", 150)
	added := s.sandbox.Add("contacts", 40)
	res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	if res.Counts.Updated != len(touched) || res.Counts.Inserted != len(added) {
		t.Errorf("incremental run counts %+v, want %d updated and %d inserted", res.Counts, len(touched), len(added))
	}
	if res.Counts.Fetched > len(touched)+len(added)+50 {
		t.Errorf("incremental run fetched %d records for %d changes: it re-read too much", res.Counts.Fetched, len(touched)+len(added))
	}
	checkContacts(t, s)
}

func TestSync_InvalidRecordsQuarantined(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		wantFail bool
	}{
		{name: "3 percent quarantined, run completes", rate: 0.03},
		{name: "10 percent fails the run with counts", rate: 0.10, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 4, Contacts: 5000, Faults: sandbox.Faults{InvalidRate: tt.rate}}})
			res, err := s.sync(datasync.Input{Integration: "crm-contacts"})
			invalid := s.sandbox.InvalidContactIDs()
			if !tt.wantFail {
				if err != nil {
					t.Fatalf("sync: %v", err)
				}
				if res.Counts.Invalid != len(invalid) {
					t.Errorf("invalid count %d, want %d", res.Counts.Invalid, len(invalid))
				}
				checkQuarantinedOnce(t, s, invalid)
				// Every quarantined record carries its payload and at least one error with a pointer or keyword.
				if n := s.count(`SELECT count(*) FROM tether_quarantine WHERE jsonb_array_length(errors) = 0 OR (payload IS NULL AND payload_text IS NULL)`); n != 0 {
					t.Errorf("%d quarantined records without errors or payload", n)
				}
				checkContacts(t, s)
				return
			}
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != failure.TypeInvalidThreshold {
				t.Fatalf("want %s failure, got %v", failure.TypeInvalidThreshold, err)
			}
			if !strings.Contains(err.Error(), "over the integration's threshold of 5.0%") || !strings.Contains(err.Error(), "records invalid") {
				t.Errorf("failure message does not report the counts: %v", err)
			}
			if n := s.count(`SELECT count(*) FROM tether_quarantine`); n == 0 {
				t.Error("nothing quarantined")
			}
		})
	}
}

// checkQuarantinedOnce checks that exactly the invalid contacts are in
// quarantine, each once; the ones served without an id are quarantined
// with an empty key.
func checkQuarantinedOnce(t *testing.T, s *stack, invalid []int64) {
	t.Helper()
	got := s.quarantinedKeys("crm-contacts")
	if len(got) != len(invalid) {
		t.Errorf("%d records quarantined, want %d", len(got), len(invalid))
	}
	isInvalid := map[string]bool{}
	for _, k := range idStrings(invalid) {
		isInvalid[k] = true
	}
	seen := map[string]bool{}
	for _, k := range got {
		if k == "" {
			continue
		}
		if !isInvalid[k] || seen[k] {
			t.Errorf("quarantined key %s: invalid=%v, seen before=%v", k, isInvalid[k], seen[k])
		}
		seen[k] = true
	}
}

func head(s []string) []string {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

func TestSync_WorkerKilledMidSyncLosesAndDuplicatesNothing(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 5, Contacts: 20000, Faults: sandbox.Faults{Latency: 40 * time.Millisecond}}, noWorker: true})
	bin := workerBinary(t)
	logDir := t.TempDir()
	env := s.workerEnv("TETHER_WORKER_GRACEFUL_STOP=1s", "TETHER_LOG_LEVEL=debug")
	w1 := s.startWorkerProcess("worker-1", logDir, env, bin)
	run := s.start(datasync.Input{Integration: "crm-contacts"})

	deadline := time.Now().Add(2 * time.Minute)
	for s.count(`SELECT count(*) FROM tether_applied_batches`) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the kill; worker log:\n%s", w1.logTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	w1.Kill()
	committed := s.count(`SELECT count(*) FROM crm_contacts`)
	if committed == 0 || committed >= 20000 {
		t.Fatalf("kill landed at %d rows; want mid-sync", committed)
	}
	t.Logf("worker killed with %d of 20000 rows committed", committed)

	w2 := s.startWorkerProcess("worker-2", logDir, env, bin)
	res, err := s.wait(run)
	if err != nil {
		t.Fatalf("run after restart: %v\nworker-2 log:\n%s", err, w2.logTail(30))
	}
	if res.Counts.Inserted != 20000 {
		t.Errorf("inserted %d, want exactly 20000 (counts %+v)", res.Counts.Inserted, res.Counts)
	}
	checkContacts(t, s)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestSync_LongRunContinuesAsNewAndCompletes(t *testing.T) {
	smallPages := func(crm config.Connection) []integration.Definition {
		d := integrations.CRMContacts(crm)
		d.BatchSize = 100 // 3,000 records → 30+ pages
		return []integration.Definition{d}
	}
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 6, Contacts: 3000}, defs: smallPages})
	res := s.mustSync(datasync.Input{Integration: "crm-contacts", PagesPerExecution: 12})
	if res.Executions < 3 {
		t.Errorf("the run used %d execution(s); want it to continue as new", res.Executions)
	}
	if res.Counts.Inserted != 3000 {
		t.Errorf("inserted %d, want 3000 (counts %+v)", res.Counts.Inserted, res.Counts)
	}
	checkContacts(t, s)
}

func TestSync_WorkerSIGTERMStopsGracefullyAndTheRunCompletes(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 7, Contacts: 8000, Faults: sandbox.Faults{Latency: 150 * time.Millisecond}}, noWorker: true})
	bin := workerBinary(t)
	logDir := t.TempDir()
	env := s.workerEnv("TETHER_WORKER_GRACEFUL_STOP=10s")
	w1, err := devstack.StartProcess("worker-1", filepath.Join(logDir, "worker-1.log"), env, bin)
	if err != nil {
		t.Fatal(err)
	}
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	deadline := time.Now().Add(time.Minute)
	for s.count(`SELECT count(*) FROM tether_applied_batches`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no progress within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// SIGTERM: the worker stops polling, lets running activities finish,
	// and exits 0 well within its grace period.
	start := time.Now()
	if err := w1.Stop(30 * time.Second); err != nil {
		t.Fatalf("worker did not stop on SIGTERM: %v", err)
	}
	if exited, err := w1.Exited(); !exited || err != nil {
		t.Errorf("worker exit after SIGTERM: exited=%v err=%v (want status 0)", exited, err)
	}
	b, _ := os.ReadFile(filepath.Join(logDir, "worker-1.log"))
	if !strings.Contains(string(b), "worker stopping") {
		t.Errorf("the worker did not log its graceful stop:\n%s", tail(string(b), 20))
	}
	t.Logf("worker stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))

	w2, err := devstack.StartProcess("worker-2", filepath.Join(logDir, "worker-2.log"), env, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w2.Stop(5 * time.Second) })
	res, err := s.wait(run)
	if err != nil {
		t.Fatalf("run after the restart: %v", err)
	}
	if res.Counts.Inserted != 8000 {
		t.Errorf("inserted %d, want 8000", res.Counts.Inserted)
	}
	checkContacts(t, s)
}

func TestSync_EveryPaginationStyleAndAuthKindEndToEnd(t *testing.T) {
	tests := []struct {
		name       string
		pagination httpsource.Pagination
		query      map[string]string
		auth       sandbox.Auth
		crm        config.Connection
	}{
		{name: "offset/limit with API key", pagination: httpsource.Pagination{Style: "offset", OffsetParam: "offset", LimitParam: "limit"},
			query: map[string]string{"pagination": "offset"}, auth: sandbox.Auth{Mode: "api_key", APIKey: "k-123"}, crm: config.Connection{Auth: "api_key", APIKey: "k-123"}},
		{name: "cursor token with OAuth2 client credentials", pagination: httpsource.Pagination{Style: "cursor", CursorParam: "cursor", LimitParam: "limit", NextCursorPath: "next_cursor"},
			query: map[string]string{"pagination": "cursor"}, auth: sandbox.Auth{Mode: "oauth2", ClientID: "tether", ClientSecret: "s3cret"}, crm: config.Connection{Auth: "oauth2", ClientID: "tether", ClientSecret: "s3cret"}},
		{name: "Link headers with bearer token", pagination: httpsource.Pagination{Style: "link", LimitParam: "limit"},
			query: map[string]string{"pagination": "link"}, auth: sandbox.Auth{Mode: "bearer", Token: "t-456"}, crm: config.Connection{Auth: "bearer", Token: "t-456"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defs := func(crm config.Connection) []integration.Definition {
				d := integrations.CRMContacts(crm)
				d.Source.HTTP.Pagination = tt.pagination
				d.Source.HTTP.Query = tt.query
				d.BatchSize = 500
				return []integration.Definition{d}
			}
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 8, Contacts: 2500, Auth: tt.auth}, crm: tt.crm, defs: defs})
			res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
			if res.Counts.Inserted != 2500 {
				t.Errorf("inserted %d, want 2500 (counts %+v)", res.Counts.Inserted, res.Counts)
			}
			checkContacts(t, s)
			// Incremental after changes, through the same style.
			touched := s.sandbox.Touch("contacts", 60)
			res2 := s.mustSync(datasync.Input{Integration: "crm-contacts"})
			if res2.Counts.Updated != len(touched) || res2.Counts.Inserted != 0 {
				t.Errorf("incremental run: counts %+v, want %d updated", res2.Counts, len(touched))
			}
			checkContacts(t, s)
			if tt.auth.Mode == "oauth2" {
				if n := s.sandbox.Stats().TokensIssued; n < 1 || n > 2 {
					t.Errorf("%d OAuth2 tokens issued for two runs; want the token cached", n)
				}
			}
		})
	}
}

func TestSync_UnchangedPagesAreSkippedWith304(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 9, Contacts: 20000}}) // 2,000 companies, 4 pages
	first := s.mustSync(datasync.Input{Integration: "crm-companies"})
	if first.Counts.Inserted != 2000 || first.Counts.NotModified != 0 {
		t.Fatalf("first run counts %+v", first.Counts)
	}
	before := s.sandbox.Stats().NotModified
	second := s.mustSync(datasync.Input{Integration: "crm-companies"})
	if second.Counts.NotModified != first.Counts.Pages || second.Counts.Unchanged != 2000 || second.Counts.Applied() != 0 {
		t.Errorf("second run counts %+v, want every page 304 Not Modified and 2000 unchanged", second.Counts)
	}
	if got := s.sandbox.Stats().NotModified - before; got != first.Counts.Pages {
		t.Errorf("the sandbox answered 304 %d times, want %d", got, first.Counts.Pages)
	}
	// A change on one page makes only that page come back in full.
	touched := s.sandbox.Touch("companies", 1)
	third := s.mustSync(datasync.Input{Integration: "crm-companies"})
	if third.Counts.Updated != 1 || third.Counts.NotModified < first.Counts.Pages-1 {
		t.Errorf("after touching company %v: counts %+v, want 1 updated and the other pages 304", touched, third.Counts)
	}
}

func TestSync_SeveralWorkerProcessesShareOneRun(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 15, Contacts: 12000, Faults: sandbox.Faults{InvalidRate: 0.02}}, noWorker: true})
	bin := workerBinary(t)
	logDir := t.TempDir()
	for i := 1; i <= 3; i++ {
		w, err := devstack.StartProcess(fmt.Sprintf("worker-%d", i), filepath.Join(logDir, fmt.Sprintf("worker-%d.log", i)),
			s.workerEnv("TETHER_WORKER_CACHE_PAGES=2"), bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
	}
	res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	invalid := len(s.sandbox.InvalidContactIDs())
	if res.Counts.Inserted != 12000-invalid || res.Counts.Invalid != invalid {
		t.Errorf("counts %+v, want %d inserted and %d quarantined", res.Counts, 12000-invalid, invalid)
	}
	checkContacts(t, s)
}

// TestSync_FollowPagesReadsRecordsSharingAnUpdatedAtOnce: records that
// share few updated_at values (groups of 700 across pages of 500). Asked
// again "since" every page's last record, an inclusive updated_since reads
// that record's group again each time; with incremental.follow_pages
// (cursor pagination) the read follows the API's next cursor and fetches
// every record exactly once. Both end with the same rows; an incremental
// run after changes still reads only what changed.
func TestSync_FollowPagesReadsRecordsSharingAnUpdatedAtOnce(t *testing.T) {
	const seeded, groups, group = 500, 5, 700
	const total = seeded + groups*group
	fetched := map[bool]int{}
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow_pages=%v", follow), func(t *testing.T) {
			defs := func(crm config.Connection) []integration.Definition {
				d := integrations.CRMContacts(crm)
				d.Source.HTTP.Pagination = httpsource.Pagination{Style: "cursor", CursorParam: "cursor", LimitParam: "limit", NextCursorPath: "next_cursor"}
				d.Source.HTTP.Query = map[string]string{"pagination": "cursor"}
				d.Source.HTTP.Incremental.FollowPages = follow
				d.BatchSize = 500
				return []integration.Definition{d}
			}
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 21, Contacts: seeded}, defs: defs})
			for range groups {
				s.sandbox.Add("contacts", group) // one updated_at for the group
			}
			res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
			if res.Counts.Inserted != total {
				t.Fatalf("inserted %d, want %d (counts %+v)", res.Counts.Inserted, total, res.Counts)
			}
			checkContacts(t, s)
			fetched[follow] = res.Counts.Fetched
			if follow && (res.Counts.Fetched != total || res.Counts.Skipped != 0) {
				t.Errorf("following the pages fetched %d records and skipped %d, want each of the %d once", res.Counts.Fetched, res.Counts.Skipped, total)
			}
			touched := s.sandbox.Touch("contacts", 40)
			again := s.mustSync(datasync.Input{Integration: "crm-contacts"})
			if again.Counts.Updated != len(touched) || again.Counts.Inserted != 0 {
				t.Errorf("incremental run after %d changes: counts %+v", len(touched), again.Counts)
			}
			checkContacts(t, s)
		})
	}
	if fetched[false] <= total {
		t.Errorf("asking since every page's last record fetched %d of %d records: the groups were not read again, so the test shows nothing", fetched[false], total)
	}
	t.Logf("records fetched for %d: %d asking since every page's last record, %d following the pages", total, fetched[false], fetched[true])
}
