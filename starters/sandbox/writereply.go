package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

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
