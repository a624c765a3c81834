package sandbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestServer_PaginationWalksEveryRecordOnceInOrder(t *testing.T) {
	s := mustNew(t, Options{Seed: 3, Contacts: 437})
	ts := httptest.NewServer(s.Handler()) // Link targets are absolute URLs: follow them for real
	t.Cleanup(ts.Close)
	client := ts.Client()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Route every request (including Link targets) through the real server.
		u := ts.URL + r.URL.RequestURI()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		_, _ = w.Write(b.Bytes())
	})
	// A since that lands inside a run of equal updated_at values.
	contacts := contactKeys(s.Contacts())
	mid := wantKeys(contacts, &time.Time{})[len(contacts)/2]
	since := mustTime(mid.UpdatedAt)
	tests := []struct {
		name  string
		path  string
		keys  []rowKey
		size  int
		since *time.Time
	}{
		{name: "contacts by id, pages of 7", path: "/v1/contacts", keys: contacts, size: 7},
		{name: "contacts by id, one big page", path: "/v1/contacts", keys: contacts, size: 1000},
		{name: "contacts updated since, pages of 5", path: "/v1/contacts", keys: contacts, size: 5, since: &since},
		{name: "companies by id, pages of 4", path: "/v1/companies", keys: companyKeys(s.Companies()), size: 4},
	}
	for _, style := range []string{PaginationPage, PaginationOffset, PaginationCursor, PaginationLink} {
		for _, tt := range tests {
			t.Run(style+"/"+tt.name, func(t *testing.T) {
				q := url.Values{}
				if tt.since != nil {
					q.Set("updated_since", tt.since.Format(time.RFC3339Nano))
				}
				got := walk(t, h, tt.path, style, tt.size, q)
				want := wantKeys(tt.keys, tt.since)
				if len(want) == 0 || len(want) == len(tt.keys) && tt.since != nil {
					t.Fatalf("bad test: since keeps %d of %d records", len(want), len(tt.keys))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("walked %d records, want %d in order; first difference at %d", len(got), len(want), firstDiff(got, want))
				}
			})
		}
	}
}

