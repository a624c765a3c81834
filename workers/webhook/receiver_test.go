package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReceiver_Signature(t *testing.T) {
	body := []byte(validBody)
	tests := []struct {
		name       string
		give       func(now time.Time) request
		wantStatus int
		wantError  string // in the 401's "error"
	}{
		{
			name:       "valid signature",
			give:       func(now time.Time) request { return request{signature: Sign("", now, body, secretNew)} },
			wantStatus: http.StatusAccepted,
		},
		{
			name:       "upper-case hex",
			give:       func(now time.Time) request { return request{signature: upperMAC(Sign("", now, body, secretNew))} },
			wantStatus: http.StatusAccepted,
		},
		{
			name:       "wrong secret",
			give:       func(now time.Time) request { return request{signature: Sign("", now, body, secretOther)} },
			wantStatus: http.StatusUnauthorized,
			wantError:  "signature does not match",
		},
		{
			name: "old timestamp beyond tolerance",
			give: func(now time.Time) request {
				return request{signature: Sign("", now.Add(-6*time.Minute), body, secretNew)}
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "timestamp is 6m0s old, beyond the tolerance of 5m0s",
		},
		{
			name: "old timestamp within tolerance",
			give: func(now time.Time) request {
				return request{signature: Sign("", now.Add(-5*time.Minute), body, secretNew)}
			},
			wantStatus: http.StatusAccepted,
		},
		{
			name: "future timestamp beyond tolerance",
			give: func(now time.Time) request {
				return request{signature: Sign("", now.Add(5*time.Minute+time.Second), body, secretNew)}
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "timestamp is 5m1s in the future, beyond the tolerance of 5m0s",
		},
		{
			name: "future timestamp within tolerance",
			give: func(now time.Time) request {
				return request{signature: Sign("", now.Add(4*time.Minute), body, secretNew)}
			},
			wantStatus: http.StatusAccepted,
		},
		{
			name: "tampered body",
			give: func(now time.Time) request {
				return request{signature: Sign("", now, body, secretNew), body: strings.Replace(validBody, "4711", "4712", 1)}
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "signature does not match",
		},
		{
			name: "tampered timestamp",
			give: func(now time.Time) request {
				sig := Sign("", now, body, secretNew)
				return request{signature: strings.Replace(sig, "t="+strconv.FormatInt(now.Unix(), 10), "t="+strconv.FormatInt(now.Unix()+1, 10), 1)}
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "signature does not match",
		},
		{
			name:       "missing header",
			give:       func(time.Time) request { return request{signature: "-"} },
			wantStatus: http.StatusUnauthorized,
			wantError:  "missing X-Tether-Signature header",
		},
		{
			name:       "not key=value",
			give:       func(time.Time) request { return request{signature: "sha256=abc,garbage"} },
			wantStatus: http.StatusUnauthorized,
			wantError:  `malformed X-Tether-Signature header: entry "garbage" is not key=value`,
		},
		{
			name: "no timestamp",
			give: func(now time.Time) request {
				return request{signature: strings.SplitN(Sign("", now, body, secretNew), ",", 2)[1]}
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "no timestamp (t=)",
		},
		{
			name:       "no signature",
			give:       func(now time.Time) request { return request{signature: "t=" + strconv.FormatInt(now.Unix(), 10)} },
			wantStatus: http.StatusUnauthorized,
			wantError:  "no v1= signature",
		},
		{
			name:       "timestamp not a number",
			give:       func(time.Time) request { return request{signature: "t=yesterday,v1=" + strings.Repeat("0", 64)} },
			wantStatus: http.StatusUnauthorized,
			wantError:  `timestamp "yesterday" is not Unix seconds`,
		},
		{
			name: "signature not hex",
			give: func(now time.Time) request {
				return request{signature: "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=xyz"}
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "v1= is not a hex HMAC-SHA256",
		},
		{
			name:       "signature of another scheme only",
			give:       func(now time.Time) request { return request{signature: Sign("v0", now, body, secretNew)} },
			wantStatus: http.StatusUnauthorized,
			wantError:  "no v1= signature",
		},
		{
			name: "two timestamps",
			give: func(now time.Time) request {
				return request{signature: "t=1," + Sign("", now, body, secretNew)}
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "more than one timestamp",
		},
	}
	h := newHarness(t, []Source{crmSource()})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callsBefore, _ := h.acc.counts()
			got := h.send(t, tt.give(h.clock.now()))
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", got.status, tt.wantStatus, got.raw)
			}
			wantRateHeaders(t, got)
			calls, _ := h.acc.counts()
			if tt.wantStatus != http.StatusAccepted {
				if calls != callsBefore {
					t.Errorf("Accepter called %d times for a refused request", calls-callsBefore)
				}
				if msg, _ := got.body["error"].(string); !strings.Contains(msg, tt.wantError) {
					t.Errorf(`"error" = %q, want it to contain %q`, msg, tt.wantError)
				}
				return
			}
			if calls != callsBefore+1 {
				t.Errorf("Accepter called %d times, want once", calls-callsBefore)
			}
			if got.body["status"] != "accepted" {
				t.Errorf("answer %s, want status accepted", got.raw)
			}
		})
	}
}

// upperMAC upper-cases the hex of a signature header value.
func upperMAC(sig string) string {
	ts, macs, _ := strings.Cut(sig, ",")
	return ts + "," + strings.ReplaceAll(strings.ToUpper(macs), "V1=", "v1=")
}

func TestReceiver_RotatedSecrets(t *testing.T) {
	body := []byte(validBody)
	rotating := crmSource()
	rotating.Secrets = []string{secretNew, secretOld}
	h := newHarness(t, []Source{rotating})

	tests := []struct {
		name string
		give []string // the secrets the sender signs with
		want int
	}{
		{name: "new secret", give: []string{secretNew}, want: http.StatusAccepted},
		{name: "old secret", give: []string{secretOld}, want: http.StatusAccepted},
		{name: "a third secret", give: []string{secretOther}, want: http.StatusUnauthorized},
		{name: "signed with a third and the new", give: []string{secretOther, secretNew}, want: http.StatusAccepted},
		{name: "signed with new and old", give: []string{secretNew, secretOld}, want: http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := h.send(t, request{signature: Sign("", h.clock.now(), body, tt.give...)})
			if got.status != tt.want {
				t.Errorf("status %d, want %d: %s", got.status, tt.want, got.raw)
			}
		})
	}
	if _, recorded := h.acc.counts(); recorded != 4 {
		t.Errorf("recorded %d events, want 4", recorded)
	}

	// The rotation done: the old secret is refused.
	done := newHarness(t, []Source{crmSource()})
	if got := done.send(t, request{signature: Sign("", done.clock.now(), body, secretOld)}); got.status != http.StatusUnauthorized {
		t.Errorf("old secret after the rotation: status %d, want 401", got.status)
	}
}

func TestReceiver_SourceHeaders(t *testing.T) {
	acme := crmSource()
	acme.Name = "acme"
	acme.SignatureHeader = "X-Acme-Signature"
	acme.SignatureScheme = "s2"
	acme.DeliveryHeader = "X-Acme-Delivery"
	h := newHarness(t, []Source{acme})
	sig := Sign("s2", h.clock.now(), []byte(validBody), secretNew)

	got := h.send(t, request{source: "acme", signature: "-", delivery: "-", header: map[string]string{"X-Acme-Signature": sig, "X-Acme-Delivery": "a-1"}})
	if got.status != http.StatusAccepted || got.body["delivery"] != "a-1" {
		t.Errorf("own headers: %d %s, want 202 for delivery a-1", got.status, got.raw)
	}
	got = h.send(t, request{source: "acme", signature: sig})
	if got.status != http.StatusUnauthorized || !strings.Contains(got.raw, "missing X-Acme-Signature header") {
		t.Errorf("default signature header: %d %s, want 401 naming X-Acme-Signature", got.status, got.raw)
	}
	got = h.send(t, request{source: "acme", signature: "-", header: map[string]string{"X-Acme-Signature": Sign("", h.clock.now(), []byte(validBody), secretNew)}})
	if got.status != http.StatusUnauthorized || !strings.Contains(got.raw, "no s2= signature") {
		t.Errorf("default scheme: %d %s, want 401 naming s2", got.status, got.raw)
	}
	got = h.send(t, request{source: "acme", signature: "-", header: map[string]string{"X-Acme-Signature": sig}})
	if got.status != http.StatusBadRequest || !strings.Contains(got.raw, "header X-Acme-Delivery is required") {
		t.Errorf("no X-Acme-Delivery: %d %s, want 400 naming it", got.status, got.raw)
	}
}

func TestReceiver_Body(t *testing.T) {
	small := crmSource()
	small.MaxBody = int64(len(validBody))
	tests := []struct {
		name       string
		give       request
		wantStatus int
		wantError  string
	}{
		{name: "exactly max_body", give: request{}, wantStatus: http.StatusAccepted},
		{name: "over max_body", give: request{body: validBody + " "}, wantStatus: http.StatusRequestEntityTooLarge, wantError: "body is larger than the limit of 109 bytes"},
		{name: "over max_body, chunked", give: request{body: validBody + " ", chunked: true}, wantStatus: http.StatusRequestEntityTooLarge, wantError: "larger than the limit"},
		{name: "over max_body, unsigned", give: request{body: strings.Repeat("x", 1000), signature: "-"}, wantStatus: http.StatusRequestEntityTooLarge, wantError: "larger than the limit"},
		{name: "not JSON", give: request{body: "contact 4711 updated"}, wantStatus: http.StatusBadRequest, wantError: "body is not JSON"},
		{name: "two JSON values", give: request{body: `{"a":1} {"b":2}`}, wantStatus: http.StatusBadRequest, wantError: "trailing data"},
		{name: "truncated JSON", give: request{body: validBody[:50]}, wantStatus: http.StatusBadRequest, wantError: "body is not JSON"},
		{name: "no delivery id", give: request{delivery: "-"}, wantStatus: http.StatusBadRequest, wantError: "header X-Tether-Delivery is required"},
		{name: "delivery id with a space", give: request{delivery: "a b"}, wantStatus: http.StatusBadRequest, wantError: "visible ASCII"},
		{name: "delivery id too long", give: request{delivery: strings.Repeat("d", 201)}, wantStatus: http.StatusBadRequest, wantError: "1 to 200"},
		{name: "not JSON and unsigned", give: request{body: "x", signature: "-"}, wantStatus: http.StatusUnauthorized, wantError: "missing X-Tether-Signature"},
	}
	h := newHarness(t, []Source{small})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callsBefore, _ := h.acc.counts()
			got := h.send(t, tt.give)
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", got.status, tt.wantStatus, got.raw)
			}
			wantRateHeaders(t, got)
			calls, _ := h.acc.counts()
			if tt.wantStatus == http.StatusAccepted {
				if calls != callsBefore+1 {
					t.Errorf("Accepter called %d times, want once", calls-callsBefore)
				}
				return
			}
			if calls != callsBefore {
				t.Errorf("Accepter called for a refused request")
			}
			if msg, _ := got.body["error"].(string); !strings.Contains(msg, tt.wantError) {
				t.Errorf(`"error" = %q, want it to contain %q`, msg, tt.wantError)
			}
		})
	}
}

