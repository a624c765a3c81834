package sandbox

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Pagination styles selected by the query parameter "pagination".
const (
	PaginationPage   = "page"
	PaginationOffset = "offset"
	PaginationCursor = "cursor"
	PaginationLink   = "link"
)

// unlimitedRequests is the X-RateLimit-Limit announced when there is no
// rate limit, in a nominal one-minute window.
const unlimitedRequests = 1<<31 - 1

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status    int
	throttled bool
	// writeAPI marks a request of the write API, whose errors are objects
	// (see APIError).
	writeAPI bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	case strings.HasPrefix(r.URL.Path, "/admin/"):
		s.serveAdmin(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, writeAPI: isWriteAPIPath(r.URL.Path)}
	s.serveAPI(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	s.mu.Lock()
	s.stats.Total++
	s.stats.ByStatus[status]++
	if status == http.StatusNotModified {
		s.stats.NotModified++
	}
	if rec.throttled {
		s.stats.RateLimited++
	}
	s.mu.Unlock()
	if rec.writeAPI && r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.wmu.Lock()
		st := &s.ws.stats
		st.Total++
		if st.ByMethod[r.Method] == nil {
			st.ByMethod[r.Method] = map[int]int{}
		}
		st.ByMethod[r.Method][status]++
		if rec.throttled {
			st.RateLimited++
		}
		s.wmu.Unlock()
	}
}

func (s *Server) serveAPI(w *statusRecorder, r *http.Request) {
	if !s.admit(w) {
		w.throttled = true
		return
	}
	switch r.URL.Path {
	case "/oauth/token":
		if s.opts.Auth.Mode != AuthOAuth2 {
			writeError(w, http.StatusNotFound, "no route for %s (oauth2 is not enabled)", r.URL.Path)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
			return
		}
		s.issueToken(w, r)
	case "/v1/" + ResourceContacts:
		s.serveCollection(w, r, &s.ct)
	case "/v1/" + ResourceCompanies:
		s.serveCollection(w, r, &s.co)
	default:
		if w.writeAPI {
			s.serveWriteAPI(w, r)
			return
		}
		writeError(w, http.StatusNotFound, "no route for %s", r.URL.Path)
	}
}

// admit applies the fixed-window rate limit and sets the X-RateLimit-*
// headers; over the limit it answers 429 and returns false.
func (s *Server) admit(w http.ResponseWriter) bool {
	now := s.opts.Now()
	limit, window := s.opts.RateLimit.Requests, s.opts.RateLimit.Window
	if limit == 0 {
		limit, window = unlimitedRequests, time.Minute
	}
	start := now.Truncate(window)
	s.mu.Lock()
	if !start.Equal(s.windowStart) {
		s.windowStart, s.windowCount = start, 0
	}
	ok := s.windowCount < limit
	if ok {
		s.windowCount++
	}
	remaining := limit - s.windowCount
	s.mu.Unlock()
	reset := start.Add(window)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilSeconds(reset.Sub(time.Unix(0, 0))), 10))
	if !ok {
		h.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(reset.Sub(now))), 10))
		writeError(w, http.StatusTooManyRequests, "rate limit exceeded: %d requests per %v", limit, window)
	}
	return ok
}

func ceilSeconds(d time.Duration) int64 {
	sec := int64(d / time.Second)
	if d%time.Second > 0 {
		sec++
	}
	return sec
}

// page is one parsed collection request.
type pageQuery struct {
	style    string
	since    int64 // updated_at lower bound, unix ms (inclusive)
	hasSince bool
	page     int
	size     int // per_page or limit, clamped
	offset   int
	after    *cursorKey // cursor or link: resume strictly after this key
}

// cursorKey is the position a cursor token resumes after; it also carries
// the filter the listing was started with.
type cursorKey struct {
	byUpd    bool
	since    int64
	upd, id  int64
	hasSince bool
}