func firstDiff(a, b []rowKey) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestServer_UpdatedSinceIsInclusiveAndOrderedByUpdatedAtThenID(t *testing.T) {
	s := mustNew(t, Options{Seed: 9, Contacts: 600})
	byUpd := wantKeys(contactKeys(s.Contacts()), &time.Time{})
	// Find a timestamp shared by several records.
	var tie rowKey
	for i := 1; i < len(byUpd); i++ {
		if byUpd[i].UpdatedAt == byUpd[i-1].UpdatedAt {
			tie = byUpd[i]
			break
		}
	}
	if tie.ID == 0 {
		t.Fatal("no two contacts share an updated_at")
	}
	at := mustTime(tie.UpdatedAt)
	tests := []struct {
		name  string
		since string
		first time.Time // every record at or after it, none before
	}{
		{name: "exact timestamp keeps the records at it", since: tie.UpdatedAt, first: at},
		{name: "offset zone names the same instant", since: at.In(time.FixedZone("", -5*3600)).Format(time.RFC3339Nano), first: at},
		{name: "sub-millisecond since skips the records at the millisecond", since: at.Add(time.Microsecond).Format(time.RFC3339Nano), first: at.Add(time.Millisecond)},
		{name: "before everything", since: "2000-01-01T00:00:00Z", first: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get(t, s.Handler(), "/v1/contacts?per_page=1000&updated_since="+url.QueryEscape(tt.since), nil)
			_, got := decodePage(t, r)
			want := wantKeys(byUpd, &tt.first)
			if !slices.Equal(got, want) {
				t.Fatalf("got %d records, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

func TestServer_ETagAndNotModified(t *testing.T) {
	s := mustNew(t, Options{Seed: 1, Contacts: 200})
	h := s.Handler()
	const page = "/v1/contacts?per_page=50&page=1"
	first := get(t, h, page, nil)
	etag := first.header.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) {
		t.Fatalf("ETag %q is not a strong quoted hash", etag)
	}
	tests := []struct {
		name        string
		ifNoneMatch string
		want        int
	}{
		{name: "same tag", ifNoneMatch: etag, want: http.StatusNotModified},
		{name: "weak form of the tag", ifNoneMatch: "W/" + etag, want: http.StatusNotModified},
		{name: "list containing the tag", ifNoneMatch: `"abc", ` + etag, want: http.StatusNotModified},
		{name: "star", ifNoneMatch: "*", want: http.StatusNotModified},
		{name: "other tag", ifNoneMatch: `"0000"`, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get(t, h, page, http.Header{"If-None-Match": {tt.ifNoneMatch}})
			if r.status != tt.want {
				t.Fatalf("status %d, want %d", r.status, tt.want)
			}
			if tt.want == http.StatusNotModified && (len(r.body) != 0 || r.header.Get("ETag") != etag) {
				t.Fatalf("304 with body %q and ETag %q", r.body, r.header.Get("ETag"))
			}
		})
	}
	if got := s.Stats().NotModified; got != 4 {
		t.Errorf("Stats.NotModified %d, want 4", got)
	}
	// A change to a record on the page changes the tag.
	s.Touch(ResourceContacts, 200)
	r := get(t, h, page, http.Header{"If-None-Match": {etag}})
	if r.status != http.StatusOK || r.header.Get("ETag") == etag {
		t.Fatalf("after a change: status %d, ETag %q (was %q)", r.status, r.header.Get("ETag"), etag)
	}
}

func TestServer_Auth(t *testing.T) {
	auth := Auth{Token: "tok-123", APIKey: "key-123", ForbiddenAPIKey: "key-readonly", ClientID: "cid", ClientSecret: "s3cr&t"}
	type check struct {
		header  http.Header
		status  int
		wwwAuth string // prefix of WWW-Authenticate on a 401
	}
	tests := []struct {
		mode   string
		checks []check
	}{
		{mode: AuthNone, checks: []check{{status: 200}}},
		{mode: AuthBearer, checks: []check{
			{header: http.Header{"Authorization": {"Bearer tok-123"}}, status: 200},
			{header: http.Header{"Authorization": {"bearer tok-123"}}, status: 200},
			{status: 401, wwwAuth: "Bearer"},
			{header: http.Header{"Authorization": {"Bearer nope"}}, status: 401, wwwAuth: "Bearer"},
			{header: http.Header{"Authorization": {"Basic dG9rLTEyMw=="}}, status: 401, wwwAuth: "Bearer"},
			{header: http.Header{"Authorization": {"Bearer key-readonly"}}, status: 403},
		}},
		{mode: AuthAPIKey, checks: []check{
			{header: http.Header{"X-Api-Key": {"key-123"}}, status: 200},
			{status: 401, wwwAuth: "APIKey"},
			{header: http.Header{"X-Api-Key": {"key-999"}}, status: 401, wwwAuth: "APIKey"},
			{header: http.Header{"Authorization": {"Bearer key-123"}}, status: 401, wwwAuth: "APIKey"},
			{header: http.Header{"X-Api-Key": {"key-readonly"}}, status: 403},
		}},
		{mode: AuthOAuth2, checks: []check{
			{status: 401, wwwAuth: "Bearer"},
			{header: http.Header{"Authorization": {"Bearer made-up"}}, status: 401, wwwAuth: "Bearer"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			a := auth
			a.Mode = tt.mode
			s := mustNew(t, Options{Contacts: 10, Auth: a})
			for i, c := range tt.checks {
				r := get(t, s.Handler(), "/v1/contacts", c.header)
				if r.status != c.status {
					t.Fatalf("check %d (%v): status %d, want %d: %s", i, c.header, r.status, c.status, r.body)
				}
				if c.status != 200 {
					r.errorMessage(t)
				}
				if c.status == 200 {
					if env, _ := decodePage(t, r); len(env.Data) != 10 {
						t.Fatalf("check %d: %d records", i, len(env.Data))
					}
				}
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, c.wwwAuth) || (c.wwwAuth != "") != (got != "") {
					t.Fatalf("check %d: WWW-Authenticate %q, want prefix %q", i, got, c.wwwAuth)
				}
			}
		})
	}
}

func TestServer_OAuth2ClientCredentials(t *testing.T) {
	clock := newFakeClock()
	s := mustNew(t, Options{Contacts: 10, Now: clock.Now, Auth: Auth{
		Mode: AuthOAuth2, ClientID: "cid", ClientSecret: "s3cr&t", TokenTTL: 90 * time.Second,
	}})
	h := s.Handler()
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	basic := func(id, secret string) http.Header {
		cred := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(cred))}}
	}
	tests := []struct {
		name      string
		header    http.Header
		form      url.Values
		status    int
		wantError string
	}{
		{name: "client_secret_basic", header: basic("cid", "s3cr&t"), form: form("grant_type", "client_credentials"), status: 200},
		{name: "client_secret_post", form: form("grant_type", "client_credentials", "client_id", "cid", "client_secret", "s3cr&t"), status: 200},
		{name: "wrong secret", header: basic("cid", "nope"), form: form("grant_type", "client_credentials"), status: 401, wantError: "invalid_client"},
		{name: "unknown client posted", form: form("grant_type", "client_credentials", "client_id", "x", "client_secret", "s3cr&t"), status: 401, wantError: "invalid_client"},
		{name: "no client", form: form("grant_type", "client_credentials"), status: 401, wantError: "invalid_client"},
		{name: "other grant", header: basic("cid", "s3cr&t"), form: form("grant_type", "password"), status: 400, wantError: "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
			for k, v := range tt.header {
				hdr[k] = v
			}
			r := do(t, h, http.MethodPost, "/oauth/token", hdr, strings.NewReader(tt.form.Encode()))
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.wantError != "" {
				if got := r.errorMessage(t); got != tt.wantError {
					t.Fatalf("error %q, want %q", got, tt.wantError)
				}
				return
			}
			var tok struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int    `json:"expires_in"`
			}
			if err := json.Unmarshal(r.body, &tok); err != nil || tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") || tok.ExpiresIn != 90 {
				t.Fatalf("token response %s (%v)", r.body, err)
			}
			bearer := http.Header{"Authorization": {"Bearer " + tok.AccessToken}}
			if r := get(t, h, "/v1/companies", bearer); r.status != 200 {
				t.Fatalf("fresh token: status %d", r.status)
			}
			clock.Advance(89 * time.Second)
			if r := get(t, h, "/v1/companies", bearer); r.status != 200 {
				t.Fatalf("token at 89s of 90s: status %d", r.status)
			}
			clock.Advance(time.Second)
			r = get(t, h, "/v1/companies", bearer)
			if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
				t.Fatalf("expired token: status %d, WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
			}
		})
	}
	if got := s.Stats().TokensIssued; got != 2 {
		t.Errorf("Stats.TokensIssued %d, want 2", got)
	}
}

