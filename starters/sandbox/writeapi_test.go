package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestServer_CreateCustomer(t *testing.T) {
	clock := newFakeClock()
	s, api := newServed(t, Options{Contacts: 10, Now: clock.Now})
	r := api.call("POST", "/v1/customers", cust("Ada@Example.com", "name", "Ada Lovelace", "external_ref", "pg-42",
		"plan", "pro", "metadata", map[string]any{"source": "pg", "n": 1}, "tags", []string{"a", "b"}))
	c := r.customer(t, http.StatusCreated)
	want := Customer{
		ID: "cus_00000001", Email: "Ada@Example.com", Name: "Ada Lovelace", ExternalRef: "pg-42", Plan: "pro",
		Version: 1, CreatedAt: "2026-01-02T03:04:05.000Z", UpdatedAt: "2026-01-02T03:04:05.000Z",
		Extra: map[string]json.RawMessage{"metadata": json.RawMessage(`{"n":1,"source":"pg"}`), "tags": json.RawMessage(`["a","b"]`)},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("created %+v\nwant %+v", c, want)
	}
	if r.header.Get("ETag") != `"v1"` || r.header.Get("Location") != "/v1/customers/cus_00000001" || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("headers %v", r.header)
	}
	// The extra members are served after the named ones, in key order.
	if !strings.HasSuffix(strings.TrimSpace(string(r.body)), `"updated_at":"2026-01-02T03:04:05.000Z","metadata":{"n":1,"source":"pg"},"tags":["a","b"]}`) {
		t.Fatalf("body %s", r.body)
	}
	// What the Go API says is what GET serves.
	if got := s.Customers(); !reflect.DeepEqual(got, []Customer{want}) {
		t.Fatalf("Customers() %+v", got)
	}
	if got := api.call("GET", "/v1/customers/"+c.ID, nil).customer(t, 200); !reflect.DeepEqual(got, want) {
		t.Fatalf("GET %+v", got)
	}
	clock.Advance(time.Second)
	second := api.call("POST", "/v1/customers", cust("grace@example.com")).customer(t, 201)
	if second.ID != "cus_00000002" || second.Name != "" || second.Extra != nil || second.CreatedAt != "2026-01-02T03:04:06.000Z" {
		t.Fatalf("second %+v", second)
	}
	if st := s.WriteStats(); st.Total != 2 || st.ByMethod["POST"][201] != 2 {
		t.Fatalf("write stats %+v", st)
	}
	if st := s.Stats(); st.Total != 3 || st.ByStatus[201] != 2 {
		t.Fatalf("stats %+v: writes are API requests too", st)
	}
}

func TestServer_CreateCustomerRefused(t *testing.T) {
	tests := []struct {
		name   string
		body   any
		header []string
		status int
		typ    string
		field  string
		want   string // in the message
	}{
		{name: "no email", body: map[string]any{"name": "x"}, status: 422, typ: "validation", field: "email", want: "required"},
		{name: "null email", body: map[string]any{"email": nil}, status: 422, typ: "validation", field: "email", want: "required"},
		{name: "email not a string", body: map[string]any{"email": 42}, status: 422, typ: "validation", field: "email", want: "string"},
		{name: "email without @", body: cust("ada.example.com"), status: 422, typ: "validation", field: "email", want: "email address"},
		{name: "email with spaces", body: cust(" ada@example.com "), status: 422, typ: "validation", field: "email", want: "no spaces"},
		{name: "name not a string", body: cust("a@example.com", "name", []int{1}), status: 422, typ: "validation", field: "name", want: "string"},
		{name: "unknown plan", body: cust("a@example.com", "plan", "gold"), status: 422, typ: "validation", field: "plan", want: "free, starter, pro, enterprise"},
		{name: "caller's id", body: cust("a@example.com", "id", 7), status: 422, typ: "validation", field: "id", want: "external_ref"},
		{name: "version", body: cust("a@example.com", "version", 3), status: 422, typ: "validation", field: "version", want: "server"},
		{name: "key as a member", body: cust("a@example.com", "idempotency_key", "k"), status: 422, typ: "validation", field: "idempotency_key", want: "header"},
		{name: "duplicate email, other case", body: cust("TAKEN@example.com"), status: 409, typ: "conflict", field: "email", want: "cus_00000001"},
		{name: "not JSON", body: `{"email": "a@example.com"`, status: 400, typ: "invalid_request", want: "not JSON"},
		{name: "empty body", body: "", status: 400, typ: "invalid_request", want: "empty"},
		{name: "an array", body: `[{"email":"a@example.com"}]`, status: 400, typ: "invalid_request", want: "array"},
		{name: "form encoded", body: "email=a%40example.com", header: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, typ: "invalid_request", want: "application/json"},
		{name: "too large", body: `{"email":"a@example.com","x":"` + strings.Repeat("x", maxWriteBody) + `"}`, status: 413, typ: "invalid_request", want: "larger"},
		{name: "key too long", body: cust("a@example.com"), header: []string{"Idempotency-Key", strings.Repeat("k", 256)}, status: 400, typ: "invalid_request", want: "Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, api := newServed(t, Options{Contacts: 10})
			if _, err := s.SeedCustomers(Customer{Email: "taken@example.com"}); err != nil {
				t.Fatal(err)
			}
			r := api.call("POST", "/v1/customers", tt.body, tt.header...)
			e := r.wantError(t, tt.status, tt.typ, tt.field)
			if !strings.Contains(e.Message, tt.want) {
				t.Fatalf("message %q does not say %q", e.Message, tt.want)
			}
			if tt.status == 409 && e.ExistingID != "cus_00000001" {
				t.Fatalf("existing_id %q", e.ExistingID)
			}
			if n := len(s.Customers()); n != 1 {
				t.Fatalf("%d customers after a refused create", n)
			}
		})
	}
}

