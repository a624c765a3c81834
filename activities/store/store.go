package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Querier runs statements: *sql.DB and *sql.Tx both implement it, so the
// methods that take one can join the caller's transaction.
type Querier = postgres.Querier

// Store reads and writes the pipeline's state tables. It is safe for
// concurrent use; the tables must exist (see Migrate).
type Store struct {
	// DB is the pool used by methods that take no Querier, and by those
	// given a nil one.
	DB *sql.DB
}

// New returns a Store on db.
func New(db *sql.DB) *Store { return &Store{DB: db} }

// on returns q, or the Store's pool when q is nil.
func (s *Store) on(q Querier) Querier {
	if q == nil {
		return s.DB
	}
	return q
}

// checkpointJSON encodes a checkpoint for a jsonb column.
func checkpointJSON(c cursor.Checkpoint) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("encode checkpoint: %w", err))
	}
	return string(b), nil
}

// optionalCheckpointJSON encodes c, or NULL when c is zero.
func optionalCheckpointJSON(c cursor.Checkpoint) (sql.NullString, error) {
	if c.IsZero() {
		return sql.NullString{}, nil
	}
	s, err := checkpointJSON(c)
	return sql.NullString{String: s, Valid: err == nil}, err
}

// positionJSON encodes p for a jsonb column, or NULL when p is the zero
// Position (the first page, or nothing left to read).
func positionJSON(p cursor.Position) (sql.NullString, error) {
	if p == (cursor.Position{}) {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return sql.NullString{}, failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("encode position: %w", err))
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// decodeJSON decodes a nullable jsonb column into v; NULL leaves v as is.
func decodeJSON(b []byte, v any, what string) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("decode %s: %w", what, err))
	}
	return nil
}

// cleanText makes s storable in a text or jsonb value: PostgreSQL rejects
// NUL characters and invalid UTF-8, and a record that cannot be quarantined
// because its error message quotes such bytes would block the run.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

// nullText is s as a nullable text value: NULL when empty.
func nullText(s string) sql.NullString {
	return sql.NullString{String: cleanText(s), Valid: s != ""}
}
