package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Resource names of the write API: the collection paths /v1/customers and
// /v1/notifications, and the values of WriteFaults.Resource.
const (
	ResourceCustomers     = "customers"
	ResourceNotifications = "notifications"
)

// Limits of the write API.
const (
	// MaxBatchSize is the most customers one POST /v1/customers/batch takes.
	MaxBatchSize = 100
	// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted.
	MaxIdempotencyKeyLen = 255
	// DefaultCustomerListLimit and MaxCustomerListLimit bound ?limit= of
	// GET /v1/customers.
	DefaultCustomerListLimit = 10
	MaxCustomerListLimit     = 100
	// maxWriteBody bounds a write request's body.
	maxWriteBody         = 4 << 20
	customerIDPrefix     = "cus_"
	customerIDDigits     = 8 // base 36, zero-padded: ids sort like their numbers
	notificationIDPrefix = "ntf_"
)

// Error types of the write API, the "type" of its error objects.
const (
	ErrorTypeInvalidRequest      = "invalid_request"      // 400, 413, 415: the body or a parameter cannot be read
	ErrorTypeAuthentication      = "authentication"       // 401
	ErrorTypePermission          = "permission"           // 403
	ErrorTypeNotFound            = "not_found"            // 404
	ErrorTypeMethodNotAllowed    = "method_not_allowed"   // 405
	ErrorTypeConflict            = "conflict"             // 409: the email belongs to another customer
	ErrorTypePreconditionFailed  = "precondition_failed"  // 412: If-Match does not match
	ErrorTypeValidation          = "validation"           // 422: a member is missing or invalid
	ErrorTypeIdempotencyMismatch = "idempotency_mismatch" // 422: a key reused for another request
	ErrorTypeRateLimited         = "rate_limited"         // 429
	ErrorTypeAPI                 = "api_error"            // 5xx, injected
)

// APIError is the error object of the write API, served as
// {"error": APIError} by every /v1/customers and /v1/notifications
// endpoint (the read API of contacts and companies answers
// {"error": "message"}).
type APIError struct {
	// Type is one of the ErrorType constants.
	Type string `json:"type"`
	// Message says what is wrong, for a person.
	Message string `json:"message"`
	// Field names the member at fault in a validation error.
	Field string `json:"field,omitempty"`
	// ExistingID is the customer that already has the email, in a conflict.
	ExistingID string `json:"existing_id,omitempty"`
}