func TestServer_RateLimit(t *testing.T) {
	clock := newFakeClock() // on a whole minute + 5s
	s := mustNew(t, Options{Contacts: 10, Now: clock.Now, RateLimit: RateLimit{Requests: 3, Window: time.Minute}})
	h := s.Handler()
	reset := strconv.FormatInt(clock.Now().Truncate(time.Minute).Add(time.Minute).Unix(), 10)
	for i, wantRemaining := range []string{"2", "1", "0"} {
		r := get(t, h, "/v1/contacts", nil)
		if r.status != 200 || r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != wantRemaining || r.header.Get("X-RateLimit-Reset") != reset {
			t.Fatalf("request %d: status %d, limit %q remaining %q reset %q (want remaining %s reset %s)", i, r.status,
				r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"), r.header.Get("X-RateLimit-Reset"), wantRemaining, reset)
		}
	}
	r := get(t, h, "/v1/contacts", nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "55" || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("over the limit: status %d, Retry-After %q, remaining %q", r.status, r.header.Get("Retry-After"), r.header.Get("X-RateLimit-Remaining"))
	}
	r.errorMessage(t)
	clock.Advance(55 * time.Second)
	if r := get(t, h, "/v1/contacts", nil); r.status != 200 || r.header.Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("next window: status %d, remaining %q", r.status, r.header.Get("X-RateLimit-Remaining"))
	}
	st := s.Stats()
	if st.RateLimited != 1 || st.ByStatus[429] != 1 || st.ByStatus[200] != 4 || st.Total != 5 {
		t.Fatalf("stats %+v", st)
	}

	// Unlimited still announces the headers.
	u := mustNew(t, Options{Contacts: 10})
	r = get(t, u.Handler(), "/v1/contacts", nil)
	for _, k := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if _, err := strconv.ParseInt(r.header.Get(k), 10, 64); err != nil {
			t.Errorf("unlimited: %s %q", k, r.header.Get(k))
		}
	}
}

