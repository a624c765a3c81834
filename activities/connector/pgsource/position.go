package pgsource

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tetherflow/tether/activities/lib/cursor"
)

// token is the decoded form of cursor.Position.Token: the position of the
// last row of the previous page, which the next page starts strictly after.
//
// Full reads write {"key":["acme","7"]}: the key columns' values in Key's
// order, each in its type's PostgreSQL text form. Incremental reads write
// {"cursor":"2026-01-02T03:04:05.123456+00:00","key":["7"]}: the cursor and
// key as the record renders them (to_jsonb), JSON strings unquoted.
type token struct {
	Cursor *string  `json:"cursor,omitempty"`
	Key    []string `json:"key"`
}

// encode renders t as a Position token.
func (t token) encode() string {
	b, _ := json.Marshal(t) // strings only: cannot fail
	return string(b)
}

// decodeToken parses a Position token written for a read ordered by
// keys key columns, with a cursor when incremental.
func decodeToken(s string, keys int, incremental bool) (token, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var t token
	if err := dec.Decode(&t); err != nil || dec.More() {
		return token{}, fmt.Errorf("position token %q is not one this source writes", s)
	}
	if len(t.Key) != keys {
		return token{}, fmt.Errorf("position token %q holds %d key values, the key has %d columns", s, len(t.Key), keys)
	}
	if incremental != (t.Cursor != nil) {
		mode := "a full"
		if incremental {
			mode = "an incremental"
		}
		return token{}, fmt.Errorf("position token %q was not written by %s read", s, mode)
	}
	return t, nil
}

// comparePositions is the pipeline's checkpoint order.
var comparePositions = cursor.Compare

// checkOrder verifies that PostgreSQL's order of an incremental page
// agrees with the pipeline's: each row strictly after the one before, and
// the first strictly after since when since is a position (it has a key).
// The pipeline drops records at or before its checkpoint, so a
// disagreement would lose rows silently; it is reported instead. (A
// starting cursor without a key is a filter, not a position: what the
// pipeline keeps at that cursor is its own rule.) Rows with an empty
// cursor or key are passed over, as the pipeline passes over them.
func checkOrder(positions []cursor.Checkpoint, since cursor.Checkpoint) error {
	prev, havePrev := since, since.Key != ""
	for _, p := range positions {
		if p.Cursor == "" || p.Key == "" {
			continue
		}
		if havePrev && comparePositions(p, prev) <= 0 {
			return fmt.Errorf("PostgreSQL orders (cursor %q, key %q) after (cursor %q, key %q), the pipeline does not: "+
				"rows would be lost; use a timestamp, date or numeric cursor_column and a numeric or non-numeric text key",
				p.Cursor, p.Key, prev.Cursor, prev.Key)
		}
		prev, havePrev = p, true
	}
	return nil
}