func TestReceiver_Invalid(t *testing.T) {
	const (
		badEmail = `{"type":"contact.updated","data":{"id":7,"updated_at":"2026-11-23T10:15:00Z","email":"not an email"}}`
		noKey    = `{"type":"contact.updated","data":{"updated_at":"2026-11-23T10:15:00Z"}}`
		objKey   = `{"type":"contact.updated","data":{"id":{"n":1},"updated_at":"2026-11-23T10:15:00Z"}}`
		bigKey   = `{"type":"contact.updated","data":{"id":12345678901234567890123,"updated_at":"2026-11-23T10:15:00Z"}}`
		arrayKey = `{"type":"contact.updated","data":{"id":"c-9","updated_at":"2026-11-23T10:15:00Z","refs":[{"id":"r1"}]}}`
	)
	tests := []struct {
		name        string
		onInvalid   string
		keyPath     string // default data.id
		body        string
		wantStatus  int
		wantErrors  []string // every one in the answer's "errors" and the event's Invalid
		wantKey     string
		wantVersion string
	}{
		{name: "valid", body: validBody, wantStatus: http.StatusAccepted, wantKey: "4711", wantVersion: "2026-11-23T10:15:00Z"},
		{name: "schema-invalid, quarantine", body: badEmail, wantStatus: http.StatusAccepted,
			wantErrors: []string{"/data/email: format: "}, wantKey: "7", wantVersion: "2026-11-23T10:15:00Z"},
		{name: "schema-invalid, reject", onInvalid: OnInvalidReject, body: badEmail, wantStatus: http.StatusUnprocessableEntity,
			wantErrors: []string{"/data/email: format: "}},
		{name: "no entity key, quarantine", body: noKey, wantStatus: http.StatusAccepted,
			wantErrors: []string{`/data/id: required: required property "id" is missing`, "data.id: entity key is missing"}, wantVersion: "2026-11-23T10:15:00Z"},
		{name: "no entity key, reject", onInvalid: OnInvalidReject, body: noKey, wantStatus: http.StatusBadRequest,
			wantErrors: []string{`/data/id: required: required property "id" is missing`, "data.id: entity key is missing"}},
		{name: "entity key is an object", body: objKey, wantStatus: http.StatusAccepted,
			wantErrors: []string{"/data/id: type: ", "data.id: entity key is an object, not a string or number"}, wantVersion: "2026-11-23T10:15:00Z"},
		{name: "large numeric key keeps its digits", body: bigKey, wantStatus: http.StatusAccepted, wantKey: "12345678901234567890123", wantVersion: "2026-11-23T10:15:00Z"},
		{name: "key in an array", keyPath: "data.refs.0.id", body: arrayKey, wantStatus: http.StatusAccepted, wantKey: "r1", wantVersion: "2026-11-23T10:15:00Z"},
		{name: "not an object, quarantine", body: `[1,2]`, wantStatus: http.StatusAccepted,
			wantErrors: []string{"(record): type: ", "data.id: entity key is missing", "data.updated_at: version is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := crmSource()
			src.OnInvalid = tt.onInvalid
			if tt.keyPath != "" {
				src.KeyPath = tt.keyPath
			}
			h := newHarness(t, []Source{src})
			got := h.send(t, request{body: tt.body, delivery: "d-1"})
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", got.status, tt.wantStatus, got.raw)
			}
			answered := toStrings(got.body["errors"])
			events := h.acc.recorded()
			if tt.wantStatus != http.StatusAccepted {
				if calls, _ := h.acc.counts(); calls != 0 {
					t.Errorf("Accepter called for a rejected event")
				}
				wantAll(t, "answer's errors", answered, tt.wantErrors)
				return
			}
			if len(events) != 1 {
				t.Fatalf("recorded %d events, want 1", len(events))
			}
			ev := events[0]
			if ev.EntityKey != tt.wantKey || ev.Version != tt.wantVersion {
				t.Errorf("key %q version %q, want %q %q", ev.EntityKey, ev.Version, tt.wantKey, tt.wantVersion)
			}
			wantAll(t, "Event.Invalid", ev.Invalid, tt.wantErrors)
			wantStatus := "accepted"
			if len(tt.wantErrors) > 0 {
				wantStatus = "quarantined"
				wantAll(t, "answer's errors", answered, tt.wantErrors)
			}
			if got.body["status"] != wantStatus || ev.Quarantined() != (len(tt.wantErrors) > 0) {
				t.Errorf("answer %s, Quarantined %v; want status %s", got.raw, ev.Quarantined(), wantStatus)
			}
		})
	}
}