func TestServer_IdempotencyKey(t *testing.T) {
	clock := newFakeClock()
	s, api := newServed(t, Options{Contacts: 10, Now: clock.Now})
	key := []string{"Idempotency-Key", "wf-1/act-7"}
	first := api.call("POST", "/v1/customers", cust("ada@example.com", "name", "Ada"), key...)
	created := first.customer(t, 201)

	// The same request again, even spelled differently: the first answer.
	for _, body := range []string{
		`{"email":"ada@example.com","name":"Ada"}`,
		"{\n  \"name\": \"Ada\",\n  \"email\": \"ada@example.com\"\n}",
	} {
		clock.Advance(time.Hour)
		r := api.call("POST", "/v1/customers", body, key...)
		if got := r.customer(t, 201); !reflect.DeepEqual(got, created) || r.header.Get("Idempotent-Replayed") != "true" ||
			r.header.Get("Location") != first.header.Get("Location") || string(r.body) != string(first.body) {
			t.Fatalf("replay: %d %v %s", r.status, r.header, r.body)
		}
	}
	if n := len(s.Customers()); n != 1 {
		t.Fatalf("%d customers after three POSTs with one key", n)
	}

	// The same key for another body, or another endpoint: refused, nothing written.
	e := api.call("POST", "/v1/customers", cust("ada@example.com", "name", "Ada L."), key...).
		wantError(t, 422, ErrorTypeIdempotencyMismatch, "")
	if !strings.Contains(e.Message, "wf-1/act-7") || !strings.Contains(e.Message, "different body") || !strings.Contains(e.Message, "new key") {
		t.Fatalf("mismatch message %q", e.Message)
	}
	e = api.call("POST", "/v1/notifications", cust("ada@example.com", "name", "Ada"), key...).
		wantError(t, 422, ErrorTypeIdempotencyMismatch, "")
	if !strings.Contains(e.Message, "POST /v1/customers") {
		t.Fatalf("mismatch message %q does not name the first request", e.Message)
	}
	if got, _ := s.Customer(created.ID); got.Name != "Ada" || len(s.Notifications()) != 0 {
		t.Fatalf("a refused key changed %+v or notified %d", got, len(s.Notifications()))
	}

	// A refused request is not remembered: corrected, it goes through under its key.
	k2 := []string{"Idempotency-Key", "wf-1/act-8"}
	api.call("POST", "/v1/customers", cust("grace@example"), k2...).wantError(t, 422, "validation", "email")
	api.call("POST", "/v1/customers", cust("grace@example.com"), k2...).customer(t, 201)

	// Keys are forgotten after IdempotencyKeyTTL from their first use.
	clock.Advance(IdempotencyKeyTTL - 2*time.Hour)
	api.call("POST", "/v1/customers", cust("ada@example.com", "name", "Ada"), key...).wantError(t, 409, "conflict", "email")

	st := s.WriteStats()
	if st.Replays != 2 || st.ByMethod["POST"][201] != 4 || st.ByMethod["POST"][422] != 3 || st.ByMethod["POST"][409] != 1 {
		t.Fatalf("write stats %+v", st)
	}
}

func TestServer_LostResponseThenRetryWithTheKey(t *testing.T) {
	tests := []struct {
		name    string
		faults  WriteFaults
		method  string
		path    string
		body    any
		retried int // the status of the retry with the same key
		without int // the status of the retry without a key
	}{
		{name: "create", faults: WriteFaults{LostResponseNext: 1}, method: "POST", path: "/v1/customers",
			body: cust("ada@example.com"), retried: 201, without: 409},
		{name: "create every 3rd", faults: WriteFaults{LostResponseEvery: 3, Resource: ResourceCustomers}, method: "POST", path: "/v1/customers",
			body: cust("ada@example.com"), retried: 201, without: 409},
		{name: "patch", faults: WriteFaults{LostResponseNext: 1, Method: "patch"}, method: "PATCH", path: "/v1/customers/cus_00000001",
			body: map[string]any{"plan": "pro"}, retried: 200, without: 200},
		{name: "delete", faults: WriteFaults{LostResponseNext: 1, Method: "DELETE"}, method: "DELETE", path: "/v1/customers/cus_00000001",
			retried: 204, without: 404},
		{name: "notification", faults: WriteFaults{LostResponseNext: 1, Resource: ResourceNotifications}, method: "POST", path: "/v1/notifications",
			body: map[string]any{"event": "synced"}, retried: 202, without: 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, api := newServed(t, Options{Contacts: 10})
			if tt.path != "/v1/customers" {
				if _, err := s.SeedCustomers(Customer{Email: "first@example.com"}); err != nil {
					t.Fatal(err)
				}
			}
			s.SetFaults(Faults{Writes: tt.faults})
			for i := range tt.faults.LostResponseEvery - 1 { // the writes before the 3rd
				api.call("POST", "/v1/customers", cust(fmt.Sprintf("warm%d@example.com", i))).customer(t, 201)
			}
			before := len(s.Customers())
			key := []string{"Idempotency-Key", "lost-1"}
			r := api.call(tt.method, tt.path, tt.body, key...)
			r.wantError(t, 500, ErrorTypeAPI, "")
			// The write happened although its answer was lost.
			switch tt.name {
			case "create", "create every 3rd":
				if n := len(s.Customers()); n != before+1 {
					t.Fatalf("%d customers after the lost create, want %d", n, before+1)
				}
			case "patch":
				if c, _ := s.Customer("cus_00000001"); c.Plan != "pro" || c.Version != 2 {
					t.Fatalf("after the lost patch: %+v", c)
				}
			case "delete":
				if _, ok := s.Customer("cus_00000001"); ok {
					t.Fatal("customer still there after the lost delete")
				}
			case "notification":
				if n := len(s.Notifications()); n != 1 {
					t.Fatalf("%d notifications after the lost one", n)
				}
			}
			retry := api.call(tt.method, tt.path, tt.body, key...)
			if retry.status != tt.retried || retry.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("retry with the key: %d, replayed %q: %s", retry.status, retry.header.Get("Idempotent-Replayed"), retry.body)
			}
			if tt.retried == 201 {
				c := retry.customer(t, 201)
				if got, ok := s.Customer(c.ID); !ok || !reflect.DeepEqual(got, c) || len(s.Customers()) != before+1 {
					t.Fatalf("the retry answered %+v; stored %+v (%d customers)", c, got, len(s.Customers()))
				}
			}
			// Without the key a retry is a second write.
			if again := api.call(tt.method, tt.path, tt.body); again.status != tt.without {
				t.Fatalf("retry without a key: %d, want %d: %s", again.status, tt.without, again.body)
			}
			if st := s.WriteStats(); st.LostResponses != 1 || st.Replays != 1 {
				t.Fatalf("write stats %+v", st)
			}
		})
	}
}

