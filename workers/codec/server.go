package codec

import (
	"net/http"
	"slices"
	"strings"

	"github.com/tetherflow/tether/workers/httpauth"
	"go.temporal.io/sdk/converter"
)

// ServerOptions say who may use a codec server.
type ServerOptions struct {
	// Origins are the browser origins allowed to call it (the Temporal Web
	// UI's, e.g. http://localhost:8233); a request from another origin is
	// refused (403). Requests without an Origin (the Temporal CLI, curl)
	// are not browser requests and are let through to the token check.
	Origins []string
	// Token, when set, must come as "Authorization: Bearer <token>" on
	// every /encode and /decode (401 otherwise): the Temporal CLI sends it
	// with --codec-auth, the Web UI when its codec settings pass an access
	// token. Empty: anyone who reaches the address may decode; keep it on
	// loopback then.
	Token string
}

// NewServer is the codec server: the Temporal codec endpoints (POST
// /encode and /decode, the namespace in X-Namespace) of the SDK's handler
// over k, behind CORS for the allowed origins and the token check.
func NewServer(k *Keyring, o ServerOptions) http.Handler {
	codecs := httpauth.Bearer(o.Token, "tether codec server",
		"missing or wrong token: send Authorization: Bearer <token> (temporal --codec-auth 'Bearer <token>')",
		converter.NewPayloadCodecHTTPHandler(k))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !slices.Contains(o.Origins, origin) {
				http.Error(w, "origin "+origin+" is not allowed to use this codec server (tether codec-server --origin)", http.StatusForbidden)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		if r.Method != http.MethodPost || !(strings.HasSuffix(r.URL.Path, "/encode") || strings.HasSuffix(r.URL.Path, "/decode")) {
			http.Error(w, "the codec server answers POST /encode and POST /decode", http.StatusNotFound)
			return
		}
		codecs.ServeHTTP(w, r)
	})
}
