package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workers/webhook"
	"github.com/tetherflow/tether/workflows/events"
)

const (
	hookSecret    = "whsec-current-0123456789"
	hookOldSecret = "whsec-previous-9876543210"
)

// hooks is a webhook receiver on loopback in front of a stack, recording
// events in Temporal with the production accepter.
type hooks struct {
	s      *stack
	url    string
	source webhook.Source
	shards int
}

// crmHookSource is the CRM's webhook source: contact events with the
// contact under data, deletions typed contact.deleted.
func crmHookSource(integrationName string) webhook.Source {
	return webhook.Source{
		Name: "crm", Secrets: []string{hookSecret, hookOldSecret}, Schema: "",
		KeyPath: "data.id", VersionPath: "data.updated_at", RecordPath: "data",
		TypePath: "type", DeleteTypes: []string{"contact.deleted"}, Integration: integrationName,
	}
}

// newHooks serves src for the stack's integration on an httptest server.
func newHooks(s *stack, src webhook.Source) *hooks {
	s.t.Helper()
	reg, err := integration.NewRegistry(s.defs...)
	if err != nil {
		s.t.Fatal(err)
	}
	routes, sources, err := appWebhookRoutes(src, reg)
	if err != nil {
		s.t.Fatal(err)
	}
	rcv, err := webhook.New(sources, nil, webhook.NewTemporalAccepter(s.client, s.taskQueue, routes, s.store))
	if err != nil {
		s.t.Fatal(err)
	}
	ts := httptest.NewServer(rcv)
	s.t.Cleanup(ts.Close)
	return &hooks{s: s, url: ts.URL, source: src, shards: routes[src.Name].Shards}
}

// contactEvent is a CRM webhook body for contact id at version v (a
// minute per version), with a name saying which version it is.
func contactEvent(id, v int, typ string) []byte {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).Add(time.Duration(v) * time.Minute).Format(time.RFC3339)
	body, _ := json.Marshal(map[string]any{
		"type": typ,
		"data": map[string]any{
			"id": id, "uuid": fmt.Sprintf("00000000-0000-4000-8000-%012d", id),
			"first_name": "Ada", "last_name": fmt.Sprintf("V%d", v), "email": fmt.Sprintf("c%d@example.com", id),
			"status": "lead", "score": v % 100, "created_at": "2026-01-01T00:00:00Z", "updated_at": at,
		},
	})
	return body
}