func TestServer_Faults(t *testing.T) {
	const n = 100
	tests := []struct {
		name   string
		faults Faults
		// check gets the answers to n requests of the first page.
		check func(t *testing.T, rs []response)
	}{
		{name: "error rate 1", faults: Faults{ErrorRate: 1}, check: func(t *testing.T, rs []response) {
			for _, r := range rs {
				if r.status != 500 {
					t.Fatalf("status %d", r.status)
				}
				r.errorMessage(t)
			}
		}},
		{name: "error rate 0.3", faults: Faults{ErrorRate: 0.3}, check: func(t *testing.T, rs []response) {
			failed := countStatus(rs, 500)
			if failed < 10 || failed > 50 || failed+countStatus(rs, 200) != n {
				t.Fatalf("%d of %d failed at rate 0.3", failed, n)
			}
		}},
		{name: "fail next 3 with 429", faults: Faults{FailNext: 3, FailStatus: 429, FailRetryAfter: 7}, check: func(t *testing.T, rs []response) {
			for i, r := range rs {
				if i < 3 && (r.status != 429 || r.header.Get("Retry-After") != "7") {
					t.Fatalf("request %d: status %d Retry-After %q", i, r.status, r.header.Get("Retry-After"))
				}
				if i >= 3 && r.status != 200 {
					t.Fatalf("request %d: status %d", i, r.status)
				}
			}
		}},
		{name: "fail next 2 default 503", faults: Faults{FailNext: 2}, check: func(t *testing.T, rs []response) {
			if rs[0].status != 503 || rs[1].status != 503 || rs[0].header.Get("Retry-After") != "0" || rs[2].status != 200 {
				t.Fatalf("statuses %d %d %d", rs[0].status, rs[1].status, rs[2].status)
			}
		}},
		{name: "fail next 1 with 400, no Retry-After", faults: Faults{FailNext: 1, FailStatus: 400, FailRetryAfter: 5}, check: func(t *testing.T, rs []response) {
			if rs[0].status != 400 || rs[0].header.Get("Retry-After") != "" || rs[1].status != 200 {
				t.Fatalf("status %d Retry-After %q, then %d", rs[0].status, rs[0].header.Get("Retry-After"), rs[1].status)
			}
		}},
		{name: "non-JSON next 2", faults: Faults{NonJSONNext: 2}, check: func(t *testing.T, rs []response) {
			for i, r := range rs[:3] {
				html := strings.HasPrefix(r.header.Get("Content-Type"), "text/html")
				if r.status != 200 || html != (i < 2) || json.Valid(r.body) == html {
					t.Fatalf("request %d: status %d, Content-Type %q, body %.40q", i, r.status, r.header.Get("Content-Type"), r.body)
				}
			}
		}},
		{name: "malformed rate 1", faults: Faults{MalformedRate: 1}, check: func(t *testing.T, rs []response) {
			for _, r := range rs {
				if r.status != 200 || r.header.Get("Content-Type") != "application/json" || json.Valid(r.body) || len(r.body) == 0 {
					t.Fatalf("status %d, valid %v", r.status, json.Valid(r.body))
				}
			}
		}},
		{name: "malformed rate 0.25", faults: Faults{MalformedRate: 0.25}, check: func(t *testing.T, rs []response) {
			bad := 0
			for _, r := range rs {
				if !json.Valid(r.body) {
					bad++
				}
			}
			if bad < 5 || bad > 45 {
				t.Fatalf("%d of %d pages malformed at rate 0.25", bad, n)
			}
		}},
		{name: "latency only delays", faults: Faults{Latency: time.Millisecond}, check: func(t *testing.T, rs []response) {
			if countStatus(rs, 200) != n {
				t.Fatalf("%d of %d answered 200", countStatus(rs, 200), n)
			}
		}},
	}
	for _, tt := range tests {
		for _, via := range []string{"options", "SetFaults", "admin"} {
			t.Run(tt.name+"/"+via, func(t *testing.T) {
				o := Options{Seed: 5, Contacts: 30}
				if via == "options" {
					o.Faults = tt.faults
				}
				s := mustNew(t, o)
				switch via {
				case "SetFaults":
					s.SetFaults(tt.faults)
				case "admin":
					b, err := json.Marshal(tt.faults)
					if err != nil {
						t.Fatal(err)
					}
					if r := do(t, s.Handler(), http.MethodPost, "/admin/faults", nil, bytes.NewReader(b)); r.status != 200 {
						t.Fatalf("POST /admin/faults: %d %s", r.status, r.body)
					}
				}
				rs := make([]response, n)
				for i := range rs {
					rs[i] = get(t, s.Handler(), "/v1/contacts?per_page=10", nil)
				}
				tt.check(t, rs)
				// Admin and health endpoints are never faulted.
				if r := get(t, s.Handler(), "/healthz", nil); r.status != 200 {
					t.Fatalf("healthz %d", r.status)
				}
			})
		}
	}
}

func countStatus(rs []response, status int) int {
	n := 0
	for _, r := range rs {
		if r.status == status {
			n++
		}
	}
	return n
}