func TestServer_ClientTimeoutShorterThanWriteLatency(t *testing.T) {
	s, api := newServed(t, Options{Contacts: 10, Faults: Faults{Writes: WriteFaults{Latency: 300 * time.Millisecond}}})
	impatient := *api
	impatient.c = &http.Client{Timeout: 30 * time.Millisecond}
	key := []string{"Idempotency-Key", "slow-1"}
	if _, err := impatient.try("POST", "/v1/customers", cust("ada@example.com"), key...); err == nil {
		t.Fatal("a 30ms client got an answer from a 300ms write")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Customers()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the write the client gave up on never happened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := api.call("POST", "/v1/customers", cust("ada@example.com"), key...).customer(t, 201)
	if c.ID != "cus_00000001" || len(s.Customers()) != 1 {
		t.Fatalf("retry answered %+v with %d customers", c, len(s.Customers()))
	}
}

func TestServer_WriteFaults(t *testing.T) {
	// Each case makes 9 requests: creates of a@, b@, ... with no key.
	tests := []struct {
		name    string
		faults  WriteFaults
		want    []int // statuses, in order
		created int
	}{
		{name: "every 3rd", faults: WriteFaults{FailEvery: 3}, want: []int{201, 201, 503, 201, 201, 503, 201, 201, 503}, created: 6},
		{name: "next 2 with 429", faults: WriteFaults{FailNext: 2, FailStatus: 429, FailRetryAfter: 4}, want: []int{429, 429, 201, 201, 201, 201, 201, 201, 201}, created: 7},
		{name: "every 4th with 400", faults: WriteFaults{FailEvery: 4, FailStatus: 400}, want: []int{201, 201, 201, 400, 201, 201, 201, 400, 201}, created: 7},
		{name: "error rate 1", faults: WriteFaults{ErrorRate: 1}, want: []int{500, 500, 500, 500, 500, 500, 500, 500, 500}, created: 0},
		{name: "lost every 3rd", faults: WriteFaults{LostResponseEvery: 3}, want: []int{201, 201, 500, 201, 201, 500, 201, 201, 500}, created: 9},
		{name: "other resource", faults: WriteFaults{FailEvery: 1, Resource: ResourceNotifications}, want: []int{201, 201, 201, 201, 201, 201, 201, 201, 201}, created: 9},
		{name: "other method", faults: WriteFaults{FailEvery: 1, Method: "PUT"}, want: []int{201, 201, 201, 201, 201, 201, 201, 201, 201}, created: 9},
		{name: "fail before lost", faults: WriteFaults{FailNext: 1, LostResponseNext: 1}, want: []int{503, 500, 201, 201, 201, 201, 201, 201, 201}, created: 8},
		{name: "latency only delays", faults: WriteFaults{Latency: 5 * time.Millisecond}, want: []int{201, 201, 201, 201, 201, 201, 201, 201, 201}, created: 9},
	}
	for _, tt := range tests {
		for _, via := range []string{"options", "SetFaults", "admin"} {
			t.Run(tt.name+"/"+via, func(t *testing.T) {
				o := Options{Seed: 5, Contacts: 30}
				if via == "options" {
					o.Faults.Writes = tt.faults
				}
				s, api := newServed(t, o)
				switch via {
				case "SetFaults":
					s.SetFaults(Faults{Writes: tt.faults})
				case "admin":
					r := api.call("POST", "/admin/faults", Faults{Writes: tt.faults})
					if r.status != 200 {
						t.Fatalf("POST /admin/faults: %d %s", r.status, r.body)
					}
				}
				start := time.Now()
				var got []int
				for i := range tt.want {
					r := api.call("POST", "/v1/customers", cust(fmt.Sprintf("%c@example.com", 'a'+i)))
					got = append(got, r.status)
					if r.status >= 400 {
						r.apiError(t)
					}
					if r.status == 429 && r.header.Get("Retry-After") != "4" {
						t.Fatalf("429 with Retry-After %q", r.header.Get("Retry-After"))
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("statuses %v, want %v", got, tt.want)
				}
				if n := len(s.Customers()); n != tt.created {
					t.Fatalf("%d customers created, want %d", n, tt.created)
				}
				if tt.faults.Latency > 0 && time.Since(start) < time.Duration(len(tt.want))*tt.faults.Latency {
					t.Fatalf("9 writes in %v with %v latency each", time.Since(start), tt.faults.Latency)
				}
				// Reads of customers and of the CRM are never hit by write faults.
				if r := api.call("GET", "/v1/customers?limit=100", nil); r.status != 200 {
					t.Fatalf("GET /v1/customers: %d", r.status)
				}
				if r := api.call("GET", "/v1/contacts", nil); r.status != 200 {
					t.Fatalf("GET /v1/contacts: %d", r.status)
				}
				// Lost responses are the writes that happened without a 201.
				st := s.WriteStats()
				failed := len(got) - countInts(got, 201)
				if st.LostResponses != tt.created-countInts(got, 201) || st.Injected != failed-st.LostResponses {
					t.Fatalf("write stats %+v for statuses %v", st, got)
				}
			})
		}
	}
}

func countInts(xs []int, x int) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

func TestServer_ReadAndWriteFaultsAreApart(t *testing.T) {
	s, api := newServed(t, Options{Contacts: 10, Faults: Faults{FailNext: 2, ErrorRate: 0}})
	api.call("POST", "/v1/customers", cust("a@example.com")).customer(t, 201)
	api.call("GET", "/v1/customers/cus_00000001", nil).customer(t, 200)
	if r := api.call("GET", "/v1/contacts", nil); r.status != 503 {
		t.Fatalf("the read fault went elsewhere: GET /v1/contacts %d", r.status)
	}
	s.SetFaults(Faults{Writes: WriteFaults{FailNext: 1}})
	if r := api.call("GET", "/v1/contacts", nil); r.status != 200 {
		t.Fatalf("a write fault hit a read: %d", r.status)
	}
	api.call("POST", "/v1/customers", cust("b@example.com")).wantError(t, 503, ErrorTypeAPI, "")
	if f := s.Faults(); f.Writes.FailNext != 0 {
		t.Fatalf("Faults() %+v: FailNext does not count down", f.Writes)
	}
}

func TestServer_UpdateCustomer(t *testing.T) {
	clock := newFakeClock()
	s, api := newServed(t, Options{Contacts: 10, Now: clock.Now})
	seeded, err := s.SeedCustomers(
		Customer{Email: "ada@example.com", Name: "Ada", Plan: "free", ExternalRef: "1",
			Extra: map[string]json.RawMessage{"metadata": json.RawMessage(`{"a":1,"b":{"c":2}}`), "note": json.RawMessage(`"x"`)}},
		Customer{Email: "grace@example.com"},
	)
	if err != nil {
		t.Fatal(err)
	}
	id := seeded[0].ID
	path := "/v1/customers/" + id
	clock.Advance(time.Minute)

	// PATCH merges: members set, null removes, objects merge.
	r := api.call("PATCH", path, map[string]any{"plan": "pro", "note": nil, "metadata": map[string]any{"b": map[string]any{"d": 3}, "a": nil}},
		"If-Match", `"v1"`)
	c := r.customer(t, 200)
	want := Customer{ID: id, Email: "ada@example.com", Name: "Ada", Plan: "pro", ExternalRef: "1", Version: 2,
		CreatedAt: seeded[0].CreatedAt, UpdatedAt: "2026-01-02T03:05:05.000Z",
		Extra: map[string]json.RawMessage{"metadata": json.RawMessage(`{"b":{"c":2,"d":3}}`)}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("patched %+v\nwant %+v", c, want)
	}

	// A stale or weak If-Match is refused with the current ETag; nothing changes.
	for _, ifMatch := range []string{`"v1"`, `W/"v2"`, `"v3", "v1"`} {
		r = api.call("PUT", path, cust("ada@example.com"), "If-Match", ifMatch)
		e := r.wantError(t, 412, ErrorTypePreconditionFailed, "")
		if r.header.Get("ETag") != `"v2"` || !strings.Contains(e.Message, `"v2"`) {
			t.Fatalf("412 ETag %q message %q", r.header.Get("ETag"), e.Message)
		}
	}
	if got, _ := s.Customer(id); !reflect.DeepEqual(got, want) {
		t.Fatalf("a refused write changed %+v", got)
	}

	// PUT replaces: what is not sent is gone. The read-only members of a
	// GET can be sent back; a matching list or * passes If-Match.
	clock.Advance(time.Minute)
	r = api.call("PUT", path, map[string]any{"id": id, "version": 2, "created_at": "x", "email": "ADA@example.com", "name": "Ada L."},
		"If-Match", `"v1", "v2"`)
	c = r.customer(t, 200)
	want = Customer{ID: id, Email: "ADA@example.com", Name: "Ada L.", Version: 3, CreatedAt: seeded[0].CreatedAt, UpdatedAt: "2026-01-02T03:06:05.000Z"}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("replaced %+v\nwant %+v", c, want)
	}
	api.call("PATCH", path, map[string]any{"name": "Ada"}, "If-Match", "*").customer(t, 200)
	api.call("PATCH", path, map[string]any{"name": "Ada"}).customer(t, 200) // no If-Match: unconditional

	tests := []struct {
		name          string
		method, path  string
		body          any
		status        int
		typ, field    string
		wantExisting  string
		wantInMessage string
	}{
		{name: "unknown id", method: "PUT", path: "/v1/customers/cus_0000zzzz", body: cust("x@example.com"), status: 404, typ: "not_found", wantInMessage: "cus_0000zzzz"},
		{name: "malformed id", method: "PATCH", path: "/v1/customers/42", body: map[string]any{}, status: 404, typ: "not_found"},
		{name: "email of another", method: "PATCH", path: path, body: map[string]any{"email": "Grace@Example.com"}, status: 409, typ: "conflict", field: "email", wantExisting: seeded[1].ID},
		{name: "email removed", method: "PATCH", path: path, body: map[string]any{"email": nil}, status: 422, typ: "validation", field: "email"},
		{name: "put without email", method: "PUT", path: path, body: map[string]any{"name": "x"}, status: 422, typ: "validation", field: "email"},
		{name: "other id in body", method: "PUT", path: path, body: cust("ada@example.com", "id", seeded[1].ID), status: 422, typ: "validation", field: "id"},
		{name: "bad plan", method: "PATCH", path: path, body: map[string]any{"plan": 3}, status: 422, typ: "validation", field: "plan"},
		{name: "not JSON", method: "PATCH", path: path, body: "plan=pro", status: 400, typ: "invalid_request"},
		{name: "not an object", method: "PUT", path: path, body: `"x"`, status: 400, typ: "invalid_request", wantInMessage: "a string"},
	}
	before, _ := s.Customer(id)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := api.call(tt.method, tt.path, tt.body).wantError(t, tt.status, tt.typ, tt.field)
			if e.ExistingID != tt.wantExisting || !strings.Contains(e.Message, tt.wantInMessage) {
				t.Fatalf("error %+v", e)
			}
			if got, _ := s.Customer(id); !reflect.DeepEqual(got, before) {
				t.Fatalf("a refused write changed %+v", got)
			}
		})
	}

	// Changing the email frees the old one.
	api.call("PATCH", path, map[string]any{"email": "lovelace@example.com"}).customer(t, 200)
	api.call("POST", "/v1/customers", cust("ada@example.com")).customer(t, 201)
	api.call("POST", "/v1/customers", cust("Lovelace@example.com")).wantError(t, 409, "conflict", "email")
}