func (k cursorKey) encode() string {
	var s string
	if k.byUpd {
		s = fmt.Sprintf("v1|u|%d|%d|%d", k.since, k.upd, k.id)
	} else {
		s = fmt.Sprintf("v1|i|%d", k.id)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func decodeCursor(tok string) (cursorKey, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok, "="))
	if err != nil {
		return cursorKey{}, fmt.Errorf("not a token this API issued: %w", err)
	}
	parts := strings.Split(string(raw), "|")
	nums := make([]int64, 0, 3)
	for _, p := range parts[min(2, len(parts)):] {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return cursorKey{}, fmt.Errorf("not a token this API issued: %w", err)
		}
		nums = append(nums, n)
	}
	switch {
	case len(parts) == 3 && parts[0] == "v1" && parts[1] == "i":
		return cursorKey{id: nums[0]}, nil
	case len(parts) == 5 && parts[0] == "v1" && parts[1] == "u":
		return cursorKey{byUpd: true, hasSince: true, since: nums[0], upd: nums[1], id: nums[2]}, nil
	}
	return cursorKey{}, fmt.Errorf("not a token this API issued")
}

// badParam is a 400 naming the query parameter.
type badParam struct{ name, msg string }

func (e *badParam) Error() string { return e.name + ": " + e.msg }

func intParam(q url.Values, name string, def, least int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < least {
		return 0, &badParam{name, fmt.Sprintf("must be an integer >= %d, got %q", least, v)}
	}
	return n, nil
}

func (s *Server) parseQuery(q url.Values) (pageQuery, error) {
	p := pageQuery{style: q.Get("pagination")}
	if p.style == "" {
		p.style = PaginationPage
	}
	if v := q.Get("updated_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return p, &badParam{"updated_since", fmt.Sprintf("must be an RFC 3339 timestamp, got %q", v)}
		}
		p.since, p.hasSince = t.UnixMilli(), true
		if t.Nanosecond()%int(time.Millisecond) != 0 {
			p.since++ // records have millisecond precision: the first one at or after t
		}
	}
	var err error
	sizeName := "limit"
	switch p.style {
	case PaginationPage:
		sizeName = "per_page"
		if p.page, err = intParam(q, "page", 1, 1); err != nil {
			return p, err
		}
	case PaginationOffset:
		if p.offset, err = intParam(q, "offset", 0, 0); err != nil {
			return p, err
		}
	case PaginationCursor, PaginationLink:
		name := map[string]string{PaginationCursor: "cursor", PaginationLink: "after"}[p.style]
		if tok := q.Get(name); tok != "" {
			k, err := decodeCursor(tok)
			if err != nil {
				return p, &badParam{name, err.Error()}
			}
			if p.hasSince && (!k.byUpd || k.since != p.since) {
				return p, &badParam{name, "was issued for a different updated_since"}
			}
			p.after = &k
			p.since, p.hasSince = k.since, k.hasSince
		}
	default:
		return p, &badParam{"pagination", fmt.Sprintf("must be one of page, offset, cursor, link, got %q", p.style)}
	}
	if p.size, err = intParam(q, sizeName, DefaultPageSize, 1); err != nil {
		return p, err
	}
	p.size = min(p.size, s.opts.MaxPageSize)
	return p, nil
}

// view is the ordered listing a request pages through: every record by id,
// or those updated since a time by (updated_at, id).
type view struct {
	t     *table
	byUpd bool
	lo    int // first byUpd index in the view
}

func (v view) len() int {
	if v.byUpd {
		return len(v.t.byUpd) - v.lo
	}
	return len(v.t.ids)
}

func (v view) pos(i int) int {
	if v.byUpd {
		return int(v.t.byUpd[v.lo+i])
	}
	return i
}

// after is the view index of the first record strictly after k.
func (v view) after(k cursorKey) int {
	if !v.byUpd {
		return sort.Search(len(v.t.ids), func(i int) bool { return v.t.ids[i] > k.id })
	}
	return sort.Search(v.len(), func(i int) bool {
		p := v.pos(i)
		u := v.t.upd[p]
		return u > k.upd || (u == k.upd && v.t.ids[p] > k.id)
	})
}

func (v view) key(i int, since int64) cursorKey {
	p := v.pos(i)
	return cursorKey{byUpd: v.byUpd, hasSince: v.byUpd, since: since, upd: v.t.upd[p], id: v.t.ids[p]}
}

func (s *Server) serveCollection(w http.ResponseWriter, r *http.Request, t *table) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
		return
	}
	if !s.authorize(w, r) {
		return
	}
	if s.injectFault(w, r) {
		return
	}
	q, err := s.parseQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	bp := s.getBuf()
	defer s.bufs.Put(bp)
	body, next, total := s.renderPage((*bp)[:0], t, q)
	*bp = body
	// As json-server and many APIs do: the records the query matches.
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	if q.style == PaginationLink && next != nil {
		w.Header().Set("Link", "<"+nextLink(r, next, q.size)+`>; rel="next"`)
	}
	if s.drawMalformed() {
		body = body[:len(body)/2] // never ends with the closing brace: invalid JSON
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // the client went away: nothing to do
}

