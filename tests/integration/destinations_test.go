package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// validContacts returns the sandbox's schema-valid contacts by id.
func validContacts(s *stack) map[int64]sandbox.Contact {
	bad := map[int64]bool{}
	for _, id := range s.sandbox.InvalidContactIDs() {
		bad[id] = true
	}
	out := map[int64]sandbox.Contact{}
	for _, c := range s.sandbox.Contacts() {
		if !bad[c.ID] {
			out[c.ID] = c
		}
	}
	return out
}

// customersByRef returns the billing API's customers by external_ref; a
// second customer for one ref is a test failure.
func customersByRef(t *testing.T, s *stack) map[string]sandbox.Customer {
	t.Helper()
	out := map[string]sandbox.Customer{}
	for _, c := range s.sandbox.Customers() {
		if prev, dup := out[c.ExternalRef]; dup {
			t.Errorf("contact %s has two customers: %s and %s", c.ExternalRef, prev.ID, c.ID)
		}
		out[c.ExternalRef] = c
	}
	return out
}

// identities reads an identity map: record key → external id.
func identities(t *testing.T, s *stack, namespace string) map[string]string {
	t.Helper()
	rows, err := s.schema.DB.Query(`SELECT record_key, external_id FROM tether_identities WHERE namespace = $1`, namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, id string
		if err := rows.Scan(&k, &id); err != nil {
			t.Fatal(err)
		}
		out[k] = id
	}
	return out
}

// checkCustomers checks, contact by contact, that every valid contact is
// one customer with its data, and that the identity map names it; a
// contact whose email another contact has is quarantined as a conflict
// instead (the API keeps emails unique).
func checkCustomers(t *testing.T, s *stack, integrationName string) {
	t.Helper()
	byRef := customersByRef(t, s)
	ids := identities(t, s, integrations.BillingCustomersIdentity)
	quarantined := map[string]bool{}
	for _, k := range s.quarantinedKeys(integrationName) {
		quarantined[k] = true
	}
	for id, c := range validContacts(s) {
		ref := fmt.Sprint(id)
		cu, ok := byRef[ref]
		if !ok {
			if !quarantined[ref] {
				t.Errorf("contact %d is neither a customer nor in quarantine", id)
			}
			continue
		}
		if want := strings.ToLower(strings.TrimSpace(c.Email)); cu.Email != want {
			t.Errorf("customer of contact %d: email %q, want %q", id, cu.Email, want)
		}
		if want := strings.Join(strings.Fields(c.FirstName+" "+c.LastName), " "); cu.Name != want {
			t.Errorf("customer of contact %d: name %q, want %q", id, cu.Name, want)
		}
		if got := string(cu.Extra["lead_score"]); got != fmt.Sprint(c.Score) {
			t.Errorf("customer of contact %d: lead_score %s, want %d", id, got, c.Score)
		}
		if ids[ref] != cu.ID {
			t.Errorf("identity map: contact %d → %q, want customer %s", id, ids[ref], cu.ID)
		}
	}
	if len(ids) != len(byRef) {
		t.Errorf("identity map holds %d customers, the API %d", len(ids), len(byRef))
	}
}