func TestServer_DeleteCustomer(t *testing.T) {
	s, api := newServed(t, Options{Contacts: 10})
	c := api.call("POST", "/v1/customers", cust("ada@example.com")).customer(t, 201)
	path := "/v1/customers/" + c.ID
	api.call("DELETE", path, nil, "If-Match", `"v7"`).wantError(t, 412, ErrorTypePreconditionFailed, "")
	r := api.call("DELETE", path, nil, "If-Match", `"v1"`)
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("DELETE: %d %q", r.status, r.body)
	}
	api.call("DELETE", path, nil).wantError(t, 404, ErrorTypeNotFound, "")
	api.call("GET", path, nil).wantError(t, 404, ErrorTypeNotFound, "")
	api.call("PATCH", path, map[string]any{"name": "x"}).wantError(t, 404, ErrorTypeNotFound, "")
	if n := len(s.Customers()); n != 0 {
		t.Fatalf("%d customers after the delete", n)
	}
	// The email is free again; the id is not reused.
	if again := api.call("POST", "/v1/customers", cust("ADA@example.com")).customer(t, 201); again.ID != "cus_00000002" {
		t.Fatalf("id %s after a delete", again.ID)
	}
	if st := s.WriteStats(); st.ByMethod["DELETE"][204] != 1 || st.ByMethod["DELETE"][404] != 1 || st.ByMethod["DELETE"][412] != 1 {
		t.Fatalf("write stats %+v", st)
	}
}

