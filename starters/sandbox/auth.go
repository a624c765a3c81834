package sandbox

import (
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

const (
	realm = `realm="sandbox"`
	// maxTokens bounds the remembered tokens: beyond it, expired ones are
	// forgotten (and then answered "unknown" rather than "expired").
	maxTokens = 10000
)

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// authorize checks the request's credentials against Options.Auth and
// answers 401 or 403 when they are refused.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	a := s.opts.Auth
	deny := func(challenge, format string, args ...any) bool {
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, http.StatusUnauthorized, format, args...)
		return false
	}
	forbid := func() bool {
		verb := "read"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			verb = "write"
		}
		writeError(w, http.StatusForbidden, "these credentials may not %s %s", verb, r.URL.Path)
		return false
	}
	switch a.Mode {
	case AuthBearer:
		tok, ok := bearerToken(r)
		switch {
		case !ok:
			return deny("Bearer "+realm, "missing bearer token")
		case a.ForbiddenAPIKey != "" && equal(tok, a.ForbiddenAPIKey):
			return forbid()
		case !equal(tok, a.Token):
			return deny("Bearer "+realm+`, error="invalid_token"`, "invalid bearer token")
		}
	case AuthAPIKey:
		key := r.Header.Get("X-API-Key")
		switch {
		case key == "":
			return deny("APIKey "+realm+`, header="X-API-Key"`, "missing X-API-Key header")
		case a.ForbiddenAPIKey != "" && equal(key, a.ForbiddenAPIKey):
			return forbid()
		case !equal(key, a.APIKey):
			return deny("APIKey "+realm+`, header="X-API-Key"`, "invalid API key")
		}
	case AuthOAuth2:
		tok, ok := bearerToken(r)
		if !ok {
			return deny("Bearer "+realm, "missing bearer token")
		}
		now := s.opts.Now()
		s.mu.Lock()
		exp, known := s.tokens[tok]
		s.mu.Unlock()
		switch {
		case !known:
			return deny("Bearer "+realm+`, error="invalid_token"`, "unknown access token")
		case !now.Before(exp):
			return deny("Bearer "+realm+`, error="invalid_token", error_description="the access token expired"`, "access token expired")
		}
	}
	return true
}

// issueToken is POST /oauth/token for the client credentials grant, with
// the client authenticated by client_secret_basic or client_secret_post.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	oauthError := func(status int, code, desc string) {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", "Basic "+realm)
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(http.StatusBadRequest, "invalid_request", "read form: "+err.Error())
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 2.3.1: both are form-encoded before Basic encoding.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	a := s.opts.Auth
	if id == "" || !equal(id, a.ClientID) || !equal(secret, a.ClientSecret) {
		oauthError(http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	switch g := r.PostForm.Get("grant_type"); g {
	case "client_credentials":
	case "":
		oauthError(http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	default:
		oauthError(http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported, got "+g)
		return
	}
	tok := rand.Text()
	now := s.opts.Now()
	s.mu.Lock()
	if len(s.tokens) >= maxTokens {
		for t, exp := range s.tokens {
			if !now.Before(exp) {
				delete(s.tokens, t)
			}
		}
	}
	s.tokens[tok] = now.Add(a.TokenTTL)
	s.stats.TokensIssued++
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "bearer",
		"expires_in":   max(1, ceilSeconds(a.TokenTTL)),
	})
}
