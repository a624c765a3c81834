package pgsink

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// Content comparison (reconciliation). A row is compared by two texts that
// PostgreSQL itself produces from the table's column types: the key text,
// ROW(key columns)::text, and the row text, ROW(all columns)::text. The
// rows a source would write are cast to the column types the same way COPY
// reads them, so the texts of a source row and of the stored row are equal
// exactly when the upsert would find nothing to change. Hashing the texts
// (md5, on either side) is left to the caller.

// RowText is the key and row text of one row of a batch.
type RowText struct {
	// Index is the row's position in the caller's rows.
	Index int
	// Key is ROW(key columns)::text, e.g. "(42)".
	Key string
	// Row is ROW(every column)::text.
	Row string
	// KeyColumn is the single key column's ::text ("" for a composite
	// key), as quarantine entries and source keys spell it.
	KeyColumn string
}

// Exprs are SQL expressions over the target table aliased t.
type Exprs struct {
	// Target is the quoted, possibly schema-qualified, target table.
	Target string
	// Key is the key text, Row the row text (see RowText).
	Key, Row string
	// KeyJSON is the key as the before-images table stores it.
	KeyJSON string
	// KeyColumn is the single key column's ::text, or "" for a composite key.
	KeyColumn string
}

// Exprs returns the comparison expressions over the target table (alias t).
func (s *TableWriter) Exprs() Exprs {
	q := pq.QuoteIdentifier
	keys := make([]string, len(s.table.Key))
	obj := make([]string, len(s.table.Key))
	for i, k := range s.table.Key {
		keys[i] = "t." + q(k)
		obj[i] = pq.QuoteLiteral(k) + ", t." + q(k)
	}
	all := make([]string, len(s.table.Columns))
	for i, c := range s.table.Columns {
		all[i] = "t." + q(c.Name)
	}
	e := Exprs{
		Target:  s.sql.target,
		Key:     "ROW(" + strings.Join(keys, ", ") + ")::text",
		Row:     "ROW(" + strings.Join(all, ", ") + ")::text",
		KeyJSON: "jsonb_build_object(" + strings.Join(obj, ", ") + ")",
	}
	if len(keys) == 1 {
		e.KeyColumn = keys[0] + "::text"
	}
	return e
}

// Querier is what RowTexts needs of a *sql.DB, *sql.Conn or *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// RowTexts computes the key and row texts rows would have once written,
// in one round trip: each row is converted as Upsert converts it and
// PostgreSQL casts the values to the column types. Rows Upsert would reject
// for their values are returned as rejected (a reconciliation counts them
// as invalid); rows sharing a key keep the last, as Upsert does.
func (s *TableWriter) RowTexts(ctx context.Context, q Querier, rows []Row) ([]RowText, []Rejected, error) {
	var res Result
	staged := s.stage(rows, &res, false)
	if len(staged) == 0 {
		return nil, res.Rejected, nil
	}
	cols := s.table.Columns
	objs := make([]map[string]any, len(staged))
	for i, r := range staged {
		o := make(map[string]any, len(cols)+1)
		for j, c := range cols {
			o[c.Name] = r.values[j]
		}
		o[ordinalName] = i
		objs[i] = o
	}
	body, err := json.Marshal(objs)
	if err != nil {
		return nil, nil, failure.Permanent(failure.TypeSinkSQL, fmt.Errorf("row texts for %s: encode rows: %w", s.sql.target, err))
	}
	out := make([]RowText, 0, len(staged))
	rs, err := q.QueryContext(ctx, s.sql.rowTexts, string(body))
	if err != nil {
		return nil, nil, classify(err, "row texts for "+s.sql.target)
	}
	defer rs.Close()
	for rs.Next() {
		var (
			i      int
			rt     RowText
			keyCol sql.NullString
		)
		if err := rs.Scan(&i, &rt.Key, &rt.Row, &keyCol); err != nil {
			return nil, nil, classify(err, "row texts for "+s.sql.target)
		}
		if i < 0 || i >= len(staged) {
			return nil, nil, permanent("row texts for %s: row %d out of range", s.sql.target, i)
		}
		rt.Index, rt.KeyColumn = staged[i].index, keyCol.String
		out = append(out, rt)
	}
	if err := rs.Err(); err != nil {
		return nil, nil, classify(err, "row texts for "+s.sql.target)
	}
	return out, res.Rejected, nil
}

// ordinalName is the JSON field carrying a row's position into rowTexts;
// it contains a space, so no column can take its name.
const ordinalName = "tether ordinal"

// rowTextsSQL renders the query RowTexts runs: $1 is a JSON array of
// objects holding each column's COPY text (or null) and the ordinal.
func rowTextsSQL(t Table) string {
	q := pq.QuoteIdentifier
	var defs, typed, keys []string
	for _, c := range t.Columns {
		defs = append(defs, q(c.Name)+" text")
		typed = append(typed, "x."+q(c.Name)+"::"+c.Type)
	}
	isKey := map[string]string{}
	for _, c := range t.Columns {
		isKey[c.Name] = "x." + q(c.Name) + "::" + c.Type
	}
	for _, k := range t.Key {
		keys = append(keys, isKey[k])
	}
	keyCol := "NULL::text"
	if len(keys) == 1 {
		keyCol = "(" + keys[0] + ")::text"
	}
	return "SELECT (x." + q(ordinalName) + ")::int, ROW(" + strings.Join(keys, ", ") + ")::text, ROW(" +
		strings.Join(typed, ", ") + ")::text, " + keyCol +
		"\nFROM jsonb_to_recordset($1::jsonb) AS x(" + strings.Join(defs, ", ") + ", " + q(ordinalName) + " int)"
}
