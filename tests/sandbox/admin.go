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