func TestServer_ListCustomers(t *testing.T) {
	s, api := newServed(t, Options{Contacts: 10})
	var seed []Customer
	for i := range 25 {
		seed = append(seed, Customer{Email: fmt.Sprintf("c%02d@example.com", i), ExternalRef: strconv.Itoa(i % 5)})
	}
	all, err := s.SeedCustomers(seed...)
	if err != nil {
		t.Fatal(err)
	}
	api.call("DELETE", "/v1/customers/"+all[7].ID, nil)
	live := slices.Delete(slices.Clone(all), 7, 8)

	type page struct {
		Data    []Customer `json:"data"`
		HasMore bool       `json:"has_more"`
	}
	list := func(t *testing.T, q string) page {
		t.Helper()
		r := api.call("GET", "/v1/customers?"+q, nil)
		if r.status != 200 {
			t.Fatalf("GET ?%s: %d %s", q, r.status, r.body)
		}
		var p page
		if err := json.Unmarshal(r.body, &p); err != nil || p.Data == nil {
			t.Fatalf("GET ?%s: %s (%v)", q, r.body, err)
		}
		return p
	}
	// Walk pages of 4 by starting_after, starting after a deleted id midway.
	var walked []Customer
	q := url.Values{"limit": {"4"}}
	for pages := 0; ; pages++ {
		p := list(t, q.Encode())
		walked = append(walked, p.Data...)
		if !p.HasMore {
			break
		}
		if pages > 10 {
			t.Fatal("no end")
		}
		q.Set("starting_after", p.Data[len(p.Data)-1].ID)
	}
	if !reflect.DeepEqual(walked, live) || !reflect.DeepEqual(s.Customers(), live) {
		t.Fatalf("walked %d customers, want the %d live ones in id order", len(walked), len(live))
	}
	if p := list(t, "starting_after="+all[7].ID+"&limit=2"); len(p.Data) != 2 || p.Data[0].ID != all[8].ID {
		t.Fatalf("after a deleted id: %+v", p.Data)
	}

	tests := []struct {
		query   string
		want    []Customer
		hasMore bool
	}{
		{query: "", want: live[:10], hasMore: true},
		{query: "limit=1000", want: live},
		{query: "email=C03%40EXAMPLE.com", want: all[3:4]},
		{query: "email=c07%40example.com", want: []Customer{}},
		{query: "external_ref=2&limit=2", want: []Customer{all[2], all[12]}, hasMore: true},
		{query: "external_ref=2&starting_after=" + all[12].ID, want: []Customer{all[17], all[22]}},
		{query: "starting_after=" + all[24].ID, want: []Customer{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			p := list(t, tt.query)
			if !reflect.DeepEqual(p.Data, tt.want) || p.HasMore != tt.hasMore {
				t.Fatalf("%d customers has_more %v, want %d and %v", len(p.Data), p.HasMore, len(tt.want), tt.hasMore)
			}
		})
	}
	for _, q := range []string{"limit=0", "limit=x", "starting_after=42", "starting_after=cus_1"} {
		e := api.call("GET", "/v1/customers?"+q, nil).wantError(t, 400, ErrorTypeInvalidRequest, "")
		if param, _, _ := strings.Cut(q, "="); e.Field != param {
			t.Fatalf("?%s: field %q", q, e.Field)
		}
	}
	// One customer: ETag, If-None-Match, 404.
	r := api.call("GET", "/v1/customers/"+all[0].ID, nil, "If-None-Match", `"v1"`)
	if r.status != 304 || r.header.Get("ETag") != `"v1"` {
		t.Fatalf("If-None-Match: %d %v", r.status, r.header)
	}
	api.call("GET", "/v1/customers/cus_zzzzzzzz", nil).wantError(t, 404, ErrorTypeNotFound, "")
	if st := s.WriteStats(); st.Total != 1 {
		t.Fatalf("reads counted as writes: %+v", st)
	}
}

func TestServer_CustomerBatch(t *testing.T) {
	s, api := newServed(t, Options{Contacts: 10})
	first := api.call("POST", "/v1/customers", cust("ada@example.com"), "Idempotency-Key", "k-ada").customer(t, 201)
	body := []any{
		cust("grace@example.com", "external_ref", "g", "idempotency_key", "k-grace"),
		cust("ada@example.com", "idempotency_key", "k-ada"), // the same request as the POST above: replayed
		cust("GRACE@example.com"),                           // taken by item 0
		cust("no-at-sign"),
		"not an object",
		cust("alan@example.com", "idempotency_key", 7),
		cust("alan@example.com", "name", "Alan", "idempotency_key", "k-grace"), // key of item 0, other body
		cust("alan@example.com", "name", "Alan"),
	}
	r := api.call("POST", "/v1/customers/batch", body)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var results []BatchResult
	if err := json.Unmarshal(r.body, &results); err != nil || len(results) != len(body) {
		t.Fatalf("batch answer %s (%v)", r.body, err)
	}
	type brief struct {
		status   int
		id       string
		errType  string
		field    string
		existing string
		replayed bool
	}
	var got []brief
	for _, res := range results {
		b := brief{status: res.Status, replayed: res.Replayed}
		if (res.Customer == nil) == (res.Error == nil) {
			t.Fatalf("result %+v has not exactly one of customer and error", res)
		}
		if res.Customer != nil {
			b.id = res.Customer.ID
		} else {
			b.errType, b.field, b.existing = res.Error.Type, res.Error.Field, res.Error.ExistingID
		}
		got = append(got, b)
	}
	want := []brief{
		{status: 201, id: "cus_00000002"},
		{status: 201, id: first.ID, replayed: true},
		{status: 409, errType: "conflict", field: "email", existing: "cus_00000002"},
		{status: 422, errType: "validation", field: "email"},
		{status: 422, errType: "validation"},
		{status: 422, errType: "validation", field: "idempotency_key"},
		{status: 422, errType: ErrorTypeIdempotencyMismatch},
		{status: 201, id: "cus_00000003"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results\n%+v\nwant\n%+v", got, want)
	}
	if c, _ := s.Customer("cus_00000002"); c.ExternalRef != "g" || c.Extra != nil {
		t.Fatalf("the idempotency_key member was stored: %+v", c)
	}
	if !reflect.DeepEqual(*results[1].Customer, first) {
		t.Fatalf("replayed item %+v, first POST %+v", *results[1].Customer, first)
	}
	// An item key is the key of a POST of the same customer.
	replay := api.call("POST", "/v1/customers", cust("grace@example.com", "external_ref", "g"), "Idempotency-Key", "k-grace")
	if c := replay.customer(t, 201); c.ID != "cus_00000002" || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("POST with an item's key: %+v", c)
	}
	// A batch under an Idempotency-Key header is replayed whole.
	again := []any{cust("x@example.com"), cust("y@example.com")}
	b1 := api.call("POST", "/v1/customers/batch", again, "Idempotency-Key", "batch-1")
	b2 := api.call("POST", "/v1/customers/batch", again, "Idempotency-Key", "batch-1")
	if b1.status != 200 || b2.status != 200 || string(b1.body) != string(b2.body) || b2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("batch replay: %d %s / %d %s", b1.status, b1.body, b2.status, b2.body)
	}
	if n := len(s.Customers()); n != 5 {
		t.Fatalf("%d customers, want 5", n)
	}
	st := s.WriteStats()
	if st.BatchItems[201] != 5 || st.BatchItems[409] != 1 || st.BatchItems[422] != 4 || st.Replays != 3 {
		t.Fatalf("write stats %+v", st)
	}

	bad := []struct {
		name   string
		body   any
		status int
		typ    string
	}{
		{name: "empty", body: []any{}, status: 422, typ: "validation"},
		{name: "101 items", body: make([]map[string]any, MaxBatchSize+1), status: 422, typ: "validation"},
		{name: "an object", body: cust("z@example.com"), status: 400, typ: "invalid_request"},
		{name: "not JSON", body: "[{", status: 400, typ: "invalid_request"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			api.call("POST", "/v1/customers/batch", tt.body).wantError(t, tt.status, tt.typ, "")
		})
	}
	full := make([]any, MaxBatchSize)
	for i := range full {
		full[i] = cust(fmt.Sprintf("full%03d@example.com", i))
	}
	if r := api.call("POST", "/v1/customers/batch", full); r.status != 200 || len(s.Customers()) != 5+MaxBatchSize {
		t.Fatalf("a batch of %d: %d, %d customers", MaxBatchSize, r.status, len(s.Customers()))
	}
}