// send posts body as delivery id, signed with secret at t.
func (h *hooks) send(delivery string, body []byte, secret string, at time.Time) (int, http.Header, string) {
	h.s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.url+webhook.Path(h.source.Name), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.DefaultDeliveryHeader, delivery)
	req.Header.Set(webhook.DefaultSignatureHeader, webhook.Sign("v1", at, body, secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.s.t.Fatalf("POST %s: %v", delivery, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// mustAccept sends a valid signed delivery and wants 202.
func (h *hooks) mustAccept(delivery string, body []byte) {
	h.s.t.Helper()
	if code, _, answer := h.send(delivery, body, hookSecret, time.Now()); code != http.StatusAccepted {
		h.s.t.Fatalf("%s: %d %s, want 202", delivery, code, answer)
	}
}

// progress sums the progress of every shard workflow of the integration.
func (h *hooks) progress(integrationName string) events.Progress {
	h.s.t.Helper()
	var sum events.Progress
	for shard := range h.shards {
		resp, err := h.s.client.QueryWorkflow(context.Background(), events.WorkflowID(integrationName, shard), "", events.QueryProgress)
		if err != nil {
			continue // a shard that never ran (or finished idle)
		}
		var p events.Progress
		if err := resp.Get(&p); err != nil {
			h.s.t.Fatal(err)
		}
		sum.Counts = sum.Counts.Add(p.Counts)
		sum.Pending += p.Pending
		sum.DroppedRedeliveries += p.DroppedRedeliveries
		if p.LastError != "" {
			sum.LastError = p.LastError
		}
	}
	return sum
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastNames reads crm_contacts' last_name by id (the version each row is at).
func (s *stack) lastNames(table string) map[int64]string {
	out := map[int64]string{}
	for id, row := range s.tableRows(table) {
		out[id], _ = row["last_name"].(string)
	}
	return out
}

func TestWebhooks_SignedEventsAreAppliedOncePerDeliveryInVersionOrder(t *testing.T) {
	var name string
	s := newStack(t, stackOptions{defs: eventContacts(&name)})
	h := newHooks(s, crmHookSource(name))
	now := time.Now()

	// Signatures: only authentic, timely requests are recorded.
	cases := []struct {
		name, delivery string
		body           []byte
		secret         string
		at             time.Time
		tamper         bool
		want           int
	}{
		{"valid", "sig-ok", contactEvent(1, 1, "contact.created"), hookSecret, now, false, 202},
		{"wrong secret", "sig-wrong", contactEvent(2, 1, "contact.created"), "not-the-secret", now, false, 401},
		{"old timestamp", "sig-old", contactEvent(3, 1, "contact.created"), hookSecret, now.Add(-10 * time.Minute), false, 401},
		{"rotated secret (the previous one, still valid)", "sig-rotated", contactEvent(4, 1, "contact.created"), hookOldSecret, now, false, 202},
		{"tampered body", "sig-tampered", contactEvent(5, 1, "contact.created"), hookSecret, now, true, 401},
	}
	for _, c := range cases {
		body := c.body
		req, _ := http.NewRequest(http.MethodPost, h.url+webhook.Path("crm"), nil)
		sig := webhook.Sign("v1", c.at, body, c.secret)
		if c.tamper {
			body = bytes.Replace(body, []byte(`"V1"`), []byte(`"V9"`), 1)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set(webhook.DefaultDeliveryHeader, c.delivery)
		req.Header.Set(webhook.DefaultSignatureHeader, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, answer, c.want)
		}
		if c.want == 401 && !strings.Contains(string(answer), `"error"`) {
			t.Errorf("%s: a 401 without a reason: %s", c.name, answer)
		}
	}
	eventually(t, 20*time.Second, "contacts 1 and 4 applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE delivery_id LIKE 'sig-%'`) == 2
	})
	if names := s.lastNames("crm_contacts"); names[1] != "V1" || names[4] != "V1" {
		t.Fatalf("rows after the signature cases: %v (want only 1 and 4, at V1)", names)
	}
	// Each applied delivery names its authenticated sender: the source,
	// which of its secrets signed it, and the peer; the audit lists them.
	acts, err := s.store.ListAudit(context.Background(), store.AuditFilter{Integration: name, Deliveries: true})
	if err != nil {
		t.Fatal(err)
	}
	senders := map[string]string{}
	for _, a := range acts {
		if a.Action == store.AuditDeliver {
			senders[a.Target] = a.Actor
		}
	}
	if want := map[string]string{"crm/sig-ok": "webhook crm (secret 1) from 127.0.0.1", "crm/sig-rotated": "webhook crm (secret 2) from 127.0.0.1"}; !maps.Equal(senders, want) {
		t.Errorf("deliveries audited as %v, want %v", senders, want)
	}

	// Out of order for one entity: versions 5, 2, 4, 3 arrive in that
	// order; only 5 is applied, the rest are stale.
	for _, v := range []int{5, 2, 4, 3} {
		h.mustAccept(fmt.Sprintf("ooo-%d", v), contactEvent(7, v, "contact.updated"))
	}
	eventually(t, 20*time.Second, "contact 7's events applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE delivery_id LIKE 'ooo-%'`) == 4
	})
	if got := s.lastNames("crm_contacts")[7]; got != "V5" {
		t.Fatalf("contact 7 is at %q after versions 5, 2, 4, 3 arrived; want V5", got)
	}
	if p := h.progress(name); p.Counts.Stale != 3 {
		t.Errorf("stale events counted: %+v, want 3", p.Counts)
	}

	// Redelivery: at once (before the first is applied) and after.
	body := contactEvent(8, 1, "contact.created")
	h.mustAccept("redeliver-1", body)
	code, _, _ := h.send("redeliver-1", body, hookSecret, time.Now())
	if code != 202 && code != 200 {
		t.Fatalf("immediate redelivery: %d", code)
	}
	eventually(t, 20*time.Second, "redelivered contact applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE delivery_id = 'redeliver-1'`) == 1
	})
	code, _, answer := h.send("redeliver-1", body, hookSecret, time.Now())
	if code != http.StatusOK || !strings.Contains(answer, `"duplicate"`) {
		t.Fatalf("redelivery after apply: %d %s, want 200 duplicate", code, answer)
	}
	// Applied once: the event was counted once inserted, and once as a
	// duplicate or dropped redelivery at most.
	p := h.progress(name)
	if p.Counts.Inserted != 4 { // 1, 4, 7, 8
		t.Errorf("inserted %d, want 4 (%+v)", p.Counts.Inserted, p.Counts)
	}

	// A deletion with a newer version removes the row; an older one is stale.
	h.mustAccept("del-old", contactEvent(4, 0, "contact.deleted"))
	eventually(t, 20*time.Second, "stale deletion processed", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE delivery_id = 'del-old'`) == 1
	})
	if _, ok := s.tableRows("crm_contacts")[4]; !ok {
		t.Fatal("a deletion older than the row deleted it")
	}
	h.mustAccept("del-new", contactEvent(4, 2, "contact.deleted"))
	eventually(t, 20*time.Second, "contact 4 deleted", func() bool { _, ok := s.tableRows("crm_contacts")[4]; return !ok })

	// A body the integration's schema refuses is acknowledged and
	// quarantined with its reason, never applied.
	bad := bytes.Replace(contactEvent(9, 1, "contact.created"), []byte(`"status":"lead"`), []byte(`"status":"vip"`), 1)
	h.mustAccept("invalid-1", bad)
	eventually(t, 20*time.Second, "invalid event quarantined", func() bool {
		return s.count(`SELECT count(*) FROM tether_quarantine WHERE integration = $1 AND record_key = '9' AND errors::text LIKE '%status%'`, name) == 1
	})
	if _, ok := s.tableRows("crm_contacts")[9]; ok {
		t.Fatal("an invalid event was applied")
	}
	p = h.progress(name)
	want := p.Counts.Inserted + p.Counts.Updated + p.Counts.Deleted + p.Counts.Unchanged + p.Counts.Stale +
		p.Counts.Superseded + p.Counts.Duplicates + p.Counts.Quarantined
	if p.Counts.Received != want || p.Counts.Quarantined != 1 || p.Counts.Deleted != 1 {
		t.Errorf("counts do not add up or miss the quarantined/deleted event: %+v", p.Counts)
	}
}

func TestWebhooks_BurstOverTheRateLimitIsRefusedWith429AndNothingAcceptedIsLost(t *testing.T) {
	var name string
	s := newStack(t, stackOptions{defs: eventContacts(&name)})
	src := crmHookSource(name)
	src.RateLimit = webhook.RateLimit{PerSecond: 5, Burst: 10}
	h := newHooks(s, src)

	var accepted, limited []int
	for id := 1; id <= 40; id++ {
		code, hdr, _ := h.send(fmt.Sprintf("burst-%d", id), contactEvent(id, 1, "contact.created"), hookSecret, time.Now())
		if hdr.Get("X-RateLimit-Limit") != "10" || hdr.Get("X-RateLimit-Remaining") == "" || hdr.Get("X-RateLimit-Reset") == "" {
			t.Fatalf("request %d: rate-limit headers missing: %v", id, hdr)
		}
		switch code {
		case http.StatusAccepted:
			accepted = append(accepted, id)
		case http.StatusTooManyRequests:
			if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("429 without a usable Retry-After: %q", hdr.Get("Retry-After"))
			}
			limited = append(limited, id)
		default:
			t.Fatalf("request %d: %d", id, code)
		}
	}
	if len(accepted) < 10 || len(limited) == 0 {
		t.Fatalf("accepted %d, limited %d: the burst of 40 should pass 10 and refuse some", len(accepted), len(limited))
	}
	eventually(t, 30*time.Second, "every accepted event applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries`) == len(accepted)
	})
	rows := s.tableRows("crm_contacts")
	for _, id := range accepted {
		if _, ok := rows[int64(id)]; !ok {
			t.Fatalf("accepted event %d not applied", id)
		}
	}
	// The sender delivers the refused ones again, honouring Retry-After.
	for _, id := range limited {
		for {
			code, hdr, _ := h.send(fmt.Sprintf("burst-%d", id), contactEvent(id, 1, "contact.created"), hookSecret, time.Now())
			if code == http.StatusAccepted {
				break
			}
			if code != http.StatusTooManyRequests {
				t.Fatalf("redelivery of %d: %d", id, code)
			}
			ra, _ := strconv.Atoi(hdr.Get("Retry-After"))
			time.Sleep(time.Duration(ra) * time.Second / 4) // a sender may retry early; it is refused again
		}
	}
	eventually(t, 30*time.Second, "all 40 applied", func() bool { return len(s.tableRows("crm_contacts")) == 40 })
}