func TestServer_InvalidRecords(t *testing.T) {
	tests := []struct {
		contacts int
		rate     float64
	}{
		{contacts: 1000, rate: 0},
		{contacts: 1000, rate: 0.03},
		{contacts: 1000, rate: 0.1},
		{contacts: 333, rate: 0.05}, // 16.65 rounds to 17
		{contacts: 50, rate: 1},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.contacts)+"@"+strconv.FormatFloat(tt.rate, 'f', -1, 64), func(t *testing.T) {
			s := mustNew(t, Options{Seed: 4, Contacts: tt.contacts, Faults: Faults{InvalidRate: tt.rate}})
			want := int(math.Round(float64(tt.contacts) * tt.rate))
			invalid := s.InvalidContactIDs()
			if len(invalid) != want || !slices.IsSorted(invalid) {
				t.Fatalf("%d invalid ids (sorted %v), want %d", len(invalid), slices.IsSorted(invalid), want)
			}
			checkServedInvalid(t, s, invalid)
			if tt.rate == 0.1 {
				kinds := map[Defect]bool{}
				for _, c := range s.Contacts() {
					kinds[c.Defect] = true
				}
				for _, d := range defects() {
					if !kinds[d] {
						t.Errorf("defect %s never served", d)
					}
				}
			}

			// Adding contacts keeps the count exact and the old choice.
			s.Add(ResourceContacts, 77)
			after := s.InvalidContactIDs()
			if want := int(math.Round(float64(tt.contacts+77) * tt.rate)); len(after) != want {
				t.Fatalf("after Add: %d invalid, want %d", len(after), want)
			}
			for _, id := range invalid {
				if _, ok := slices.BinarySearch(after, id); !ok {
					t.Fatalf("contact %d was invalid and no longer is", id)
				}
			}
			checkServedInvalid(t, s, after)
		})
	}
}