// Customer is one billing customer of the write API, exactly as it is
// served.
type Customer struct {
	// ID is assigned by the server: "cus_" and 8 base-36 digits of a
	// counter, so ids sort in creation order.
	ID string `json:"id"`
	// Email is required and unique among customers, compared without
	// regard to case.
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
	// ExternalRef is the caller's id of the customer.
	ExternalRef string `json:"external_ref,omitempty"`
	// Plan is "" or one of CustomerPlans.
	Plan string `json:"plan,omitempty"`
	// Version starts at 1 and grows by one with every PUT or PATCH; the
	// ETag is `"v<Version>"`.
	Version   int    `json:"version"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	// Extra holds every other member the caller sent, compacted, served
	// after the members above in key order.
	Extra map[string]json.RawMessage `json:"-"`
}

// customerFields is Customer without its methods, for encoding/json.
type customerFields Customer

// ETag is the entity tag the API serves the customer with.
func (c Customer) ETag() string { return `"v` + strconv.Itoa(c.Version) + `"` }

// MarshalJSON encodes the customer as the API serves it: the named members,
// then Extra in key order.
func (c Customer) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(customerFields(c))
	if err != nil {
		return nil, err
	}
	if len(c.Extra) == 0 {
		return b, nil
	}
	b = b[:len(b)-1]
	for _, k := range slices.Sorted(maps.Keys(c.Extra)) {
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b = append(append(append(append(b, ','), kb...), ':'), c.Extra[k]...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON decodes what MarshalJSON writes: unknown members go to
// Extra.
func (c *Customer) UnmarshalJSON(b []byte) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	var f customerFields
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	for _, k := range []string{"id", "email", "name", "external_ref", "plan", "version", "created_at", "updated_at"} {
		delete(doc, k)
	}
	f.Extra = nil
	if len(doc) > 0 {
		f.Extra = make(map[string]json.RawMessage, len(doc))
		for k, v := range doc {
			f.Extra[k] = compact(v)
		}
	}
	*c = Customer(f)
	return nil
}

// clone is a deep copy of c.
func (c Customer) clone() Customer {
	c.Extra = maps.Clone(c.Extra)
	for k, v := range c.Extra {
		c.Extra[k] = slices.Clone(v)
	}
	return c
}

// document is the customer's writable members as a JSON object, the
// target of a merge patch.
func (c Customer) document() map[string]json.RawMessage {
	doc := make(map[string]json.RawMessage, len(c.Extra)+4)
	maps.Copy(doc, c.Extra)
	str := func(k, v string) {
		if v != "" {
			b, _ := json.Marshal(v) // a string always encodes
			doc[k] = b
		}
	}
	str("email", c.Email)
	str("name", c.Name)
	str("external_ref", c.ExternalRef)
	str("plan", c.Plan)
	return doc
}

// CustomerPlans lists the accepted values of a customer's plan.
func CustomerPlans() []string { return []string{"free", "starter", "pro", "enterprise"} }

// validEmail is the address shape the API accepts: at most 254 bytes, no
// spaces, one @ after a non-empty local part, a domain of two or more
// non-empty dot-separated labels.
func validEmail(e string) bool {
	if len(e) > 254 || strings.ContainsFunc(e, unicode.IsSpace) {
		return false
	}
	local, domain, _ := strings.Cut(e, "@")
	if local == "" || strings.Contains(domain, "@") {
		return false
	}
	labels := strings.Split(domain, ".")
	return len(labels) >= 2 && !slices.Contains(labels, "")
}

// normEmail is the form emails are compared in.
func normEmail(e string) string { return strings.ToLower(e) }

// writeMode says which request a customer document came with.
type writeMode int

const (
	modeCreate  writeMode = iota // POST /v1/customers, a batch item, SeedCustomers
	modeReplace                  // PUT /v1/customers/{id}, or PATCH after merging
)

// readOnlyMembers are assigned by the server, in the order they are checked.
func readOnlyMembers() []string { return []string{"id", "version", "created_at", "updated_at"} }

// customerFromDoc validates a customer document and returns the writable
// part of the customer it describes. In modeReplace, "id" must name the
// customer being replaced (pathID) and the other read-only members are
// ignored, so that a GET, edit, PUT round trip works. Checks run in a fixed
// order, so the error reported is deterministic.
func customerFromDoc(doc map[string]json.RawMessage, mode writeMode, pathID string) (Customer, *APIError) {
	invalid := func(field, format string, args ...any) (Customer, *APIError) {
		return Customer{}, &APIError{Type: ErrorTypeValidation, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
	}
	for _, k := range readOnlyMembers() {
		v, ok := doc[k]
		if !ok {
			continue
		}
		switch {
		case mode == modeCreate && k == "id":
			return invalid(k, "is assigned by the server; send your own id as external_ref")
		case mode == modeCreate:
			return invalid(k, "is assigned by the server")
		case k == "id":
			var id string
			if err := json.Unmarshal(v, &id); err != nil || id != pathID {
				return invalid(k, "is %s, not the id of the customer written (%s)", compact(v), pathID)
			}
		}
	}
	if _, ok := doc["idempotency_key"]; ok {
		return invalid("idempotency_key", "goes in the Idempotency-Key header (the member is only read in a batch item)")
	}
	var c Customer
	str := func(field string, dst *string) *APIError {
		v, ok := doc[field]
		if !ok || isNull(v) {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			_, e := invalid(field, "must be a string, got %s", abbreviate(v))
			return e
		}
		return nil
	}
	if v, ok := doc["email"]; !ok || isNull(v) {
		return invalid("email", "is required")
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"email", &c.Email}, {"name", &c.Name}, {"external_ref", &c.ExternalRef}, {"plan", &c.Plan}} {
		if e := str(f.name, f.dst); e != nil {
			return Customer{}, e
		}
	}
	if !validEmail(c.Email) {
		return invalid("email", "%q is not an email address like name@example.com (no spaces)", c.Email)
	}
	if c.Plan != "" && !slices.Contains(CustomerPlans(), c.Plan) {
		return invalid("plan", "%q is not one of %s", c.Plan, strings.Join(CustomerPlans(), ", "))
	}
	for k, v := range doc {
		switch k {
		case "id", "version", "created_at", "updated_at", "email", "name", "external_ref", "plan":
			continue
		}
		if c.Extra == nil {
			c.Extra = map[string]json.RawMessage{}
		}
		c.Extra[k] = compact(v)
	}
	return c, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// compact is v without insignificant space; v must be valid JSON.
func compact(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return slices.Clone(v)
	}
	return b.Bytes()
}

// abbreviate is v compacted and cut to a length fit for a message.
func abbreviate(v json.RawMessage) string {
	s := string(compact(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// mergePatch applies an RFC 7386 JSON merge patch to the object target:
// null removes a member, an object merges into an object, anything else
// replaces.
func mergePatch(target, patch map[string]json.RawMessage) map[string]json.RawMessage {
	out := maps.Clone(target)
	if out == nil {
		out = map[string]json.RawMessage{}
	}
	for k, p := range patch {
		if isNull(p) {
			delete(out, k)
			continue
		}
		var po map[string]json.RawMessage
		if json.Unmarshal(p, &po) != nil || po == nil {
			out[k] = p
			continue
		}
		var to map[string]json.RawMessage
		if t, ok := out[k]; !ok || json.Unmarshal(t, &to) != nil {
			to = nil
		}
		merged, err := json.Marshal(mergePatch(to, po))
		if err != nil {
			merged = p // members are raw JSON already: encoding cannot fail
		}
		out[k] = merged
	}
	return out
}

// canonicalJSON is v with object keys sorted and no space, so that two
// bodies meaning the same object compare equal; v itself if it is not JSON.
func canonicalJSON(v []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return v
	}
	b, err := json.Marshal(x)
	if err != nil {
		return v
	}
	return b
}

// validCustomerID says whether id has the shape of a customer id.
func validCustomerID(id string) bool {
	d, ok := strings.CutPrefix(id, customerIDPrefix)
	if !ok || len(d) != customerIDDigits {
		return false
	}
	_, err := strconv.ParseInt(d, 36, 64)
	return err == nil && d == strings.ToLower(d)
}
