package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxAdminCount bounds ?count= on the admin mutations.
const maxAdminCount = 1_000_000

// serveAdmin serves the unauthenticated admin endpoints:
//
//	GET  /admin/stats
//	GET  /admin/faults
//	POST /admin/faults                        (JSON Faults, replaces them)
//	POST /admin/{contacts|companies}/touch?count=N
//	POST /admin/{contacts|companies}/add?count=N
//	GET  /admin/customers                     ({"data": Customers()})
//	POST /admin/customers/reset               (ResetCustomers)
//	POST /admin/customers/seed                (JSON array of customers: SeedCustomers)
//	GET  /admin/notifications                 ({"data": Notifications()})
//	GET  /admin/writes                        (WriteStats)
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/admin/")
	method := func(allowed string) bool {
		if r.Method == allowed {
			return true
		}
		w.Header().Set("Allow", allowed)
		writeError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
		return false
	}
	switch path {
	case "stats":
		if method(http.MethodGet) {
			writeJSON(w, http.StatusOK, s.Stats())
		}
		return
	case "faults":
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, s.Faults())
		case http.MethodPost:
			s.postFaults(w, r)
		default:
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
		}
		return
	case "customers":
		if method(http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]any{"data": s.Customers()})
		}
		return
	case "customers/reset":
		if method(http.MethodPost) {
			s.ResetCustomers()
			writeJSON(w, http.StatusOK, map[string]string{"status": "reset"})
		}
		return
	case "customers/seed":
		if method(http.MethodPost) {
			s.postSeedCustomers(w, r)
		}
		return
	case "notifications":
		if method(http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]any{"data": s.Notifications()})
		}
		return
	case "writes":
		if method(http.MethodGet) {
			writeJSON(w, http.StatusOK, s.WriteStats())
		}
		return
	}
	resource, action, _ := strings.Cut(path, "/")
	if (resource != ResourceContacts && resource != ResourceCompanies) || (action != "touch" && action != "add") {
		writeError(w, http.StatusNotFound, "no route for %s", r.URL.Path)
		return
	}
	if !method(http.MethodPost) {
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("count"))
	if err != nil || n < 1 || n > maxAdminCount {
		writeError(w, http.StatusBadRequest, "count: must be an integer in [1, %d], got %q", maxAdminCount, r.URL.Query().Get("count"))
		return
	}
	var ids []int64
	if action == "touch" {
		ids = s.Touch(resource, n)
	} else {
		ids = s.Add(resource, n)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ids": ids})
}

func (s *Server) postFaults(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	var f Faults
	if err := json.Unmarshal(body, &f); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err := f.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) postSeedCustomers(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWriteBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	var cs []Customer
	if err := json.Unmarshal(body, &cs); err != nil {
		writeError(w, http.StatusBadRequest, "body must be a JSON array of customers: %v", err)
		return
	}
	created, err := s.SeedCustomers(cs...)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": created})
}