func (s *Server) getBuf() *[]byte {
	if bp, ok := s.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

// renderPage appends the page's JSON body to buf; next is the key to resume
// after for cursor and link styles, nil on the last page.
func (s *Server) renderPage(buf []byte, t *table, q pageQuery) (body []byte, next *cursorKey, total int) {
	s.data.RLock()
	defer s.data.RUnlock()
	v := view{t: t, byUpd: q.hasSince}
	if v.byUpd {
		v.lo = sort.Search(len(t.byUpd), func(i int) bool { return t.upd[t.byUpd[i]] >= q.since })
	}
	total = v.len()
	var start int
	switch q.style {
	case PaginationPage:
		start = min(total, (min(q.page, total+1)-1)*q.size)
	case PaginationOffset:
		start = min(total, q.offset)
	default:
		if q.after != nil {
			start = v.after(*q.after)
		}
	}
	end := min(total, start+q.size)
	buf = append(buf, `{"data":[`...)
	for i := start; i < end; i++ {
		if i > start {
			buf = append(buf, ',')
		}
		buf = append(buf, t.raw[v.pos(i)]...)
	}
	buf = append(buf, ']')
	if end < total && end > start {
		k := v.key(end-1, q.since)
		next = &k
	}
	switch q.style {
	case PaginationPage:
		buf = fmt.Appendf(buf, `,"meta":{"page":%d,"per_page":%d,"total":%d,"total_pages":%d}`,
			q.page, q.size, total, (total+q.size-1)/q.size)
	case PaginationOffset:
		buf = fmt.Appendf(buf, `,"meta":{"offset":%d,"limit":%d,"total":%d}`, q.offset, q.size, total)
	case PaginationCursor:
		if next != nil {
			buf = append(buf, `,"next_cursor":"`+next.encode()+`"`...)
		} else {
			buf = append(buf, `,"next_cursor":null`...)
		}
	}
	return append(buf, '}'), next, total
}

// nextLink is the absolute URL of the page after k, keeping the request's
// other parameters.
func nextLink(r *http.Request, k *cursorKey, size int) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	q := r.URL.Query()
	q.Set("after", k.encode())
	q.Set("limit", strconv.Itoa(size))
	u := url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
	return u.String()
}

// etagMatch is the weak comparison If-None-Match uses (RFC 9110 13.1.2).
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for c := range strings.SplitSeq(header, ",") {
		c = strings.TrimPrefix(strings.TrimSpace(c), "W/")
		if c == "*" || c == etag {
			return true
		}
	}
	return false
}

// injectFault applies latency and, when one is due, answers the request
// with an injected failure and returns true.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	f := s.faults
	var failStatus, nonJSON, failed bool
	switch {
	case s.faults.FailNext > 0:
		s.faults.FailNext--
		failStatus = true
	case s.faults.NonJSONNext > 0:
		s.faults.NonJSONNext--
		nonJSON = true
	case f.ErrorRate > 0 && s.rng.Float64() < f.ErrorRate:
		failed = true
	}
	s.mu.Unlock()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	switch {
	case failStatus:
		if f.FailStatus == http.StatusTooManyRequests || f.FailStatus == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(f.FailRetryAfter))
		}
		writeError(w, f.FailStatus, "injected failure: %s", http.StatusText(f.FailStatus))
	case nonJSON:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>" +
			"<body><h1>Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p></body></html>\n"))
	case failed:
		writeError(w, http.StatusInternalServerError, "internal server error (injected)")
	default:
		return false
	}
	return true
}

func (s *Server) drawMalformed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.MalformedRate > 0 && s.rng.Float64() < s.faults.MalformedRate
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the client went away: nothing to do
}

// writeError writes {"error": message}, or {"error": APIError} on the
// write API.
func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if rec, ok := w.(*statusRecorder); ok && rec.writeAPI {
		writeJSON(w, status, map[string]APIError{"error": {Type: errorTypeOf(status), Message: msg}})
		return
	}
	writeJSON(w, status, map[string]string{"error": msg})
}
