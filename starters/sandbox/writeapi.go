package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// streamWriteFaults is the RNG stream of WriteFaults.ErrorRate, apart from
// the one of read faults so that writes do not shift read fault choices.
const streamWriteFaults uint64 = 0xfb

// route is an endpoint of the write API.
type route int

const (
	routeNone          route = iota
	routeCustomers           // /v1/customers
	routeBatch               // /v1/customers/batch
	routeCustomer            // /v1/customers/{id}
	routeNotifications       // /v1/notifications
)

// isWriteAPIPath says whether path belongs to the write API (and so gets
// its error objects).
func isWriteAPIPath(path string) bool {
	return path == "/v1/"+ResourceCustomers || strings.HasPrefix(path, "/v1/"+ResourceCustomers+"/") ||
		path == "/v1/"+ResourceNotifications || strings.HasPrefix(path, "/v1/"+ResourceNotifications+"/")
}

// writeAPIRoute matches a path of the write API; routeNone is a 404.
func writeAPIRoute(path string) (route, string) {
	switch path {
	case "/v1/" + ResourceCustomers:
		return routeCustomers, ""
	case "/v1/" + ResourceCustomers + "/batch":
		return routeBatch, ""
	case "/v1/" + ResourceNotifications:
		return routeNotifications, ""
	}
	if id, ok := strings.CutPrefix(path, "/v1/"+ResourceCustomers+"/"); ok && id != "" && !strings.Contains(id, "/") {
		return routeCustomer, id
	}
	return routeNone, ""
}

// allow lists the methods of a route.
func (rt route) allow() []string {
	switch rt {
	case routeCustomers:
		return []string{http.MethodGet, http.MethodHead, http.MethodPost}
	case routeCustomer:
		return []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete}
	}
	return []string{http.MethodPost}
}

// reply is an answer of the write API, buffered: written to the client,
// remembered for an idempotent replay, or thrown away by a lost-response
// fault.
type reply struct {
	status   int
	etag     string
	location string
	body     []byte
}

