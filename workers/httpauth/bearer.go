// Package httpauth guards the worker's HTTP endpoints with a bearer token.
package httpauth

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Bearer lets a request through to next only with "Authorization: Bearer
// <token>" (compared in constant time); others get 401 with a
// WWW-Authenticate header for realm and hint as the body. An empty token
// lets every request through.
func Bearer(token, realm, hint string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			http.Error(w, hint, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