func TestServer_Notifications(t *testing.T) {
	s, api := newServed(t, Options{Contacts: 10})
	bodies := []string{`{"event":"sync.finished","run":"r1"}`, `[1, 2]`, `"plain"`, `{"event":"sync.finished","run":"r2"}`}
	var ids []string
	for i, b := range bodies {
		r := api.call("POST", "/v1/notifications", b, "Idempotency-Key", "n-"+strconv.Itoa(i))
		var ack struct{ ID, Status string }
		if err := json.Unmarshal(r.body, &ack); r.status != 202 || err != nil || ack.Status != "accepted" {
			t.Fatalf("notification %d: %d %s", i, r.status, r.body)
		}
		ids = append(ids, ack.ID)
	}
	if !slices.Equal(ids, []string{"ntf_00000001", "ntf_00000002", "ntf_00000003", "ntf_00000004"}) {
		t.Fatalf("ids %v", ids)
	}
	replay := api.call("POST", "/v1/notifications", bodies[0], "Idempotency-Key", "n-0")
	if replay.status != 202 || replay.header.Get("Idempotent-Replayed") != "true" || !strings.Contains(string(replay.body), ids[0]) {
		t.Fatalf("replay %d %s", replay.status, replay.body)
	}
	api.call("POST", "/v1/notifications", bodies[1], "Idempotency-Key", "n-0").wantError(t, 422, ErrorTypeIdempotencyMismatch, "")
	api.call("POST", "/v1/notifications", "not json").wantError(t, 400, ErrorTypeInvalidRequest, "")
	api.call("GET", "/v1/notifications", nil).wantError(t, 405, ErrorTypeMethodNotAllowed, "")
	got := s.Notifications()
	want := []string{`{"event":"sync.finished","run":"r1"}`, `[1,2]`, `"plain"`, `{"event":"sync.finished","run":"r2"}`}
	if len(got) != len(want) {
		t.Fatalf("%d notifications, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("notification %d: %s, want %s", i, got[i], want[i])
		}
	}
}

func TestServer_ConcurrentCreates(t *testing.T) {
	const workers, each = 8, 25
	t.Run("distinct emails and keys", func(t *testing.T) {
		s, api := newServed(t, Options{Contacts: 10})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					r, err := api.try("POST", "/v1/customers", cust(fmt.Sprintf("w%d-%d@example.com", w, i)),
						"Idempotency-Key", fmt.Sprintf("w%d-%d", w, i))
					if err != nil || r.status != 201 {
						t.Errorf("worker %d create %d: %d %s (%v)", w, i, r.status, r.body, err)
					}
				}
			})
		}
		wg.Wait()
		cs := s.Customers()
		if len(cs) != workers*each {
			t.Fatalf("%d customers, want %d", len(cs), workers*each)
		}
		for i, c := range cs {
			if want := seqID(customerIDPrefix, int64(i+1)); c.ID != want {
				t.Fatalf("customer %d has id %s, want %s: ids are a counter", i, c.ID, want)
			}
		}
	})
	t.Run("one email", func(t *testing.T) {
		s, api := newServed(t, Options{Contacts: 10})
		statuses := make([]int, workers*each)
		existing := make([]string, workers*each)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					n := w*each + i
					email := "same@example.com"
					if n%2 == 1 {
						email = "Same@EXAMPLE.com" // another spelling of one address
					}
					r, err := api.try("POST", "/v1/customers", cust(email), "Idempotency-Key", "k"+strconv.Itoa(n))
					if err != nil {
						t.Errorf("request %d: %v", n, err)
						continue
					}
					statuses[n] = r.status
					var e struct{ Error APIError }
					_ = json.Unmarshal(r.body, &e)
					existing[n] = e.Error.ExistingID
				}
			})
		}
		wg.Wait()
		created := s.Customers()
		if len(created) != 1 {
			t.Fatalf("%d customers for one email", len(created))
		}
		if countInts(statuses, 201) != 1 || countInts(statuses, 409) != workers*each-1 {
			t.Fatalf("%d 201s and %d 409s", countInts(statuses, 201), countInts(statuses, 409))
		}
		for n, st := range statuses {
			if st == 409 && existing[n] != created[0].ID {
				t.Fatalf("409 %d names %q, not %s", n, existing[n], created[0].ID)
			}
		}
	})
	t.Run("one key, overlapping", func(t *testing.T) {
		s, api := newServed(t, Options{Contacts: 10, Faults: Faults{Writes: WriteFaults{Latency: 20 * time.Millisecond}}})
		ids := make([]string, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				r, err := api.try("POST", "/v1/customers", cust("ada@example.com"), "Idempotency-Key", "one")
				if err != nil || r.status != 201 {
					t.Errorf("worker %d: %d %s (%v)", w, r.status, r.body, err)
					return
				}
				var c Customer
				_ = json.Unmarshal(r.body, &c)
				ids[w] = c.ID
			})
		}
		wg.Wait()
		for w, id := range ids {
			if id != "cus_00000001" {
				t.Fatalf("worker %d got customer %q", w, id)
			}
		}
		if n := len(s.Customers()); n != 1 {
			t.Fatalf("%d customers for one key", n)
		}
		if st := s.WriteStats(); st.Replays != workers-1 {
			t.Fatalf("%d replays, want %d", st.Replays, workers-1)
		}
	})
}

