package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// ErrDuplicate is what an Accepter returns for a delivery id it has
// already accepted: the receiver answers 200 {"status":"duplicate"} and
// the event is not applied twice.
var ErrDuplicate = errors.New("delivery already accepted")

// Accepter durably records an accepted event (e.g. signal-with-start of
// the workflow of the entity's shard in Temporal) before the receiver answers.
//
// Accept returns nil only once the event cannot be lost; an error
// wrapping ErrDuplicate for a delivery id it already accepted; any other
// error when it could not record the event, which the receiver answers
// 503 so the sender delivers it again. It is called concurrently.
type Accepter interface {
	Accept(ctx context.Context, ev Event) error
}

// Event is one authenticated delivery of a source, as the receiver hands
// it to the Accepter.
type Event struct {
	// Source is the name of the source that sent it.
	Source string
	// DeliveryID is the sender's id of the delivery, the same on every
	// redelivery: the idempotency key.
	DeliveryID string
	// EntityKey is the value at the source's KeyPath, as text; empty when
	// the event is quarantined because it has none.
	EntityKey string
	// Version is the value at the source's VersionPath, as text (a
	// timestamp or a number, as the sender wrote it); empty when the
	// source has no VersionPath or the event is quarantined without one.
	Version string
	// ReceivedAt is when the receiver read the request, UTC.
	ReceivedAt time.Time
	// SignedAt is the timestamp the sender signed (t=), UTC.
	SignedAt time.Time
	// Sender is the authenticated ingress: the source and which of its
	// secrets signed the delivery, and the address it came from
	// ("webhook crm (secret 1) from 203.0.113.9").
	Sender string
	// Body is the request body exactly as signed.
	Body json.RawMessage
	// Record is the entity's record: the value at the source's RecordPath
	// (the whole body when it has none), re-encoded; empty when there is
	// none.
	Record json.RawMessage
	// Type is the value at the source's TypePath ("contact.updated");
	// Delete says it is one of the source's DeleteTypes.
	Type   string
	Delete bool
	// Invalid lists why the event is quarantined: the schema's errors
	// ("/data/email: format: ...") and a missing or unusable entity key or
	// version. Empty for a valid event.
	Invalid []string
}

// Quarantined reports whether the event is to be quarantined rather than
// applied.
func (e Event) Quarantined() bool { return len(e.Invalid) > 0 }

// scalarAt returns the string or number at the dot path p of doc (a value
// decoded by schema.Decode), as text. A segment that is a number indexes
// an array. It returns a problem, naming p, when the value is missing,
// null, empty, or not a string or number.
func scalarAt(doc any, p, what string) (string, string) {
	v, ok := valueAt(doc, p)
	if !ok {
		return "", p + ": " + what + " is missing"
	}
	switch x := v.(type) {
	case string:
		if x == "" {
			return "", p + ": " + what + " is empty"
		}
		return x, ""
	case json.Number:
		return x.String(), ""
	case nil:
		return "", p + ": " + what + " is null"
	case bool:
		return "", p + ": " + what + " is a boolean, not a string or number"
	case []any:
		return "", p + ": " + what + " is an array, not a string or number"
	default:
		return "", p + ": " + what + " is an object, not a string or number"
	}
}

// valueAt returns the value at the dot path p of doc; a segment that is a
// number indexes an array.
func valueAt(doc any, p string) (any, bool) {
	v := doc
	for seg := range strings.SplitSeq(p, ".") {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[seg]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return nil, false
			}
			v = node[i]
		default:
			return nil, false
		}
	}
	return v, true
}