// wantAll checks that got has as many entries as want and that each
// entry of want starts one of got.
func wantAll(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %q, want %d entries like %q", what, got, len(want), want)
		return
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("%s = %q, want one starting with %q", what, got, w)
		}
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestReceiver_NoSchema(t *testing.T) {
	src := crmSource()
	src.Schema = ""
	src.VersionPath = ""
	h := newHarness(t, []Source{src})
	got := h.send(t, request{body: `{"data":{"id":"x1","anything":[true]}}`})
	if got.status != http.StatusAccepted || got.body["status"] != "accepted" {
		t.Errorf("status %d %s, want 202 accepted", got.status, got.raw)
	}
	if ev := h.acc.recorded(); len(ev) != 1 || ev[0].EntityKey != "x1" || ev[0].Version != "" {
		t.Errorf("events %+v, want one with key x1 and no version", ev)
	}
}

func TestReceiver_ManyErrorsAreCapped(t *testing.T) {
	src := crmSource()
	src.Schema = "items.schema.json"
	src.KeyPath = "id"
	src.VersionPath = ""
	h := newHarness(t, []Source{src})
	items := strings.TrimSuffix(strings.Repeat(`"x",`, 250), ",")
	got := h.send(t, request{body: `{"id":1,"items":[` + items + `]}`})
	if got.status != http.StatusAccepted {
		t.Fatalf("status %d: %.200s", got.status, got.raw)
	}
	errs := toStrings(got.body["errors"])
	if len(errs) != maxProblems+1 || errs[maxProblems] != "… and 150 more errors" {
		t.Errorf("answer has %d errors ending %q, want %d and a count of the rest", len(errs), errs[len(errs)-1], maxProblems+1)
	}
	if ev := h.acc.recorded(); len(ev) != 1 || !slices.Equal(ev[0].Invalid, errs) {
		t.Errorf("Event.Invalid differs from the answer's errors")
	}
}