// eventContacts is crm-contacts under a name of its own: event workflow
// ids are per integration and namespace, and every test has its own
// shards.
func eventContacts(name *string) func(config.Connection) []integration.Definition {
	*name = uniqueName("hook-contacts")
	return func(crm config.Connection) []integration.Definition {
		def := integrations.CRMContacts(crm)
		def.Name = *name
		return []integration.Definition{def}
	}
}

// unversioned is crm-contacts into a table without a version column, so
// the last event applied wins: only applying in arrival order gives each
// row its last event.
func unversioned(name *string) func(config.Connection) []integration.Definition {
	*name = uniqueName("hook-unversioned")
	return func(crm config.Connection) []integration.Definition {
		def := integrations.CRMContacts(crm)
		def.Name = *name
		t := *def.Destination.Postgres
		t.Name, t.VersionColumn = "crm_contacts_unversioned", ""
		def.Destination.Postgres = &t
		def.Events.Shards = 4
		return []integration.Definition{def}
	}
}

func TestWebhooks_AcceptedWhileNoWorkerRunsThenAllAppliedInOrder(t *testing.T) {
	var name string
	s := newStack(t, stackOptions{defs: unversioned(&name), noWorker: true})
	src := crmHookSource(name)
	src.VersionPath = ""
	h := newHooks(s, src)

	// 12 entities, 8 events each, interleaved; no worker runs.
	const entities, perEntity = 12, 8
	for v := 1; v <= perEntity; v++ {
		for id := 1; id <= entities; id++ {
			h.mustAccept(fmt.Sprintf("down-%d-%d", id, v), contactEvent(id, v, "contact.updated"))
		}
	}
	time.Sleep(time.Second)
	if n := s.count(`SELECT count(*) FROM tether_event_deliveries`); n != 0 {
		t.Fatalf("%d events applied with no worker running", n)
	}

	s.startWorker()
	eventually(t, 60*time.Second, "all events applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE delivery_id LIKE 'down-%'`) == entities*perEntity
	})
	names := s.lastNames("crm_contacts_unversioned")
	if len(names) != entities {
		t.Fatalf("%d rows, want %d", len(names), entities)
	}
	for id := 1; id <= entities; id++ {
		if got := names[int64(id)]; got != fmt.Sprintf("V%d", perEntity) {
			t.Errorf("contact %d ends at %q, want V%d: its events were not applied in order", id, got, perEntity)
		}
	}
}