func TestServer_WriteRateLimit(t *testing.T) {
	clock := newFakeClock()
	s, api := newServed(t, Options{Contacts: 10, Now: clock.Now, RateLimit: RateLimit{Requests: 3, Window: time.Minute}})
	for i, wantRemaining := range []string{"2", "1", "0"} {
		r := api.call("POST", "/v1/customers", cust(fmt.Sprintf("c%d@example.com", i)))
		if r.status != 201 || r.header.Get("X-RateLimit-Remaining") != wantRemaining || r.header.Get("X-RateLimit-Limit") != "3" {
			t.Fatalf("write %d: %d, remaining %q", i, r.status, r.header.Get("X-RateLimit-Remaining"))
		}
	}
	r := api.call("POST", "/v1/customers", cust("c3@example.com"), "Idempotency-Key", "k3")
	r.wantError(t, 429, ErrorTypeRateLimited, "")
	if r.header.Get("Retry-After") != "55" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Reads and writes share the window.
	if r := api.call("GET", "/v1/contacts", nil); r.status != 429 {
		t.Fatalf("read after the writes used the window: %d", r.status)
	}
	if n := len(s.Customers()); n != 3 {
		t.Fatalf("%d customers: a throttled write happened", n)
	}
	clock.Advance(55 * time.Second)
	if c := api.call("POST", "/v1/customers", cust("c3@example.com"), "Idempotency-Key", "k3").customer(t, 201); c.ID != "cus_00000004" {
		t.Fatalf("after the window: %+v", c)
	}
	st := s.WriteStats()
	if st.RateLimited != 1 || st.ByMethod["POST"][429] != 1 || st.ByMethod["POST"][201] != 4 || st.Total != 5 {
		t.Fatalf("write stats %+v", st)
	}
	if s.Stats().RateLimited != 2 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

func TestServer_WriteAuth(t *testing.T) {
	auth := Auth{Token: "tok", APIKey: "key", ForbiddenAPIKey: "key-readonly"}
	tests := []struct {
		mode   string
		header []string
		status int
		typ    string
	}{
		{mode: AuthBearer, header: []string{"Authorization", "Bearer tok"}, status: 201},
		{mode: AuthBearer, status: 401, typ: ErrorTypeAuthentication},
		{mode: AuthBearer, header: []string{"Authorization", "Bearer key-readonly"}, status: 403, typ: ErrorTypePermission},
		{mode: AuthAPIKey, header: []string{"X-API-Key", "key"}, status: 201},
		{mode: AuthAPIKey, header: []string{"X-API-Key", "nope"}, status: 401, typ: ErrorTypeAuthentication},
		{mode: AuthAPIKey, header: []string{"X-API-Key", "key-readonly"}, status: 403, typ: ErrorTypePermission},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+strings.Join(tt.header, ":"), func(t *testing.T) {
			a := auth
			a.Mode = tt.mode
			s, api := newServed(t, Options{Contacts: 10, Auth: a})
			r := api.call("POST", "/v1/customers", cust("ada@example.com"), tt.header...)
			if tt.status == 201 {
				r.customer(t, 201)
				api.call("GET", "/v1/customers/cus_00000001", nil, tt.header...).customer(t, 200)
				return
			}
			e := r.wantError(t, tt.status, tt.typ, "")
			if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tt.status == 403 && !strings.Contains(e.Message, "may not write") {
				t.Fatalf("403 message %q", e.Message)
			}
			if len(s.Customers()) != 0 {
				t.Fatal("an unauthorized write happened")
			}
			api.call("GET", "/v1/customers", nil).wantError(t, 401, ErrorTypeAuthentication, "")
		})
	}
}

func TestServer_WriteRoutes(t *testing.T) {
	_, api := newServed(t, Options{Contacts: 10})
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{method: "GET", path: "/v1/customers/batch", status: 405, allow: "POST"},
		{method: "DELETE", path: "/v1/customers", status: 405, allow: "GET, HEAD, POST"},
		{method: "POST", path: "/v1/customers/cus_00000001", status: 405, allow: "GET, HEAD, PUT, PATCH, DELETE"},
		{method: "GET", path: "/v1/customers/cus_00000001/notes", status: 404},
		{method: "GET", path: "/v1/customers/", status: 404},
		{method: "POST", path: "/v1/notifications/x", status: 404},
	}
	for _, tt := range tests {
		r := api.call(tt.method, tt.path, nil)
		r.wantError(t, tt.status, errorTypeOf(tt.status), "")
		if r.header.Get("Allow") != tt.allow {
			t.Fatalf("%s %s: Allow %q, want %q", tt.method, tt.path, r.header.Get("Allow"), tt.allow)
		}
	}
}

func TestServer_CustomersGoAPI(t *testing.T) {
	s := mustNew(t, Options{Seed: 3, Contacts: 10})
	cs, err := s.SeedCustomers(Customer{Email: "a@example.com", Plan: "pro", Extra: map[string]json.RawMessage{"k": json.RawMessage(`{ "x" : 1 }`)}},
		Customer{Email: "b@example.com", Version: 9, CreatedAt: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if cs[0].ID != "cus_00000001" || cs[1].ID != "cus_00000002" || cs[1].Version != 1 || cs[1].CreatedAt == "ignored" ||
		string(cs[0].Extra["k"]) != `{"x":1}` {
		t.Fatalf("seeded %+v", cs)
	}
	refused := []struct {
		name string
		give []Customer
		want string
	}{
		{name: "taken email", give: []Customer{{Email: "c@example.com"}, {Email: "A@example.com"}}, want: "cus_00000001"},
		{name: "twice in the seed", give: []Customer{{Email: "c@example.com"}, {Email: "C@example.com"}}, want: "seed customer 0"},
		{name: "invalid", give: []Customer{{Email: "c@example.com"}, {Email: "c"}}, want: "email"},
		{name: "with an id", give: []Customer{{ID: "cus_00000009", Email: "c@example.com"}}, want: "assigned"},
		{name: "bad plan", give: []Customer{{Email: "c@example.com", Plan: "gold"}}, want: "plan"},
	}
	for _, tt := range refused {
		if _, err := s.SeedCustomers(tt.give...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("%s: %v, want an error about %q", tt.name, err, tt.want)
		}
	}
	if n := len(s.Customers()); n != 2 {
		t.Fatalf("%d customers after refused seeds: a seed is all or nothing", n)
	}
	// Copies: mutating what is returned changes nothing.
	c, ok := s.Customer("cus_00000001")
	c.Extra["k"][1] = 'X'
	c.Extra["new"] = json.RawMessage(`1`)
	if again, _ := s.Customer("cus_00000001"); !ok || string(again.Extra["k"]) != `{"x":1}` || len(again.Extra) != 1 {
		t.Fatalf("Customer returned shared state: %+v", again)
	}
	if _, ok := s.Customer("cus_00000003"); ok {
		t.Fatal("Customer of an unknown id")
	}

	// Reset: a new server's write side.
	api := serve(t, s)
	api.call("POST", "/v1/notifications", `{}`)
	api.call("POST", "/v1/customers", cust("c@example.com"), "Idempotency-Key", "k").customer(t, 201)
	s.ResetCustomers()
	if len(s.Customers()) != 0 || len(s.Notifications()) != 0 || s.WriteStats().Total != 0 {
		t.Fatalf("after reset: %d customers, %d notifications, %+v", len(s.Customers()), len(s.Notifications()), s.WriteStats())
	}
	if c := api.call("POST", "/v1/customers", cust("d@example.com"), "Idempotency-Key", "k").customer(t, 201); c.ID != "cus_00000001" {
		t.Fatalf("after reset the key is still known or ids did not restart: %+v", c)
	}
}

func TestServer_WritesAreDeterministic(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) }
	run := func() ([]Customer, []string) {
		s, api := newServed(t, Options{Seed: 11, Contacts: 10, Now: clock, Faults: Faults{Writes: WriteFaults{ErrorRate: 0.3}}})
		var bodies []string
		for i := range 30 {
			r := api.call("POST", "/v1/customers", cust(fmt.Sprintf("c%d@example.com", i), "plan", CustomerPlans()[i%4]))
			bodies = append(bodies, strconv.Itoa(r.status)+" "+string(r.body))
		}
		api.call("PATCH", "/v1/customers/cus_00000002", map[string]any{"name": "x"})
		return s.Customers(), bodies
	}
	c1, b1 := run()
	c2, b2 := run()
	if !reflect.DeepEqual(c1, c2) || !slices.Equal(b1, b2) {
		t.Fatal("same seed and requests, different customers or answers")
	}
	if n := len(c1); n < 10 || n > 29 {
		t.Fatalf("%d of 30 created at write error rate 0.3", n)
	}
}