func TestReceiver_Event(t *testing.T) {
	h := newHarness(t, []Source{crmSource()})
	signedAt := h.clock.now().Add(-30 * time.Second)
	h.clock.advance(1500 * time.Millisecond)
	got := h.send(t, request{delivery: "evt-0001", signature: Sign("", signedAt, []byte(validBody), secretNew)})
	if got.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", got.status, got.raw)
	}
	if got.body["delivery"] != "evt-0001" {
		t.Errorf("answer %s, want delivery evt-0001", got.raw)
	}
	ev := h.acc.recorded()[0]
	want := Event{
		Source:     "crm",
		DeliveryID: "evt-0001",
		EntityKey:  "4711",
		Version:    "2026-11-23T10:15:00Z",
		ReceivedAt: t0.Add(1500 * time.Millisecond),
		SignedAt:   signedAt,
	}
	if ev.Source != want.Source || ev.DeliveryID != want.DeliveryID || ev.EntityKey != want.EntityKey || ev.Version != want.Version ||
		!ev.ReceivedAt.Equal(want.ReceivedAt) || ev.ReceivedAt.Location() != time.UTC || !ev.SignedAt.Equal(want.SignedAt) || len(ev.Invalid) != 0 {
		t.Errorf("event %+v, want %+v", ev, want)
	}
	if string(ev.Body) != validBody {
		t.Errorf("Body %s, want the bytes sent", ev.Body)
	}
}

