package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// TestErase_SubjectGoneFromEveryPlace: a subject seeded into the
// destination table (by a sync), the quarantine, a staged page, the event
// deliveries and the destination's before-images is gone from each after
// `tether erase`, which reports every place and is audited; another
// subject's data stays.
func TestErase_SubjectGoneFromEveryPlace(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 71, Contacts: 120}})
	res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	ctx := context.Background()
	subject, other := "17", "18"
	if s.count(`SELECT count(*) FROM crm_contacts WHERE id IN (17, 18)`) != 2 {
		t.Fatal("the sync did not write contacts 17 and 18")
	}
	for _, key := range []string{subject, other} {
		if _, err := s.store.Quarantine(ctx, nil, []store.QuarantineEntry{{Integration: "crm-contacts", RunID: res.RunID, Page: 1, Index: 0,
			Key: key, Step: store.StepValidate, Payload: json.RawMessage(`{"id":` + key + `,"email":"x"}`),
			Errors: []store.ErrorDetail{{Message: "seeded"}}}}); err != nil {
			t.Fatal(err)
		}
		if err := s.store.StagePage(ctx, res.RunID, 900+atoi(key), "seeded", []json.RawMessage{json.RawMessage(`{"id":` + key + `,"first_name":"Seeded"}`)}); err != nil {
			t.Fatal(err)
		}
		mustExec(t, s, `INSERT INTO tether_event_deliveries (source, delivery_id, integration, entity_key) VALUES ('crm', $1, 'crm-contacts', $2)`, "d-"+key, key)
	}
	mustExec(t, s, `CREATE TABLE IF NOT EXISTS tether_before_images (run_id text NOT NULL, seq integer NOT NULL, key jsonb NOT NULL, image jsonb, PRIMARY KEY (run_id, seq, key))`)
	mustExec(t, s, `INSERT INTO tether_before_images (run_id, seq, key, image) VALUES ('r', 1, '{"id": 17}', '{"id": 17, "email": "old@example.com"}'), ('r', 1, '{"id": 18}', '{"id": 18}')`)

	var out bytes.Buffer
	if code := cli.Run(ctx, []string{"erase", "--integration", "crm-contacts", "--key", subject, "--reason", "request 2026-118",
		"--address", devServer.FrontendHostPort(), "--task-queue", s.taskQueue}, &out, &out); code != 0 {
		t.Fatalf("tether erase: exit %d\n%s", code, out.String())
	}
	for _, want := range []string{"destination postgres  1", store.PlaceQuarantine, store.PlaceStagedPages, store.PlaceDeliveries, "erased everywhere"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report does not name %q:\n%s", want, out.String())
		}
	}
	for place, q := range map[string]string{
		"the destination":   `SELECT count(*) FROM crm_contacts WHERE id = %s`,
		"the quarantine":    `SELECT count(*) FROM tether_quarantine WHERE integration = 'crm-contacts' AND record_key = '%s'`,
		"the staged pages":  `SELECT count(*) FROM tether_staged_pages WHERE page = 900 + %s`,
		"the deliveries":    `SELECT count(*) FROM tether_event_deliveries WHERE entity_key = '%s'`,
		"the before-images": `SELECT count(*) FROM tether_before_images WHERE key->>'id' = '%s'`,
	} {
		if n := s.count(fmt.Sprintf(q, subject)); n != 0 {
			t.Errorf("subject %s is still in %s (%d rows)", subject, place, n)
		}
		if n := s.count(fmt.Sprintf(q, other)); n != 1 {
			t.Errorf("subject %s, not erased, has %d rows in %s, want 1", other, n, place)
		}
	}
	entries, err := s.store.ListAudit(ctx, store.AuditFilter{Integration: "crm-contacts"})
	if err != nil {
		t.Fatal(err)
	}
	erased := false
	for _, e := range entries {
		if e.Action == store.AuditErase && e.Details["key"] == subject && e.Details["reason"] == "request 2026-118" && e.Actor != "" {
			erased = true
		}
	}
	if !erased {
		t.Errorf("the erasure is not in the audit: %+v", entries)
	}
	// Erasing again finds nothing and still completes.
	out.Reset()
	if code := cli.Run(ctx, []string{"erase", "--integration", "crm-contacts", "--key", subject,
		"--address", devServer.FrontendHostPort(), "--task-queue", s.taskQueue}, &out, &out); code != 0 {
		t.Fatalf("tether erase again: exit %d\n%s", code, out.String())
	}
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func mustExec(t *testing.T, s *stack, q string, args ...any) {
	t.Helper()
	if _, err := s.schema.DB.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestErase_DeletesTheSubjectFromAnHTTPDestination: the customer an HTTP
// destination holds for the subject is deleted through the destination's
// delete endpoint, by its id in the identity map, and the identity map
// forgets it; another customer stays.
func TestErase_DeletesTheSubjectFromAnHTTPDestination(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 73, Contacts: 60}})
	s.mustSync(datasync.Input{Integration: "crm-billing-customers"})
	customerOf := func(ref string) bool {
		for _, c := range s.sandbox.Customers() {
			if c.ExternalRef == ref {
				return true
			}
		}
		return false
	}
	if !customerOf("21") || !customerOf("22") {
		t.Fatalf("the sync created no customer for contacts 21 and 22: %d customers", len(s.sandbox.Customers()))
	}
	var out bytes.Buffer
	if code := cli.Run(context.Background(), []string{"erase", "--integration", "crm-billing-customers", "--key", "21",
		"--address", devServer.FrontendHostPort(), "--task-queue", s.taskQueue}, &out, &out); code != 0 {
		t.Fatalf("tether erase: exit %d\n%s", code, out.String())
	}
	if !regexp.MustCompile(`destination billing\s+1\b`).MatchString(out.String()) || !regexp.MustCompile(`identity maps\s+1\b`).MatchString(out.String()) {
		t.Errorf("the report does not show the customer and its identity deleted:\n%s", out.String())
	}
	if customerOf("21") {
		t.Errorf("the billing API still holds the subject's customer")
	}
	if !customerOf("22") {
		t.Errorf("another customer was deleted")
	}
	if n := s.count(`SELECT count(*) FROM tether_identities WHERE record_key = '21'`); n != 0 {
		t.Errorf("the identity map still holds the subject (%d rows)", n)
	}
}