// appWebhookRoutes routes one source as the worker does.
func appWebhookRoutes(src webhook.Source, reg *integration.Registry) (map[string]webhook.Route, []webhook.Source, error) {
	return app.WebhookRoutes([]config.WebhookSource{{Source: src}}, reg, nil)
}

// TestWebhooks_AnEventItsSourceSchemaRefusesIsQuarantinedAndTheRestApplied:
// with a schema on the webhook source, an event that breaks it is
// acknowledged as quarantined and kept in the quarantine at step "event"
// with the reason, and the valid events of the same shard are applied (the
// quarantine refused the step, and the shard's whole batch was retried
// for ever: found by make chaos).
func TestWebhooks_AnEventItsSourceSchemaRefusesIsQuarantinedAndTheRestApplied(t *testing.T) {
	var name string
	s := newStack(t, stackOptions{defs: eventContacts(&name)})
	reg, err := integration.NewRegistry(s.defs...)
	if err != nil {
		t.Fatal(err)
	}
	src := crmHookSource(name)
	src.Schema = "contact-event.schema.json"
	routes, sources, err := appWebhookRoutes(src, reg)
	if err != nil {
		t.Fatal(err)
	}
	// The event's envelope, with its contact's email a string.
	sch := schema.NewEmptyRegistry()
	if err := sch.Add(src.Schema, []byte(`{"type": "object", "required": ["type", "data"],
		"properties": {"type": {"type": "string"}, "data": {"type": "object", "required": ["id", "email"],
			"properties": {"email": {"type": "string"}}}}}`)); err != nil {
		t.Fatal(err)
	}
	rcv, err := webhook.New(sources, sch, webhook.NewTemporalAccepter(s.client, s.taskQueue, routes, s.store))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(rcv)
	t.Cleanup(ts.Close)
	h := &hooks{s: s, url: ts.URL, source: src, shards: routes[src.Name].Shards}
	for id := 1; id <= 8; id++ {
		body := contactEvent(id, 1, "contact.created")
		if id == 5 {
			body = bytes.Replace(body, []byte(`"email":"c5@example.com"`), []byte(`"email":42`), 1)
		}
		code, _, answer := h.send(fmt.Sprintf("schema-%d", id), body, hookSecret, time.Now())
		want := `"accepted"`
		if id == 5 {
			want = `"quarantined"`
		}
		if code != http.StatusAccepted || !strings.Contains(answer, want) {
			t.Fatalf("event %d: %d %s, want 202 %s", id, code, answer, want)
		}
	}
	eventually(t, 30*time.Second, "the seven valid contacts applied", func() bool {
		// The first batch applied creates the table.
		return s.count(`SELECT count(*) FROM pg_class WHERE oid = to_regclass('crm_contacts')`) == 1 &&
			s.count(`SELECT count(*) FROM crm_contacts`) == 7
	})
	if n := s.count(`SELECT count(*) FROM crm_contacts WHERE id = 5`); n != 0 {
		t.Errorf("the invalid contact 5 was applied")
	}
	eventually(t, 30*time.Second, "contact 5 quarantined at step event", func() bool {
		return s.count(`SELECT count(*) FROM tether_quarantine WHERE integration = $1 AND step = 'event' AND record_key = '5'`, name) == 1
	})
	if p := h.progress(name); p.LastError != "" {
		t.Errorf("a shard failed: %s", p.LastError)
	}
}