func TestReceiver_Redelivery(t *testing.T) {
	h := newHarness(t, []Source{crmSource()}, WithRetryAfter(30*time.Second))

	// The recording fails: 503, nothing acknowledged, the sender retries.
	h.acc.setErr(errors.New("temporal: connection refused"))
	got := h.send(t, request{delivery: "evt-7"})
	if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") != "30" {
		t.Errorf("Accepter failing: %d Retry-After %q, want 503 Retry-After 30", got.status, got.header.Get("Retry-After"))
	}
	if strings.Contains(got.raw, "connection refused") {
		t.Errorf("503 answer %s tells the sender the internal error", got.raw)
	}
	wantRateHeaders(t, got)

	// Recovered: the redelivery is accepted, the next ones are duplicates.
	h.acc.setErr(nil)
	wantStatuses := []struct {
		code   int
		status string
	}{{http.StatusAccepted, "accepted"}, {http.StatusOK, "duplicate"}, {http.StatusOK, "duplicate"}}
	for i, want := range wantStatuses {
		got := h.send(t, request{delivery: "evt-7"})
		if got.status != want.code || got.body["status"] != want.status || got.body["delivery"] != "evt-7" {
			t.Errorf("delivery %d: %d %s, want %d %s", i+2, got.status, got.raw, want.code, want.status)
		}
	}
	if calls, recorded := h.acc.counts(); calls != 4 || recorded != 1 {
		t.Errorf("Accepter: %d calls, %d recorded; want 4 calls, 1 recorded", calls, recorded)
	}
}

