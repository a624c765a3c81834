package sandbox

import (
	"crypto/sha256"
	"net/http"
)

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