func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"encode response"}}`)
	}
	return reply{status: status, body: append(b, '\n')}
}

func customerReply(status int, c Customer) reply {
	rep := jsonReply(status, c)
	rep.etag, rep.location = c.ETag(), "/v1/customers/"+c.ID
	return rep
}

func (rep reply) write(w http.ResponseWriter, replayed bool) {
	h := w.Header()
	if rep.etag != "" {
		h.Set("ETag", rep.etag)
	}
	if rep.location != "" {
		h.Set("Location", rep.location)
	}
	if replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	if len(rep.body) > 0 {
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	}
	w.WriteHeader(rep.status)
	_, _ = w.Write(rep.body) // the client went away: nothing to do
}

// apiFailure is an error answer: its status and error object.
type apiFailure struct {
	status int
	err    APIError
}

func failure(status int, typ, field, format string, args ...any) *apiFailure {
	return &apiFailure{status: status, err: APIError{Type: typ, Field: field, Message: fmt.Sprintf(format, args...)}}
}

func (f *apiFailure) reply() reply {
	return jsonReply(f.status, map[string]APIError{"error": f.err})
}

// errorTypeOf is the error type of a status the handlers do not type
// themselves (auth, rate limit, routing, injected faults).
func errorTypeOf(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return ErrorTypeAuthentication
	case http.StatusForbidden:
		return ErrorTypePermission
	case http.StatusNotFound:
		return ErrorTypeNotFound
	case http.StatusMethodNotAllowed:
		return ErrorTypeMethodNotAllowed
	case http.StatusConflict:
		return ErrorTypeConflict
	case http.StatusPreconditionFailed:
		return ErrorTypePreconditionFailed
	case http.StatusUnprocessableEntity:
		return ErrorTypeValidation
	case http.StatusTooManyRequests:
		return ErrorTypeRateLimited
	}
	if status >= 500 {
		return ErrorTypeAPI
	}
	return ErrorTypeInvalidRequest
}

// BatchResult is one item of the answer to POST /v1/customers/batch, in the
// order of the request.
type BatchResult struct {
	// Status is the status a POST /v1/customers of the item would have
	// been answered: 201, 409 or 422.
	Status int `json:"status"`
	// Customer is the created customer (Status 201).
	Customer *Customer `json:"customer,omitempty"`
	// Error says why the item was refused (any other Status).
	Error *APIError `json:"error,omitempty"`
	// Replayed is true when the item's idempotency_key was known and its
	// first answer is repeated.
	Replayed bool `json:"replayed,omitempty"`
}

// serveWriteAPI serves /v1/customers... and /v1/notifications, after the
// rate limit.
func (s *Server) serveWriteAPI(w http.ResponseWriter, r *http.Request) {
	rt, id := writeAPIRoute(r.URL.Path)
	if rt == routeNone {
		writeError(w, http.StatusNotFound, "no route for %s", r.URL.Path)
		return
	}
	if allow := rt.allow(); !slices.Contains(allow, r.Method) {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
		return
	}
	if !s.authorize(w, r) {
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		s.serveCustomerRead(w, r, rt, id)
		return
	}
	s.serveWrite(w, r, rt, id)
}

// serveCustomerRead is GET /v1/customers and /v1/customers/{id}; reads are
// never faulted.
func (s *Server) serveCustomerRead(w http.ResponseWriter, r *http.Request, rt route, id string) {
	s.wmu.Lock()
	var rep reply
	if rt == routeCustomer {
		rep = s.getCustomer(id)
	} else {
		rep = s.listCustomers(r.URL.Query())
	}
	s.wmu.Unlock()
	if rep.status == http.StatusOK && rep.etag != "" && etagMatch(r.Header.Get("If-None-Match"), rep.etag) {
		w.Header().Set("ETag", rep.etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rep.write(w, false)
}

// serveWrite reads the body, applies the write faults and the
// Idempotency-Key, and answers.
func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, rt route, id string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWriteBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, "body is larger than %d bytes", maxWriteBody)
			return
		}
		writeError(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	if ct := r.Header.Get("Content-Type"); len(body) > 0 && !isJSONMediaType(ct) {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type %q: send application/json", ct)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > MaxIdempotencyKeyLen {
		writeError(w, http.StatusBadRequest, "Idempotency-Key is %d characters long, at most %d are accepted", len(key), MaxIdempotencyKeyLen)
		return
	}
	resource := ResourceCustomers
	if rt == routeNotifications {
		resource = ResourceNotifications
	}
	d := s.drawWriteFault(resource, r.Method)
	if d.latency > 0 {
		// Not cut short when the client goes away: the write still happens.
		time.Sleep(d.latency)
	}
	switch d.kind {
	case writeRefused, writeErrored:
		s.wmu.Lock()
		s.ws.stats.Injected++
		s.wmu.Unlock()
		if d.kind == writeErrored {
			writeError(w, http.StatusInternalServerError, "internal server error (injected, nothing was written)")
			return
		}
		if d.status == http.StatusTooManyRequests || d.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(d.retryAfter))
		}
		writeError(w, d.status, "injected failure: %s (nothing was written)", http.StatusText(d.status))
		return
	}
	s.wmu.Lock()
	rep, replayed := s.idempotent(key, r.Method+" "+r.URL.Path, body, func() reply {
		return s.applyWrite(r, rt, id, body)
	})
	if d.kind == writeLost {
		s.ws.stats.LostResponses++
	}
	s.wmu.Unlock()
	if d.kind == writeLost {
		writeError(w, http.StatusInternalServerError, "internal server error (injected)")
		return
	}
	rep.write(w, replayed)
}

// isJSONMediaType accepts no Content-Type, application/json and
// application/*+json.
func isJSONMediaType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// idempotent answers a write under an Idempotency-Key (none when key is
// ""): a key seen with the same request (what, the method and path, and
// the body, compared as canonical JSON) within IdempotencyKeyTTL replays
// the first answer; seen with another request it is a 422; otherwise do
// runs, and its answer is remembered when it is a success (a refused
// request can be corrected and retried under the same key). Called with
// s.wmu held.
func (s *Server) idempotent(key, what string, body []byte, do func() reply) (reply, bool) {
	if key == "" {
		return do(), false
	}
	sum := sha256.Sum256(append([]byte(what+"\n"), canonicalJSON(body)...))
	now := s.opts.Now()
	if e, ok := s.ws.keys[key]; ok {
		if now.Sub(e.at) < IdempotencyKeyTTL {
			if e.sum != sum {
				return failure(http.StatusUnprocessableEntity, ErrorTypeIdempotencyMismatch, "",
					"Idempotency-Key %q was first used for another request (%s with a different body); "+
						"a key stands for one request: use a new key for a new request", key, e.what).reply(), false
			}
			s.ws.stats.Replays++
			return e.rep, true
		}
		delete(s.ws.keys, key)
	}
	rep := do()
	if rep.status >= 200 && rep.status < 300 {
		s.ws.keys[key] = idemEntry{sum: sum, what: what, rep: rep, at: now}
	}
	return rep, false
}

// applyWrite processes one write request. Called with s.wmu held.
func (s *Server) applyWrite(r *http.Request, rt route, id string, body []byte) reply {
	switch rt {
	case routeNotifications:
		return s.acceptNotification(body)
	case routeBatch:
		return s.createBatch(body)
	case routeCustomers:
		doc, f := parseObject(body)
		if f != nil {
			return f.reply()
		}
		return s.createCustomer(doc)
	}
	ifMatch := r.Header.Get("If-Match")
	switch r.Method {
	case http.MethodPut:
		return s.updateCustomer(id, body, ifMatch, false)
	case http.MethodPatch:
		return s.updateCustomer(id, body, ifMatch, true)
	}
	return s.deleteCustomer(id, ifMatch)
}

// jsonKind names the kind of a JSON value, for messages.
func jsonKind(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// notJSON is the 400 of a body that does not parse, or nil.
func notJSON(body []byte, want string) *apiFailure {
	if len(bytes.TrimSpace(body)) == 0 {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "", "body is empty: send %s", want)
	}
	var x any
	if err := json.Unmarshal(body, &x); err != nil {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "", "body is not JSON (%v): send %s", err, want)
	}
	return nil
}

// parseObject reads a body that must be one JSON object.
func parseObject(body []byte) (map[string]json.RawMessage, *apiFailure) {
	const want = "a JSON object"
	if f := notJSON(body, want); f != nil {
		return nil, f
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return nil, failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "", "body is %s: send %s", jsonKind(body), want)
	}
	return doc, nil
}

func notFound(id string) reply {
	return failure(http.StatusNotFound, ErrorTypeNotFound, "", "no customer %s", id).reply()
}

// createCustomer is POST /v1/customers of a parsed body.
func (s *Server) createCustomer(doc map[string]json.RawMessage) reply {
	c, f := s.insertCustomer(doc)
	if f != nil {
		return f.reply()
	}
	return customerReply(http.StatusCreated, c)
}

// ifMatchOK is the strong comparison If-Match uses (RFC 9110 13.1.1): a
// weak tag never matches.
func ifMatchOK(header, etag string) bool {
	for c := range strings.SplitSeq(header, ",") {
		if c = strings.TrimSpace(c); c == "*" || c == etag {
			return true
		}
	}
	return false
}

// precondition is the 412 of an If-Match that is not the customer's ETag,
// or nil.
func precondition(ifMatch string, c *Customer) *reply {
	if ifMatch == "" || ifMatchOK(ifMatch, c.ETag()) {
		return nil
	}
	rep := failure(http.StatusPreconditionFailed, ErrorTypePreconditionFailed, "",
		"If-Match %s does not match the current ETag %s of customer %s: read it again", ifMatch, c.ETag(), c.ID).reply()
	rep.etag = c.ETag()
	return &rep
}

// updateCustomer is PUT (replace) or PATCH (merge) /v1/customers/{id}.
func (s *Server) updateCustomer(id string, body []byte, ifMatch string, merge bool) reply {
	patch, f := parseObject(body)
	if f != nil {
		return f.reply()
	}
	cur, ok := s.ws.byID[id]
	if !ok {
		return notFound(id)
	}
	if rep := precondition(ifMatch, cur); rep != nil {
		return *rep
	}
	doc := patch
	if merge {
		doc = mergePatch(cur.document(), patch)
	}
	c, e := customerFromDoc(doc, modeReplace, id)
	if e != nil {
		return (&apiFailure{status: http.StatusUnprocessableEntity, err: *e}).reply()
	}
	if f := s.emailTaken(c.Email, id); f != nil {
		return f.reply()
	}
	delete(s.ws.byEmail, normEmail(cur.Email))
	s.ws.byEmail[normEmail(c.Email)] = id
	c.ID, c.Version, c.CreatedAt = id, cur.Version+1, cur.CreatedAt
	c.UpdatedAt = formatMilli(s.opts.Now().UnixMilli())
	*cur = c.clone()
	return customerReply(http.StatusOK, c)
}

// deleteCustomer is DELETE /v1/customers/{id}.
func (s *Server) deleteCustomer(id, ifMatch string) reply {
	cur, ok := s.ws.byID[id]
	if !ok {
		return notFound(id)
	}
	if rep := precondition(ifMatch, cur); rep != nil {
		return *rep
	}
	s.removeCustomer(id)
	return reply{status: http.StatusNoContent}
}

// getCustomer is GET /v1/customers/{id}.
func (s *Server) getCustomer(id string) reply {
	c, ok := s.ws.byID[id]
	if !ok {
		return notFound(id)
	}
	return customerReply(http.StatusOK, *c)
}

// customerList is the answer to GET /v1/customers.
type customerList struct {
	Data    []Customer `json:"data"`
	HasMore bool       `json:"has_more"`
}

// listCustomers is GET /v1/customers?email=&external_ref=&limit=&starting_after=:
// customers by id, those with the email (without regard to case) and the
// external_ref when given, limit of them (default 10, at most 100) after
// the id starting_after.
func (s *Server) listCustomers(q url.Values) reply {
	limit, err := intParam(q, "limit", DefaultCustomerListLimit, 1)
	if err != nil {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "limit", "%v", err).reply()
	}
	limit = min(limit, MaxCustomerListLimit)
	after := q.Get("starting_after")
	if after != "" && !validCustomerID(after) {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "starting_after",
			"starting_after: %q is not a customer id", after).reply()
	}
	ids := s.ws.ids
	if email := q.Get("email"); email != "" {
		ids = nil
		if id, ok := s.ws.byEmail[normEmail(email)]; ok {
			ids = []string{id}
		}
	}
	start, found := slices.BinarySearch(ids, after)
	if found {
		start++
	}
	ref := q.Get("external_ref")
	list := customerList{Data: []Customer{}}
	for _, id := range ids[start:] {
		c := s.ws.byID[id]
		if ref != "" && c.ExternalRef != ref {
			continue
		}
		if len(list.Data) == limit {
			list.HasMore = true
			break
		}
		list.Data = append(list.Data, *c)
	}
	return jsonReply(http.StatusOK, list)
}

// acceptNotification is POST /v1/notifications.
func (s *Server) acceptNotification(body []byte) reply {
	if f := notJSON(body, "a JSON value"); f != nil {
		return f.reply()
	}
	s.ws.noteSeq++
	s.ws.notes = append(s.ws.notes, compact(body))
	return jsonReply(http.StatusAccepted, map[string]string{
		"id":     seqID(notificationIDPrefix, s.ws.noteSeq),
		"status": "accepted",
	})
}

// createBatch is POST /v1/customers/batch: each item is created as by POST
// /v1/customers, under its own "idempotency_key" member if it has one; the
// batch is not atomic.
func (s *Server) createBatch(body []byte) reply {
	const want = "a JSON array of customers"
	if f := notJSON(body, want); f != nil {
		return f.reply()
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil || items == nil {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "", "body is %s: send %s", jsonKind(body), want).reply()
	}
	if len(items) == 0 || len(items) > MaxBatchSize {
		return failure(http.StatusUnprocessableEntity, ErrorTypeValidation, "",
			"a batch holds 1 to %d customers, got %d", MaxBatchSize, len(items)).reply()
	}
	results := make([]BatchResult, len(items))
	for i, raw := range items {
		results[i] = s.batchItem(raw)
		s.ws.stats.BatchItems[results[i].Status]++
	}
	return jsonReply(http.StatusOK, results)
}

// batchItem creates one item of a batch. Its key shares the namespace of
// Idempotency-Key headers, and an item and a POST /v1/customers of the same
// customer are the same request: either replays the other.
func (s *Server) batchItem(raw json.RawMessage) BatchResult {
	fail := func(f *apiFailure) BatchResult { return BatchResult{Status: f.status, Error: &f.err} }
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return fail(failure(http.StatusUnprocessableEntity, ErrorTypeValidation, "", "item is %s: send a customer object", jsonKind(raw)))
	}
	var key string
	if v, ok := doc["idempotency_key"]; ok {
		if err := json.Unmarshal(v, &key); err != nil || key == "" || len(key) > MaxIdempotencyKeyLen {
			return fail(failure(http.StatusUnprocessableEntity, ErrorTypeValidation, "idempotency_key",
				"idempotency_key: must be a string of 1 to %d characters, got %s", MaxIdempotencyKeyLen, abbreviate(v)))
		}
		delete(doc, "idempotency_key")
	}
	item, err := json.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("sandbox: re-encode a parsed object: %v", err)) // its members are valid JSON
	}
	rep, replayed := s.idempotent(key, http.MethodPost+" /v1/"+ResourceCustomers, item, func() reply {
		return s.createCustomer(doc)
	})
	res := BatchResult{Status: rep.status, Replayed: replayed}
	if rep.status == http.StatusCreated {
		var c Customer
		if err := json.Unmarshal(rep.body, &c); err != nil {
			panic(fmt.Sprintf("sandbox: decode a customer the API encoded: %v", err))
		}
		res.Customer = &c
		return res
	}
	var e struct {
		Error APIError `json:"error"`
	}
	if err := json.Unmarshal(rep.body, &e); err != nil {
		panic(fmt.Sprintf("sandbox: decode an error the API encoded: %v", err))
	}
	res.Error = &e.Error
	return res
}

// writeFaultKind is what WriteFaults do to one write.
type writeFaultKind int

const (
	writeOK      writeFaultKind = iota
	writeRefused                // FailNext, FailEvery: FailStatus, nothing written
	writeErrored                // ErrorRate: 500, nothing written
	writeLost                   // LostResponse*: written, then 500
)

// writeFaultDraw is the fault chosen for one write.
type writeFaultDraw struct {
	kind               writeFaultKind
	latency            time.Duration
	status, retryAfter int
}

// drawWriteFault chooses the fault of one write of resource by method and
// counts it down.
func (s *Server) drawWriteFault(resource, method string) writeFaultDraw {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.faults.Writes
	if !f.matches(resource, method) {
		return writeFaultDraw{}
	}
	s.writesSeen++
	n := s.writesSeen
	d := writeFaultDraw{latency: f.Latency, status: f.FailStatus, retryAfter: f.FailRetryAfter}
	switch {
	case f.FailNext > 0:
		f.FailNext--
		d.kind = writeRefused
	case f.FailEvery > 0 && n%f.FailEvery == 0:
		d.kind = writeRefused
	case f.ErrorRate > 0 && s.wrng.Float64() < f.ErrorRate:
		d.kind = writeErrored
	case f.LostResponseNext > 0:
		f.LostResponseNext--
		d.kind = writeLost
	case f.LostResponseEvery > 0 && n%f.LostResponseEvery == 0:
		d.kind = writeLost
	}
	return d
}