func TestAPIToAPI_ContactsBecomeBillingCustomersExactlyOnce(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 41, Contacts: 400, Faults: sandbox.Faults{
		InvalidRate: 0.03,
		// Writes fail now and then, and some are committed but answered
		// 500: retries must not create a second customer.
		Writes: sandbox.WriteFaults{Resource: sandbox.ResourceCustomers, FailEvery: 13, LostResponseEvery: 7},
	}}})
	first := s.mustSync(datasync.Input{Integration: "crm-billing-customers"})
	if first.Status != "Completed" || first.Counts.Inserted == 0 {
		t.Fatalf("first run: %+v", first)
	}
	checkCustomers(t, s, "crm-billing-customers")
	if st := s.sandbox.WriteStats(); st.LostResponses == 0 || st.Injected == 0 {
		t.Errorf("the faults never fired: %+v", st)
	}
	created := len(s.sandbox.Customers())
	if first.Counts.Inserted != created {
		t.Errorf("run counted %d created, the API holds %d customers", first.Counts.Inserted, created)
	}

	// Nothing changed in the CRM: nothing is sent.
	before := s.sandbox.WriteStats().Total
	second := s.mustSync(datasync.Input{Integration: "crm-billing-customers", Full: true})
	if second.Counts.Applied() != 0 || second.Counts.Unchanged == 0 {
		t.Errorf("a full rerun with nothing changed: %+v", second.Counts)
	}
	if after := s.sandbox.WriteStats().Total; after != before {
		t.Errorf("a rerun with nothing changed made %d writes", after-before)
	}

	// Changed contacts update their customers in place, under the same ids.
	ids := identities(t, s, integrations.BillingCustomersIdentity)
	s.sandbox.SetFaults(sandbox.Faults{InvalidRate: 0.03}) // the write faults stop
	touched := s.sandbox.Touch("contacts", 60)
	third := s.mustSync(datasync.Input{Integration: "crm-billing-customers"})
	if third.Counts.Inserted != 0 || third.Counts.Updated == 0 {
		t.Errorf("third run after touching %d contacts: %+v", len(touched), third.Counts)
	}
	checkCustomers(t, s, "crm-billing-customers")
	after := identities(t, s, integrations.BillingCustomersIdentity)
	for k, id := range ids {
		if after[k] != id {
			t.Errorf("contact %s moved from customer %s to %s", k, id, after[k])
		}
	}
	if n := len(s.sandbox.Customers()); n != created {
		t.Errorf("updates changed the number of customers from %d to %d", created, n)
	}
}

func TestPostgresToAPI_TableRowsBecomeCustomersSharingTheIdentityMap(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 42, Contacts: 300, Faults: sandbox.Faults{InvalidRate: 0.03}}})
	// crm-contacts fills crm_contacts; pg-contacts-billing reads it.
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	res := s.mustSync(datasync.Input{Integration: "pg-contacts-billing"})
	valid := len(validContacts(s))
	if res.Counts.Fetched != valid || res.Counts.Inserted+res.Counts.Invalid != valid {
		t.Fatalf("pg-contacts-billing read %d rows of %d and created %d (+%d quarantined)", res.Counts.Fetched, valid, res.Counts.Inserted, res.Counts.Invalid)
	}
	checkCustomers(t, s, "pg-contacts-billing")

	// The API-to-API integration sends the same contacts: the shared
	// identity map knows them all, unchanged, so it writes nothing.
	before := s.sandbox.WriteStats().Total
	api := s.mustSync(datasync.Input{Integration: "crm-billing-customers"})
	if api.Counts.Inserted != 0 || api.Counts.Updated != 0 {
		t.Errorf("crm-billing-customers after pg-contacts-billing: %+v, want every contact unchanged", api.Counts)
	}
	if after := s.sandbox.WriteStats().Total; after != before {
		t.Errorf("%d writes for contacts the identity map already had", after-before)
	}

	// A row changed in PostgreSQL updates its customer.
	if _, err := s.schema.DB.Exec(`UPDATE crm_contacts SET full_name = 'Renamed In Postgres', updated_at = now() WHERE id = (SELECT min(id) FROM crm_contacts)`); err != nil {
		t.Fatal(err)
	}
	upd := s.mustSync(datasync.Input{Integration: "pg-contacts-billing"})
	if upd.Counts.Updated != 1 || upd.Counts.Inserted != 0 {
		t.Errorf("after one row changed: %+v", upd.Counts)
	}
	var minID int64
	if err := s.schema.DB.QueryRow(`SELECT min(id) FROM crm_contacts`).Scan(&minID); err != nil {
		t.Fatal(err)
	}
	if c := customersByRef(t, s)[fmt.Sprint(minID)]; c.Name != "Renamed In Postgres" {
		t.Errorf("customer of contact %d is named %q after the update", minID, c.Name)
	}
}