// blockingAccepter waits for its context to end.
type blockingAccepter struct{}

func (blockingAccepter) Accept(ctx context.Context, _ Event) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestReceiver_AcceptTimeout(t *testing.T) {
	rcv, err := New([]Source{crmSource()}, testRegistry(t), blockingAccepter{}, WithAcceptTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{clock: &fakeClock{t: time.Now()}}
	h.srv = newServer(t, rcv)
	start := time.Now()
	got := h.send(t, request{})
	if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") != "5" {
		t.Errorf("Accept past its deadline: %d Retry-After %q, want 503 Retry-After 5", got.status, got.header.Get("Retry-After"))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("answered after %s, want soon after the 50ms accept timeout", took)
	}
}

// ctxAccepter records the state of the context it is given.
type ctxAccepter struct {
	err         error
	hasDeadline bool
}

func (a *ctxAccepter) Accept(ctx context.Context, _ Event) error {
	a.err = ctx.Err()
	_, a.hasDeadline = ctx.Deadline()
	return nil
}

func TestReceiver_AcceptOutlivesTheSender(t *testing.T) {
	acc := &ctxAccepter{}
	rcv, err := New([]Source{crmSource()}, testRegistry(t), acc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the sender hung up
	if a := rcv.accept(ctx, Event{DeliveryID: "d"}); a.status != http.StatusAccepted {
		t.Errorf("status %d, want 202", a.status)
	}
	if acc.err != nil || !acc.hasDeadline {
		t.Errorf("Accept's context: err %v, deadline %v; want live, with the accept timeout", acc.err, acc.hasDeadline)
	}
}

func TestReceiver_RateLimit(t *testing.T) {
	src := crmSource()
	src.RateLimit = RateLimit{PerSecond: 1, Burst: 3}
	h := newHarness(t, []Source{src})

	var statuses []int
	var remaining []string
	for i := range 10 {
		give := request{}
		if i == 5 {
			give.signature = "-" // refused by the limit before its signature is looked at
		}
		got := h.send(t, give)
		wantRateHeaders(t, got)
		statuses = append(statuses, got.status)
		remaining = append(remaining, got.header.Get("X-RateLimit-Remaining"))
		if got.header.Get("X-RateLimit-Limit") != "3" {
			t.Errorf("request %d: X-RateLimit-Limit %q, want 3", i, got.header.Get("X-RateLimit-Limit"))
		}
		// Empty after the third take at t0: full again 3s later.
		if i >= 2 && got.header.Get("X-RateLimit-Reset") != strconv.FormatInt(t0.Unix()+3, 10) {
			t.Errorf("request %d: X-RateLimit-Reset %q, want %d", i, got.header.Get("X-RateLimit-Reset"), t0.Unix()+3)
		}
		if got.status == http.StatusTooManyRequests {
			if got.header.Get("Retry-After") != "1" {
				t.Errorf("429: Retry-After %q, want 1", got.header.Get("Retry-After"))
			}
			if msg, _ := got.body["error"].(string); !strings.Contains(msg, `rate limit of source "crm" exceeded`) {
				t.Errorf("429: %s", got.raw)
			}
		}
	}
	wantStatuses := []int{202, 202, 202, 429, 429, 429, 429, 429, 429, 429}
	if !slices.Equal(statuses, wantStatuses) {
		t.Errorf("statuses %v, want %v", statuses, wantStatuses)
	}
	if want := []string{"2", "1", "0", "0", "0", "0", "0", "0", "0", "0"}; !slices.Equal(remaining, want) {
		t.Errorf("X-RateLimit-Remaining %v, want %v", remaining, want)
	}
	if calls, _ := h.acc.counts(); calls != 3 {
		t.Errorf("Accepter called %d times, want 3", calls)
	}

	h.clock.advance(time.Second)
	if got := h.send(t, request{}); got.status != http.StatusAccepted || got.header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("a second later: %d remaining %q, want 202 and 0", got.status, got.header.Get("X-RateLimit-Remaining"))
	}
}

