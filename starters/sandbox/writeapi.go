package sandbox

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