// TestErase_ReachesTheIntegrationsReadingTheSameSource: erasing contact
// 17 of crm-contacts also erases it in crm-contacts-kept, which reads the
// same CRM contacts and has run, where its row is anonymised (kept with
// its key, email set to the configured value, the other columns NULL), and
// not in one that never ran; each integration's erasure is audited; with
// --only the others are left alone.
func TestErase_ReachesTheIntegrationsReadingTheSameSource(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 74, Contacts: 60}, defs: func(crm config.Connection) []integration.Definition {
		kept := integrations.CRMContacts(crm)
		kept.Name = "crm-contacts-kept"
		table := *kept.Destination.Postgres
		table.Name, table.OnErase, table.Anonymise = "crm_contacts_kept", pgsink.EraseAnonymise, map[string]string{"email": "erased@invalid"}
		kept.Destination.Postgres = &table
		idle := integrations.CRMContacts(crm)
		idle.Name = "crm-contacts-idle"
		return []integration.Definition{integrations.CRMContacts(crm), kept, idle}
	}})
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	s.mustSync(datasync.Input{Integration: "crm-contacts-kept"})
	ctx := context.Background()
	erase := func(key string, extra ...string) string {
		t.Helper()
		var out bytes.Buffer
		args := append([]string{"erase", "--integration", "crm-contacts", "--key", key, "--reason", "request 2026-121",
			"--address", devServer.FrontendHostPort(), "--task-queue", s.taskQueue}, extra...)
		if code := cli.Run(ctx, args, &out, &out); code != 0 {
			t.Fatalf("tether erase: exit %d\n%s", code, out.String())
		}
		return out.String()
	}
	out := erase("17")
	if !strings.Contains(out, "also erased in the integrations that read the same source: crm-contacts-kept\n") ||
		!regexp.MustCompile(`crm-contacts-kept\s+destination postgres \(anonymised\)\s+1\b`).MatchString(out) ||
		!regexp.MustCompile(`crm-contacts\s+destination postgres\s+1\b`).MatchString(out) || strings.Contains(out, "idle") {
		t.Errorf("the report:\n%s\nwant crm-contacts' row deleted, crm-contacts-kept's anonymised, nothing of crm-contacts-idle", out)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts WHERE id = 17`); n != 0 {
		t.Errorf("crm_contacts still holds the subject")
	}
	var email string
	var first, updated sql.NullString
	if err := s.schema.DB.QueryRow(`SELECT email, first_name, updated_at::text FROM crm_contacts_kept WHERE id = 17`).Scan(&email, &first, &updated); err != nil {
		t.Fatalf("the anonymised row: %v", err)
	}
	if email != "erased@invalid" || first.Valid || !updated.Valid {
		t.Errorf("anonymised row: email %q, first_name %v, updated_at %v; want erased@invalid, NULL, kept", email, first, updated)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts_kept WHERE id = 18 AND email <> 'erased@invalid' AND first_name IS NOT NULL`); n != 1 {
		t.Errorf("contact 18 was touched in crm_contacts_kept")
	}
	entries, err := s.store.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	audited := map[string]any{}
	for _, e := range entries {
		if e.Action == store.AuditErase && e.Details["key"] == "17" {
			audited[e.Integration] = e.Details["of"]
		}
	}
	if len(audited) != 2 || audited["crm-contacts"] != nil || audited["crm-contacts-kept"] != "crm-contacts" {
		t.Errorf("erasures audited: %v, want crm-contacts' and crm-contacts-kept's (of crm-contacts)", audited)
	}

	if out := erase("18", "--only"); strings.Contains(out, "crm-contacts-kept") {
		t.Errorf("--only reached another integration:\n%s", out)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts_kept WHERE id = 18 AND email <> 'erased@invalid'`); n != 1 {
		t.Errorf("--only anonymised contact 18 in crm_contacts_kept")
	}
}