// bodyFault answers 401 to writes to path whose JSON body contains needle
// (and not "reversal_of"), while armed.
type bodyFault struct {
	next   http.RoundTripper
	path   string
	needle string
	armed  atomic.Bool
	fired  atomic.Int64
}

func (f *bodyFault) RoundTrip(req *http.Request) (*http.Response, error) {
	if !f.armed.Load() || req.Body == nil || !strings.HasPrefix(req.URL.Path, f.path) {
		return f.next.RoundTrip(req)
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	if bytes.Contains(b, []byte(f.needle)) && !bytes.Contains(b, []byte(`"reversal_of"`)) {
		f.fired.Add(1)
		return &http.Response{StatusCode: http.StatusUnauthorized, Status: "401 Unauthorized", Request: req,
			Header: http.Header{"Content-Type": {"application/json"}},
			Body:   io.NopCloser(strings.NewReader(`{"error":{"message":"credentials revoked (injected by the test)"}}`))}, nil
	}
	return f.next.RoundTrip(req)
}

// sagaState is every system customer-onboarding writes.
type sagaState struct {
	customers  map[string]string // id → content (email, name, ref, extras)
	links      map[int64]map[string]any
	identities map[string]string
	checkpoint string
}

func snapshotSaga(t *testing.T, s *stack) sagaState {
	t.Helper()
	st := sagaState{customers: map[string]string{}, identities: map[string]string{}}
	for _, c := range s.sandbox.Customers() {
		extra, _ := json.Marshal(c.Extra)
		st.customers[c.ID] = fmt.Sprintf("%s|%s|%s|%s", c.Email, c.Name, c.ExternalRef, extra)
	}
	if s.count(`SELECT count(*) FROM pg_tables WHERE tablename = 'customer_links' AND schemaname = current_schema()`) > 0 {
		rows, err := s.schema.DB.Query(`SELECT contact_id, to_jsonb(l) FROM customer_links l`)
		if err != nil {
			t.Fatal(err)
		}
		st.links = map[int64]map[string]any{}
		for rows.Next() {
			var id int64
			var raw []byte
			if err := rows.Scan(&id, &raw); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			st.links[id] = m
		}
		rows.Close()
	}
	for _, ns := range []string{"customer-onboarding/billing", "customer-onboarding/notify"} {
		for k, v := range identities(t, s, ns) {
			st.identities[ns+"|"+k] = v
		}
	}
	// No checkpoint yet reads from the initial cursor, as a rolled-back one does.
	_ = s.schema.DB.QueryRow(`SELECT coalesce((SELECT checkpoint::text FROM tether_checkpoints WHERE integration = 'customer-onboarding'),
		'{"cursor": "1970-01-01T00:00:00Z"}')`).Scan(&st.checkpoint)
	return st
}

func diffSaga(t *testing.T, before, after sagaState) {
	t.Helper()
	for id, c := range before.customers {
		if after.customers[id] != c {
			t.Errorf("customer %s: %q before the run, %q after compensation", id, c, after.customers[id])
		}
	}
	for id, c := range after.customers {
		if _, ok := before.customers[id]; !ok {
			t.Errorf("customer %s (%s) was created by the failed run and not deleted", id, c)
		}
	}
	if len(before.links) != len(after.links) {
		t.Errorf("customer_links: %d rows before, %d after", len(before.links), len(after.links))
	}
	for id, row := range before.links {
		a, _ := json.Marshal(row)
		b, _ := json.Marshal(after.links[id])
		if !bytes.Equal(a, b) {
			t.Errorf("link of contact %d: %s before, %s after", id, a, b)
		}
	}
	if len(before.identities) != len(after.identities) {
		t.Errorf("identity maps: %d entries before, %d after", len(before.identities), len(after.identities))
	}
	for k, v := range before.identities {
		if after.identities[k] != v {
			t.Errorf("identity %s: %q before, %q after", k, v, after.identities[k])
		}
	}
	if before.checkpoint != after.checkpoint {
		t.Errorf("checkpoint %s before, %s after", before.checkpoint, after.checkpoint)
	}
}

// notificationsSince counts the notifications posted after the first n,
// and the reversals among them by the id they reverse.
func notificationsSince(t *testing.T, s *stack, n int) (sent int, reversed map[string]int) {
	t.Helper()
	reversed = map[string]int{}
	for _, raw := range s.sandbox.Notifications()[n:] {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if r, ok := m["reversal_of"].(string); ok {
			reversed[r]++
			continue
		}
		sent++
	}
	return sent, reversed
}

func TestSaga_ThreeDestinations_FailureAtEachStepPutsEverySystemBack(t *testing.T) {
	steps := []struct {
		step string
		arm  func(s *stack, victim int64, fault *bodyFault)
	}{
		{"billing", func(s *stack, victim int64, f *bodyFault) {
			f.path, f.needle = "/v1/customers", fmt.Sprintf(`"external_ref":"%d"`, victim)
			f.armed.Store(true)
		}},
		{"links", func(s *stack, victim int64, f *bodyFault) {
			// PostgreSQL refuses the batch holding the victim's link.
			if _, err := s.schema.DB.Exec(fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS customer_links (contact_id bigint PRIMARY KEY, billing_customer_id text NOT NULL,
    email text NOT NULL, updated_at timestamptz);
CREATE FUNCTION refuse_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.contact_id = %d THEN RAISE EXCEPTION 'links are frozen (injected by the test)'; END IF; RETURN NEW; END $$;
CREATE TRIGGER refuse_link BEFORE INSERT OR UPDATE ON customer_links FOR EACH ROW EXECUTE FUNCTION refuse_link();`, victim)); err != nil {
				s.t.Fatal(err)
			}
		}},
		{"notify", func(s *stack, victim int64, f *bodyFault) {
			f.path, f.needle = "/v1/notifications", fmt.Sprintf(`"contact_id":%d,`, victim)
			f.armed.Store(true)
		}},
	}
	for _, tc := range steps {
		for _, firstRun := range []bool{true, false} {
			name := tc.step + "/second-run"
			if firstRun {
				name = tc.step + "/first-run"
			}
			t.Run(name, func(t *testing.T) {
				fault := &bodyFault{}
				s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 43, Contacts: 260}, noWorker: true})
				fault.next = http.DefaultTransport
				s.sinkOptions = []httpsink.Option{httpsink.WithTransport(fault)}
				s.startWorker()
				contacts := s.sandbox.Contacts()
				if !firstRun {
					s.mustSync(datasync.Input{Integration: "customer-onboarding"})
					touched := s.sandbox.Touch("contacts", 250)
					if len(touched) != 250 {
						t.Fatalf("touched %d", len(touched))
					}
					contacts = s.sandbox.Contacts()
				}
				// The victim is read on the second page (batch size 100):
				// the 150th record in (updated_at, id) order.
				sort.Slice(contacts, func(i, j int) bool {
					if contacts[i].UpdatedAt != contacts[j].UpdatedAt {
						return contacts[i].UpdatedAt < contacts[j].UpdatedAt
					}
					return contacts[i].ID < contacts[j].ID
				})
				if !firstRun {
					contacts = contacts[len(contacts)-250:]
				}
				victim := contacts[149].ID
				before := snapshotSaga(t, s)
				notes := len(s.sandbox.Notifications())
				tc.arm(s, victim, fault)

				res, err := s.sync(datasync.Input{Integration: "customer-onboarding"})
				if err == nil {
					t.Fatalf("the run succeeded despite the fault in %s: %+v", tc.step, res)
				}
				if !strings.Contains(err.Error(), "ApplyBatch "+tc.step+" failed on page") {
					t.Errorf("the run failed, but not in %s: %v", tc.step, err)
				}
				runID := s.lastRunID("customer-onboarding")
				if run, gerr := s.store.GetRun(context.Background(), runID); gerr != nil || run.Status != "Compensated" {
					t.Fatalf("run %s: %+v, %v; want Compensated; the run's error: %v", runID, run, gerr, err)
				}
				diffSaga(t, before, snapshotSaga(t, s))
				sent, reversed := notificationsSince(t, s, notes)
				if sent == 0 && tc.step != "billing" {
					t.Errorf("no notification was sent before the %s step failed", tc.step)
				}
				if len(reversed) != sent {
					t.Errorf("%d notifications sent, %d reversed", sent, len(reversed))
				}
				for id, n := range reversed {
					if n != 1 {
						t.Errorf("notification %s reversed %d times", id, n)
					}
				}
				// A rerun without the fault completes and leaves every
				// system consistent.
				fault.armed.Store(false)
				if _, err := s.schema.DB.Exec(`DROP TRIGGER IF EXISTS refuse_link ON customer_links`); err != nil {
					t.Fatal(err)
				}
				again := s.mustSync(datasync.Input{Integration: "customer-onboarding"})
				if again.Status != "Completed" {
					t.Fatalf("rerun: %+v", again)
				}
				checkOnboarded(t, s)
			})
		}
	}
}

// checkOnboarded checks that customer-onboarding left every contact as
// one billing customer with its current lead score, and a link row naming
// that customer.
func checkOnboarded(t *testing.T, s *stack) {
	t.Helper()
	links := s.tableRowsBy("customer_links", "contact_id")
	byRef := customersByRef(t, s)
	for _, c := range s.sandbox.Contacts() {
		cu, ok := byRef[fmt.Sprint(c.ID)]
		if !ok {
			t.Errorf("contact %d has no customer after the rerun", c.ID)
			continue
		}
		if got := string(cu.Extra["lead_score"]); got != fmt.Sprint(c.Score) {
			t.Errorf("customer of contact %d: lead_score %s, want %d", c.ID, got, c.Score)
		}
		if l := links[c.ID]; l == nil || l["billing_customer_id"] != cu.ID {
			t.Errorf("contact %d: link %v, want customer %s", c.ID, l, cu.ID)
		}
	}
}

// lastRunID is the id of the integration's latest recorded run.
func (s *stack) lastRunID(integrationName string) string {
	s.t.Helper()
	var id string
	if err := s.schema.DB.QueryRow(`SELECT run_id FROM tether_runs WHERE integration = $1 ORDER BY started_at DESC LIMIT 1`, integrationName).Scan(&id); err != nil {
		s.t.Fatal(err)
	}
	return id
}

// tableRowsBy returns every row of a table as JSON objects keyed by an
// integer column.
func (s *stack) tableRowsBy(table, keyColumn string) map[int64]map[string]any {
	s.t.Helper()
	rows, err := s.schema.DB.Query(fmt.Sprintf(`SELECT %s, to_jsonb(t) FROM %s t`, keyColumn, table))
	if err != nil {
		s.t.Fatalf("read %s: %v", table, err)
	}
	defer rows.Close()
	out := map[int64]map[string]any{}
	for rows.Next() {
		var id int64
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			s.t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			s.t.Fatal(err)
		}
		out[id] = m
	}
	return out
}

func TestCircuitBreaker_OpensWaitsDurablyAndCloses(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 44, Contacts: 120, Faults: sandbox.Faults{
		Writes: sandbox.WriteFaults{Resource: sandbox.ResourceCustomers, ErrorRate: 1},
	}}, noWorker: true})
	def := integrations.CRMBillingCustomers(config.Connection{BaseURL: s.url, Auth: "none"})
	def.BatchSize = 40
	def.Destination.HTTP.CircuitBreaker = httpsink.CircuitBreaker{FailureRate: 0.5, MinRequests: 4, Window: 10 * time.Second, OpenFor: 2 * time.Second}
	def.Destination.HTTP.Retry.Max = -1
	s.defs = []integration.Definition{def}
	s.startWorker()

	run := s.start(datasync.Input{Integration: def.Name})
	// The breaker opens: the workflow says so and waits on a timer.
	var report progress.Report
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		report = queryProgress(t, s, run.GetID())
		if strings.Contains(report.Throttled, "circuit breaker open") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(report.Throttled, "circuit breaker open") {
		t.Fatalf("the breaker never opened; progress %+v", report)
	}
	t.Logf("open: %s", report.Throttled)
	// While it is open, calls stop: at most the probes of each cool-down.
	w1 := s.sandbox.WriteStats().Total
	time.Sleep(3 * time.Second)
	w2 := s.sandbox.WriteStats().Total
	if w2-w1 > 4 {
		t.Errorf("%d calls in 3 s with the circuit open (2 s cool-down: a probe or two expected)", w2-w1)
	}
	// The API recovers: a probe succeeds, the circuit closes, the run ends.
	s.sandbox.SetFaults(sandbox.Faults{})
	t.Logf("faults cleared")
	res, err := s.wait(run)
	t.Logf("done")
	if err != nil || res.Status != "Completed" {
		t.Fatalf("after recovery: %+v, %v", res, err)
	}
	checkCustomers(t, s, def.Name)
	if got := timersFired(t, s, run.GetID()); got == 0 {
		t.Errorf("no durable timer in the history: the wait burnt retries instead")
	}
}

// queryProgress asks a running sync for its progress.
func queryProgress(t *testing.T, s *stack, workflowID string) progress.Report {
	t.Helper()
	v, err := s.client.QueryWorkflow(context.Background(), workflowID, "", datasync.QueryProgress)
	var r progress.Report
	if err == nil {
		err = v.Get(&r)
	}
	if err != nil {
		t.Logf("query progress: %v", err)
	}
	return r
}

// timersFired counts the timers a workflow's history started (every
// execution's, following continue-as-new).
func timersFired(t *testing.T, s *stack, workflowID string) int {
	t.Helper()
	iter := s.client.GetWorkflowHistory(context.Background(), workflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEventType() == enums.EVENT_TYPE_TIMER_STARTED {
			n++
		}
	}
	return n
}

func TestDestinationRateLimit_StaysUnderTheAPIsLimitAndHonours429(t *testing.T) {
	// The API allows 12 requests a second, reads and writes together.
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 45, Contacts: 60,
		RateLimit: sandbox.RateLimit{Requests: 12, Window: time.Second}}, noWorker: true})
	def := integrations.CRMBillingCustomers(config.Connection{BaseURL: s.url, Auth: "none"})
	def.BatchSize = 30
	// Writes at 8/s with one in flight, pages at 1/s: never over 12 in a window.
	def.Destination.HTTP.RateLimit = httpclient.RateLimit{RequestsPerSecond: 8, Burst: 1}
	def.Source.HTTP.RateLimit = httpclient.RateLimit{RequestsPerSecond: 1, Burst: 1}
	s.defs = []integration.Definition{def}
	s.startWorker()
	res := s.mustSync(datasync.Input{Integration: def.Name})
	if res.Counts.Inserted != len(validContacts(s)) {
		t.Errorf("created %d customers of %d contacts", res.Counts.Inserted, len(validContacts(s)))
	}
	if st := s.sandbox.Stats(); st.RateLimited != 0 {
		t.Errorf("the API answered 429 %d times: the destination's rate limit was exceeded", st.RateLimited)
	}
	checkCustomers(t, s, def.Name)

	// Unthrottled, the destination meets the API's 429s: it waits as told
	// (Retry-After, X-RateLimit-Reset) and creates every customer once.
	s.sandbox.ResetCustomers()
	def2 := integrations.CRMBillingCustomers(config.Connection{BaseURL: s.url, Auth: "none"})
	def2.Name = "billing-unthrottled"
	def2.Destination.Identity = "billing-unthrottled"
	def2.Destination.HTTP.Retry.Max = 10
	s.restartWorker([]integration.Definition{def2}, nil)
	res2 := s.mustSync(datasync.Input{Integration: def2.Name})
	if st := s.sandbox.Stats(); st.RateLimited == 0 {
		t.Errorf("no 429 met: 60 unthrottled writes should exceed 12 a second")
	}
	if n := len(s.sandbox.Customers()); n != res2.Counts.Inserted || n != len(validContacts(s)) {
		t.Errorf("%d customers, %d created by the run, %d contacts", n, res2.Counts.Inserted, len(validContacts(s)))
	}
}