// checkServedInvalid reads every served contact and checks that exactly
// the ones in invalid violate the schema, and that Contacts() agrees with
// what was served.
func checkServedInvalid(t *testing.T, s *Server, invalid []int64) {
	t.Helper()
	byUUID := map[string]Contact{}
	for _, c := range s.Contacts() {
		byUUID[c.UUID] = c
	}
	var got []int64
	for page := 1; ; page++ {
		env, _ := decodePage(t, get(t, s.Handler(), "/v1/contacts?per_page=300&page="+strconv.Itoa(page), nil))
		for _, raw := range env.Data {
			var rec struct {
				UUID string `json:"uuid"`
			}
			if err := json.Unmarshal(raw, &rec); err != nil {
				t.Fatal(err)
			}
			c, ok := byUUID[rec.UUID]
			if !ok {
				t.Fatalf("served uuid %s is not in Contacts()", rec.UUID)
			}
			problem := schemaProblem(raw)
			if (problem != "") != (c.Defect != DefectNone) {
				t.Fatalf("contact %d: schema problem %q, Defect %q: %s", c.ID, problem, c.Defect, raw)
			}
			if problem != "" {
				got = append(got, c.ID)
				continue
			}
			var served Contact
			if err := json.Unmarshal(raw, &served); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(served, c) {
				t.Fatalf("served %+v\nContacts() %+v", served, c)
			}
		}
		if page >= env.Meta.TotalPages {
			break
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, invalid) {
		t.Fatalf("served %d schema-invalid contacts, InvalidContactIDs has %d", len(got), len(invalid))
	}
}

func TestServer_TouchAndAddComeAfterThePreviousMax(t *testing.T) {
	tests := []struct {
		resource string
		clock    func() time.Time
	}{
		{resource: ResourceContacts},
		{resource: ResourceCompanies},
		// A clock behind the data: stamps still move forward.
		{resource: ResourceContacts, clock: func() time.Time { return time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			s := mustNew(t, Options{Seed: 8, Contacts: 500, Now: tt.clock})
			keys := func() []rowKey {
				if tt.resource == ResourceContacts {
					return contactKeys(s.Contacts())
				}
				return companyKeys(s.Companies())
			}
			before := keys()
			prevMax := slices.MaxFunc(before, func(a, b rowKey) int { return mustTime(a.UpdatedAt).Compare(mustTime(b.UpdatedAt)) })
			beforeJSON := map[int64]string{}
			for _, raw := range allRecords(t, s, tt.resource) {
				var k rowKey
				_ = json.Unmarshal(raw, &k)
				beforeJSON[k.ID] = string(raw)
			}

			touched := s.Touch(tt.resource, 12)
			added := s.Add(tt.resource, 5)
			if len(touched) != 12 || len(added) != 5 {
				t.Fatalf("touched %v, added %v", touched, added)
			}
			n := int64(len(before))
			if !slices.Equal(added, []int64{n + 1, n + 2, n + 3, n + 4, n + 5}) {
				t.Fatalf("added ids %v, want the next ones after %d", added, n)
			}
			// Everything strictly after the previous max is exactly what changed.
			since := mustTime(prevMax.UpdatedAt)
			r := get(t, s.Handler(), "/v1/"+tt.resource+"?per_page=1000&updated_since="+since.Format(time.RFC3339Nano), nil)
			_, page := decodePage(t, r)
			var later []int64
			for _, k := range page {
				if mustTime(k.UpdatedAt).After(since) {
					later = append(later, k.ID)
				}
			}
			if want := append(slices.Clone(touched), added...); !slices.Equal(later, want) {
				t.Fatalf("records after the previous max %v, want touched then added %v", later, want)
			}
			// Each touched record changed more than its timestamp.
			now := map[int64]string{}
			for _, raw := range allRecords(t, s, tt.resource) {
				var k rowKey
				_ = json.Unmarshal(raw, &k)
				now[k.ID] = string(raw)
			}
			for _, id := range touched {
				var a, b map[string]any
				_ = json.Unmarshal([]byte(beforeJSON[id]), &a)
				_ = json.Unmarshal([]byte(now[id]), &b)
				delete(a, "updated_at")
				delete(b, "updated_at")
				if reflect.DeepEqual(a, b) {
					t.Errorf("record %d: only updated_at changed", id)
				}
			}
			// Same seed, same mutations, same result.
			twin := mustNew(t, Options{Seed: 8, Contacts: 500, Now: tt.clock})
			if got := twin.Touch(tt.resource, 12); !slices.Equal(got, touched) {
				t.Errorf("twin touched %v, want %v", got, touched)
			}
		})
	}
}

// allRecords reads a whole collection by id.
func allRecords(t *testing.T, s *Server, resource string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	q := "/v1/" + resource + "?pagination=cursor&limit=1000"
	for {
		env, _ := decodePage(t, get(t, s.Handler(), q, nil))
		out = append(out, env.Data...)
		if env.NextCursor == nil {
			return out
		}
		q = "/v1/" + resource + "?pagination=cursor&limit=1000&cursor=" + url.QueryEscape(*env.NextCursor)
	}
}

func TestNew_Deterministic(t *testing.T) {
	a := mustNew(t, Options{Seed: 77, Contacts: 300, Faults: Faults{InvalidRate: 0.05}})
	b := mustNew(t, Options{Seed: 77, Contacts: 300, Faults: Faults{InvalidRate: 0.05}})
	c := mustNew(t, Options{Seed: 78, Contacts: 300, Faults: Faults{InvalidRate: 0.05}})
	if !reflect.DeepEqual(a.Contacts(), b.Contacts()) || !reflect.DeepEqual(a.Companies(), b.Companies()) ||
		!slices.Equal(a.InvalidContactIDs(), b.InvalidContactIDs()) {
		t.Fatal("same seed, different data")
	}
	for _, q := range []string{"/v1/contacts?per_page=300", "/v1/companies?pagination=link&limit=10"} {
		ra, rb := get(t, a.Handler(), q, nil), get(t, b.Handler(), q, nil)
		if !bytes.Equal(ra.body, rb.body) || ra.header.Get("ETag") != rb.header.Get("ETag") || ra.header.Get("Link") != rb.header.Get("Link") {
			t.Fatalf("%s: same seed, different responses", q)
		}
	}
	if reflect.DeepEqual(a.Contacts(), c.Contacts()) {
		t.Fatal("different seeds, same contacts")
	}
}

func TestNew_DataShape(t *testing.T) {
	const n = 3000
	s := mustNew(t, Options{Seed: 12, Contacts: n})
	contacts, companies := s.Contacts(), s.Companies()
	if len(contacts) != n || len(companies) != n/10 {
		t.Fatalf("%d contacts and %d companies, want %d and %d", len(contacts), len(companies), n, n/10)
	}
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tsRE := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	countryRE := regexp.MustCompile(`^[A-Z]{2}$`)
	messy, shared := 0, 0
	updCount := map[string]int{}
	for _, c := range contacts {
		updCount[c.UpdatedAt]++
	}
	uuids := map[string]bool{}
	for i, c := range contacts {
		if c.ID != int64(i+1) || !uuidRE.MatchString(c.UUID) || uuids[c.UUID] {
			t.Fatalf("contact %d: id or uuid %q", c.ID, c.UUID)
		}
		uuids[c.UUID] = true
		norm := strings.ToLower(strings.TrimSpace(c.Email))
		if !emailRE.MatchString(norm) {
			t.Fatalf("contact %d: email %q not valid after trim+lower", c.ID, c.Email)
		}
		if norm != c.Email {
			messy++
		}
		if !tsRE.MatchString(c.CreatedAt) || !tsRE.MatchString(c.UpdatedAt) || mustTime(c.UpdatedAt).Before(mustTime(c.CreatedAt)) {
			t.Fatalf("contact %d: created %s updated %s", c.ID, c.CreatedAt, c.UpdatedAt)
		}
		if c.OptIn != (c.OptInAt != nil) || (c.OptInAt != nil && !tsRE.MatchString(*c.OptInAt)) {
			t.Fatalf("contact %d: opt_in %v opt_in_at %v", c.ID, c.OptIn, c.OptInAt)
		}
		if c.Score < 0 || c.Score > 100 || !slices.Contains(ContactStatuses(), c.Status) || c.CompanyID < 1 || c.CompanyID > int64(len(companies)) {
			t.Fatalf("contact %d: score %d status %q company %d", c.ID, c.Score, c.Status, c.CompanyID)
		}
		if !countryRE.MatchString(c.Address.Country) || c.Address.City == "" || c.Tags == nil || c.Phone == "" {
			t.Fatalf("contact %d: address %+v tags %v phone %q", c.ID, c.Address, c.Tags, c.Phone)
		}
		if c.Website != "" {
			if u, err := url.Parse(c.Website); err != nil || !u.IsAbs() {
				t.Fatalf("contact %d: website %q", c.ID, c.Website)
			}
		}
		if updCount[c.UpdatedAt] > 1 {
			shared++
		}
	}
	if messy < n*5/100 || messy > n*15/100 {
		t.Errorf("%d of %d emails need normalising, want about 10%%", messy, n)
	}
	if shared < n/10 || shared > n/2 {
		t.Errorf("%d of %d contacts share updated_at with another, want about 1 in 5 pairs", shared, n)
	}
	for i, c := range companies {
		if c.ID != int64(i+1) || c.Name == "" || c.Domain == "" || !slices.Contains(Industries(), c.Industry) ||
			c.Employees < 1 || c.FoundedYear < 1900 || !countryRE.MatchString(c.Country) || !strings.HasPrefix(c.Website, "https://") ||
			!tsRE.MatchString(c.CreatedAt) || !tsRE.MatchString(c.UpdatedAt) {
			t.Fatalf("company %+v", c)
		}
	}
	if got := len(mustNew(t, Options{Contacts: 5}).Companies()); got != 1 {
		t.Errorf("5 contacts: %d companies, want 1", got)
	}
}

func TestServer_BadParameters(t *testing.T) {
	s := mustNew(t, Options{Contacts: 20, MaxPageSize: 8})
	tests := []struct {
		query string
		param string
	}{
		{query: "pagination=pages", param: "pagination"},
		{query: "page=0", param: "page"},
		{query: "page=two", param: "page"},
		{query: "per_page=0", param: "per_page"},
		{query: "per_page=-5", param: "per_page"},
		{query: "pagination=offset&offset=-1", param: "offset"},
		{query: "pagination=offset&limit=x", param: "limit"},
		{query: "pagination=cursor&cursor=!!!", param: "cursor"},
		{query: "pagination=cursor&cursor=bm9wZQ", param: "cursor"},
		{query: "pagination=link&after=djF8eHwx", param: "after"},
		{query: "updated_since=yesterday", param: "updated_since"},
		{query: "updated_since=2024-01-01", param: "updated_since"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := get(t, s.Handler(), "/v1/contacts?"+tt.query, nil)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", r.status)
			}
			if msg := r.errorMessage(t); !strings.HasPrefix(msg, tt.param+":") {
				t.Fatalf("error %q does not name %s", msg, tt.param)
			}
		})
	}
	t.Run("cursor of another filter", func(t *testing.T) {
		env, _ := decodePage(t, get(t, s.Handler(), "/v1/contacts?pagination=cursor&limit=2", nil))
		r := get(t, s.Handler(), "/v1/contacts?pagination=cursor&updated_since=2020-01-01T00:00:00Z&cursor="+*env.NextCursor, nil)
		if r.status != 400 || !strings.HasPrefix(r.errorMessage(t), "cursor:") {
			t.Fatalf("status %d", r.status)
		}
	})
	t.Run("page size clamped", func(t *testing.T) {
		env, keys := decodePage(t, get(t, s.Handler(), "/v1/contacts?per_page=5000", nil))
		if len(keys) != 8 || env.Meta.PerPage != 8 || env.Meta.TotalPages != 3 {
			t.Fatalf("%d records, meta %+v", len(keys), env.Meta)
		}
	})
	t.Run("page past the end", func(t *testing.T) {
		env, keys := decodePage(t, get(t, s.Handler(), "/v1/contacts?page=99", nil))
		if len(keys) != 0 || env.Meta.Total != 20 {
			t.Fatalf("%d records, meta %+v", len(keys), env.Meta)
		}
	})
}