func TestReceiver_RateLimitConcurrentBurst(t *testing.T) {
	src := crmSource()
	src.RateLimit = RateLimit{PerSecond: 0.001, Burst: 5}
	h := newHarness(t, []Source{src})

	const n = 40
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
	)
	for range n {
		wg.Go(func() {
			got := h.send(t, request{})
			wantRateHeaders(t, got)
			if got.status == http.StatusTooManyRequests && got.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			mu.Lock()
			counts[got.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if counts[http.StatusAccepted] != 5 || counts[http.StatusTooManyRequests] != n-5 {
		t.Errorf("answers %v, want 5 × 202 and %d × 429", counts, n-5)
	}
	if calls, recorded := h.acc.counts(); calls != 5 || recorded != 5 {
		t.Errorf("Accepter: %d calls, %d recorded; want 5", calls, recorded)
	}
}

func TestReceiver_RateLimitPerSource(t *testing.T) {
	a, b := crmSource(), crmSource()
	a.RateLimit = RateLimit{PerSecond: 0.001, Burst: 1}
	b.Name = "billing"
	h := newHarness(t, []Source{a, b})
	h.send(t, request{})
	if got := h.send(t, request{}); got.status != http.StatusTooManyRequests {
		t.Fatalf("crm over its limit: %d", got.status)
	}
	if got := h.send(t, request{source: "billing"}); got.status != http.StatusAccepted {
		t.Errorf("billing while crm is limited: %d %s, want 202", got.status, got.raw)
	}
}

func TestReceiver_Routes(t *testing.T) {
	b := crmSource()
	b.Name = "billing"
	h := newHarness(t, []Source{crmSource(), b})
	tests := []struct {
		name       string
		give       request
		wantStatus int
		wantError  string
		wantRate   bool
	}{
		{name: "unknown source", give: request{source: "shop"}, wantStatus: http.StatusNotFound, wantError: `no webhook source "shop"`},
		{name: "no source", give: request{path: "/webhooks/"}, wantStatus: http.StatusNotFound, wantError: "webhooks are received at POST /webhooks/{source}"},
		{name: "below a source", give: request{path: "/webhooks/crm/x"}, wantStatus: http.StatusNotFound, wantError: "no such endpoint"},
		{name: "elsewhere", give: request{path: "/"}, wantStatus: http.StatusNotFound, wantError: "no such endpoint"},
		{name: "GET a source", give: request{method: http.MethodGet}, wantStatus: http.StatusMethodNotAllowed, wantError: "POST", wantRate: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := h.send(t, tt.give)
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", got.status, tt.wantStatus, got.raw)
			}
			if msg, _ := got.body["error"].(string); !strings.Contains(msg, tt.wantError) {
				t.Errorf(`"error" = %q, want it to contain %q`, msg, tt.wantError)
			}
			if tt.wantRate {
				wantRateHeaders(t, got)
				if got.header.Get("Allow") != http.MethodPost {
					t.Errorf("Allow %q, want POST", got.header.Get("Allow"))
				}
				return
			}
			if s := toStrings(got.body["sources"]); !slices.Equal(s, []string{"billing", "crm"}) {
				t.Errorf(`"sources" = %q, want [billing crm]`, s)
			}
		})
	}
	if calls, _ := h.acc.counts(); calls != 0 {
		t.Errorf("Accepter called %d times", calls)
	}
}

func TestReceiver_LogsNoSecretsOrBodies(t *testing.T) {
	rotating := crmSource()
	rotating.Secrets = []string{secretNew, secretOld}
	h := newHarness(t, []Source{rotating})
	const badEmail = `{"type":"contact.updated","data":{"id":"key-31337","updated_at":"2026-11-23T10:15:00Z","email":"dave@@example.com"}}`
	sig := Sign("", h.clock.now(), []byte(badEmail), secretOld)
	h.send(t, request{delivery: "log-1"})
	h.send(t, request{delivery: "log-2", body: badEmail, signature: sig})
	h.send(t, request{delivery: "log-3", signature: Sign("", h.clock.now(), []byte(validBody), secretOther)})
	h.send(t, request{delivery: "log-4", body: "secret-ish text, not JSON"})
	h.acc.setErr(errors.New("temporal unavailable"))
	h.send(t, request{delivery: "log-5"})

	logs := h.logs.String()
	for _, want := range []string{`"delivery":"log-1"`, `"status":202`, `"reason":"quarantined (1 errors)"`, `"status":401`, `"status":400`, `"status":503`, "temporal unavailable"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	_, macs, _ := strings.Cut(sig, ",v1=")
	// The peer's address is logged, and its ephemeral port may hold any
	// digits (once 47114): it is left out of the search for the body's.
	scrubbed := regexp.MustCompile(`"remote":"[^"]*"`).ReplaceAllString(logs, `"remote":""`)
	for _, leak := range []string{secretNew, secretOld, secretOther, "carol@example.com", "dave@@example.com", "key-31337", "4711", "secret-ish", macs} {
		if strings.Contains(scrubbed, leak) {
			t.Errorf("logs contain %q:\n%s", leak, logs)
		}
	}
}

func TestNew(t *testing.T) {
	reg := testRegistry(t)
	noSchema := crmSource()
	noSchema.Schema = ""
	unknownSchema := crmSource()
	unknownSchema.Schema = "orders.schema.json"
	bad := crmSource()
	bad.Name = "bad"
	bad.Secrets = nil
	tests := []struct {
		name    string
		sources []Source
		reg     bool
		acc     Accepter
		want    []string // every line of the error
	}{
		{name: "valid", sources: []Source{crmSource()}, reg: true, acc: &fakeAccepter{}},
		{name: "no schema, no registry", sources: []Source{noSchema}, acc: &fakeAccepter{}},
		{name: "nothing", want: []string{"webhook: no sources", "webhook: no Accepter"}},
		{
			name:    "every source's problems",
			sources: []Source{crmSource(), crmSource(), unknownSchema, bad},
			reg:     true,
			acc:     &fakeAccepter{},
			want: []string{
				`webhook sources[1] (crm): name: "crm" is already the name of another source`,
				`webhook sources[2] (crm): name: "crm" is already the name of another source`,
				`schema: no schema "orders.schema.json"; known schemas: events.schema.json, items.schema.json`,
				"webhook sources[3] (bad): secrets: at least one secret is required",
			},
		},
		{name: "schema without a registry", sources: []Source{crmSource()}, acc: &fakeAccepter{},
			want: []string{`webhook sources[0] (crm): schema: "events.schema.json" named but no schema registry given`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := reg
			if !tt.reg {
				r = nil
			}
			rcv, err := New(tt.sources, r, tt.acc)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if got := rcv.Sources(); len(got) != len(tt.sources) {
					t.Errorf("Sources() = %v", got)
				}
				return
			}
			if err == nil {
				t.Fatal("New: no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("error has %d lines, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// Example of a sender: the header a source's webhooks carry.
func ExampleSign() {
	body := []byte(`{"type":"contact.updated","data":{"id":42}}`)
	fmt.Println(Sign("", time.Unix(1795428900, 0), body, "the shared secret"))
	// Output: t=1795428900,v1=295b14028e2e44200448ce11f297817c55ec1dde82e0cf9256f7dcd0350ed7d4
}