func TestServer_WriteAdmin(t *testing.T) {
	s, api := newServed(t, Options{Contacts: 10})
	tests := []struct {
		method, path string
		body         any
		status       int
		want         string // regexp on the body
	}{
		{method: "POST", path: "/admin/customers/seed", body: []map[string]any{cust("a@example.com", "plan", "free", "x", 1), cust("b@example.com")}, status: 200, want: `"id":"cus_00000001".*"x":1.*"id":"cus_00000002"`},
		{method: "POST", path: "/admin/customers/seed", body: []map[string]any{cust("A@example.com")}, status: 422, want: `belongs to customer cus_00000001`},
		{method: "POST", path: "/admin/customers/seed", body: `{"email":"c@example.com"}`, status: 400, want: `array`},
		{method: "GET", path: "/admin/customers", status: 200, want: `^\{"data":\[\{"id":"cus_00000001".*\{"id":"cus_00000002"`},
		{method: "POST", path: "/v1/notifications", body: map[string]any{"n": 1}, status: 202, want: `ntf_00000001`},
		{method: "GET", path: "/admin/notifications", status: 200, want: `^\{"data":\[\{"n":1\}\]\}`},
		{method: "GET", path: "/admin/writes", status: 200, want: `"total":1,"by_method":\{"POST":\{"202":1\}\}`},
		{method: "POST", path: "/admin/faults", body: `{"writes":{"fail_every":2,"resource":"customers","method":"post","latency":"1ms"}}`, status: 200, want: `"writes":\{"resource":"customers","method":"POST","latency":"1ms","fail_next":0,"fail_every":2,"fail_status":503`},
		{method: "GET", path: "/admin/faults", status: 200, want: `"fail_every":2`},
		{method: "POST", path: "/admin/faults", body: `{"writes":{"fail_evry":2}}`, status: 400, want: `fail_evry`},
		{method: "POST", path: "/admin/faults", body: `{"writes":{"resource":"contacts"}}`, status: 400, want: `writes.resource`},
		{method: "POST", path: "/admin/faults", body: `{"writes":{"method":"GET"}}`, status: 400, want: `writes.method`},
		{method: "POST", path: "/admin/faults", body: `{"writes":{"lost_response_next":-1}}`, status: 400, want: `writes.lost_response_next`},
		{method: "POST", path: "/admin/faults", body: `{"writes":{"latency":"soon"}}`, status: 400, want: `writes.latency`},
		{method: "GET", path: "/admin/customers/reset", status: 405, want: `error`},
		{method: "POST", path: "/admin/customers/reset", status: 200, want: `reset`},
		{method: "GET", path: "/admin/customers", status: 200, want: `^\{"data":\[\]\}`},
	}
	for _, tt := range tests {
		r := api.call(tt.method, tt.path, tt.body)
		if r.status != tt.status || !regexp.MustCompile(tt.want).Match(r.body) {
			t.Fatalf("%s %s: %d %s, want %d and /%s/", tt.method, tt.path, r.status, r.body, tt.status, tt.want)
		}
	}
	// The refused POSTs left the last accepted faults in force.
	want := WriteFaults{Resource: ResourceCustomers, Method: "POST", Latency: time.Millisecond, FailEvery: 2, FailStatus: 503}
	if f := s.Faults().Writes; f != want {
		t.Fatalf("write faults %+v, want %+v", f, want)
	}
}

func TestCustomer_JSONRoundTrip(t *testing.T) {
	tests := []struct {
		give string
	}{
		{give: `{"id":"cus_00000001","email":"a@example.com","version":1,"created_at":"t","updated_at":"t"}`},
		{give: `{"id":"cus_00000001","email":"a@example.com","name":"A","external_ref":"r","plan":"pro","version":2,"created_at":"t","updated_at":"u","a":[1],"z":{"b":null}}`},
	}
	for _, tt := range tests {
		var c Customer
		if err := json.Unmarshal([]byte(tt.give), &c); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(c)
		if err != nil || string(b) != tt.give {
			t.Fatalf("round trip of %s: %s (%v)", tt.give, b, err)
		}
	}
}

// FuzzServer_CreateCustomer checks that no body makes the API fail or
// answer outside its contract.
func FuzzServer_CreateCustomer(f *testing.F) {
	for _, seed := range []string{`{"email":"a@example.com"}`, `{"email":"a@example.com","plan":"pro","x":{"y":[1,null]}}`,
		`{"email":null}`, `[]`, `{`, `"x"`, `{"id":1,"email":"a@b.c"}`, ``, `{"email":"a@example.com","name":{"":1}}`} {
		f.Add(seed)
	}
	s := mustNew(f, Options{Contacts: 10})
	f.Fuzz(func(t *testing.T, body string) {
		r := do(t, s.Handler(), http.MethodPost, "/v1/customers", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
		switch r.status {
		case 201:
			var c Customer
			if err := json.Unmarshal(r.body, &c); err != nil || !validCustomerID(c.ID) || c.Version != 1 {
				t.Fatalf("201 %s (%v)", r.body, err)
			}
			if got, ok := s.Customer(c.ID); !ok || !reflect.DeepEqual(got, c) {
				t.Fatalf("created %+v, stored %+v", c, got)
			}
		case 400, 409, 422:
			var e struct{ Error APIError }
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		default:
			t.Fatalf("body %q: status %d %s", body, r.status, r.body)
		}
	})
}

func TestValidEmail(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{give: "ada@example.com", want: true},
		{give: "Ada.Lovelace+crm@Example.CO.uk", want: true},
		{give: "a@b.c", want: true},
		{give: "ada@example", want: false},
		{give: "@example.com", want: false},
		{give: "ada@@example.com", want: false},
		{give: "ada@example..com", want: false},
		{give: "ada@.example.com", want: false},
		{give: "ada lovelace@example.com", want: false},
		{give: "ada@example.com\n", want: false},
		{give: "ada_at_example.com", want: false},
		{give: strings.Repeat("a", 250) + "@b.co", want: false},
	}
	for _, tt := range tests {
		if got := validEmail(tt.give); got != tt.want {
			t.Errorf("validEmail(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}