func TestServer_Routes(t *testing.T) {
	s := mustNew(t, Options{Contacts: 20})
	h := s.Handler()
	tests := []struct {
		method, target, body string
		status               int
		want                 string // substring of the body
	}{
		{method: "GET", target: "/healthz", status: 200, want: "ok"},
		{method: "GET", target: "/v2/contacts", status: 404, want: `"error"`},
		{method: "GET", target: "/", status: 404, want: `"error"`},
		{method: "POST", target: "/v1/contacts", status: 405, want: `"error"`},
		{method: "GET", target: "/oauth/token", status: 404, want: `"error"`},
		{method: "POST", target: "/admin/faults", body: `{"latency":"20ms","error_rate":0.5}`, status: 200, want: `"latency":"20ms"`},
		{method: "GET", target: "/admin/faults", status: 200, want: `"error_rate":0.5`},
		{method: "POST", target: "/admin/faults", body: `{"latancy":"20ms"}`, status: 400, want: "latancy"},
		{method: "POST", target: "/admin/faults", body: `{"latency":"soon"}`, status: 400, want: "latency"},
		{method: "POST", target: "/admin/faults", body: `{"error_rate":2}`, status: 400, want: "error_rate"},
		{method: "POST", target: "/admin/faults", body: `{}`, status: 200, want: `"error_rate":0`},
		{method: "POST", target: "/admin/contacts/touch?count=3", status: 200, want: `"ids":[`},
		{method: "POST", target: "/admin/companies/add?count=2", status: 200, want: `"ids":[3,4]`},
		{method: "POST", target: "/admin/contacts/add?count=0", status: 400, want: "count"},
		{method: "GET", target: "/admin/contacts/add?count=1", status: 405, want: `"error"`},
		{method: "POST", target: "/admin/deals/add?count=1", status: 404, want: `"error"`},
		{method: "GET", target: "/admin/stats", status: 200, want: `"total":4`},
	}
	for _, tt := range tests {
		r := do(t, h, tt.method, tt.target, nil, strings.NewReader(tt.body))
		if r.status != tt.status || !strings.Contains(string(r.body), tt.want) {
			t.Fatalf("%s %s: status %d body %s, want %d and %q", tt.method, tt.target, r.status, r.body, tt.status, tt.want)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", tt.method, tt.target, ct)
		}
	}
	if got := len(s.Companies()); got != 4 {
		t.Errorf("%d companies after adding 2 to 2", got)
	}
}

func TestFaults_JSON(t *testing.T) {
	tests := []struct {
		give Faults
	}{
		{give: Faults{}},
		{give: Faults{ErrorRate: 0.1, Latency: 250 * time.Millisecond, MalformedRate: 0.2, InvalidRate: 0.03,
			FailNext: 2, FailStatus: 429, FailRetryAfter: 3, NonJSONNext: 1}},
		{give: Faults{Writes: WriteFaults{Resource: ResourceCustomers, Method: "PATCH", Latency: time.Second, FailNext: 1,
			FailEvery: 5, FailStatus: 409, FailRetryAfter: 2, ErrorRate: 0.25, LostResponseNext: 3, LostResponseEvery: 7}}},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.give)
		if err != nil {
			t.Fatal(err)
		}
		var got Faults
		if err := json.Unmarshal(b, &got); err != nil || got != tt.give {
			t.Fatalf("round trip of %+v through %s: %+v (%v)", tt.give, b, got, err)
		}
	}
}

func TestNew_RejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		give Options
		want string
	}{
		{name: "negative contacts", give: Options{Contacts: -1}, want: "contacts"},
		{name: "unknown auth", give: Options{Auth: Auth{Mode: "kerberos"}}, want: "kerberos"},
		{name: "bearer without token", give: Options{Auth: Auth{Mode: AuthBearer}}, want: "token"},
		{name: "api key without key", give: Options{Auth: Auth{Mode: AuthAPIKey}}, want: "API key"},
		{name: "oauth2 without client", give: Options{Auth: Auth{Mode: AuthOAuth2}}, want: "client"},
		{name: "rate out of range", give: Options{Faults: Faults{InvalidRate: 1.5}}, want: "invalid_rate"},
		{name: "fail status not an error", give: Options{Faults: Faults{FailStatus: 200}}, want: "fail_status"},
		{name: "write fail status not an error", give: Options{Faults: Faults{Writes: WriteFaults{FailStatus: 302}}}, want: "writes.fail_status"},
		{name: "write faults of a read resource", give: Options{Faults: Faults{Writes: WriteFaults{Resource: ResourceContacts}}}, want: "writes.resource"},
		{name: "negative write fail every", give: Options{Faults: Faults{Writes: WriteFaults{FailEvery: -1}}}, want: "writes.fail_every"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.give)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error about %q", err, tt.want)
			}
		})
	}
}
