package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// StagePage stores a page's raw records under (runID, page, stage). The
// stage token tells apart two fetches of the same page number: a retried
// FetchPage, or an execution reset from the Web UI that numbers its pages
// afresh, stages under a new token, so no step ever reads records another
// fetch staged. Staging the same key again replaces the copy.
// The records are kept byte for byte as one JSON array, with the end offset
// of each record beside it (record_ends: little-endian uint32s) so LoadPage
// can cut them apart without parsing.
// An empty record is stored as null.
func (s *Store) StagePage(ctx context.Context, runID string, page int, stage string, records []json.RawMessage) error {
	what := fmt.Sprintf("stage page %d of run %q", page, runID)
	body, ends := encodePage(records)
	if utf8.Valid(body) && bytes.IndexByte(body, 0) < 0 {
		// Sent as text the page travels as is; as bytea lib/pq would send it
		// hex-encoded, twice the size, and staging would take twice as long.
		_, err := s.DB.ExecContext(ctx, stagePageAsText, runID, page, stage, body, ends, len(records))
		if code := postgres.SQLState(err); !strings.HasPrefix(code, "22") {
			return postgres.Classify(err, what)
		}
		// The server's encoding cannot hold the text: send bytes instead.
	}
	_, err := s.DB.ExecContext(ctx, stagePageAsBytes, runID, page, stage, body, ends, len(records))
	return postgres.Classify(err, what)
}

// stagePageAsText and stagePageAsBytes upsert a staged page; the first takes
// the records as UTF-8 text, the second as bytea.
const (
	stagePageAsText = `
INSERT INTO tether_staged_pages (run_id, page, stage, records, record_ends, record_count)
VALUES ($1, $2, $3, convert_to($4::text, 'UTF8'), $5, $6)
ON CONFLICT (run_id, page, stage) DO UPDATE SET
	records = EXCLUDED.records,
	record_ends = EXCLUDED.record_ends,
	record_count = EXCLUDED.record_count,
	created_at = now()`
	stagePageAsBytes = `
INSERT INTO tether_staged_pages (run_id, page, stage, records, record_ends, record_count)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (run_id, page, stage) DO UPDATE SET
	records = EXCLUDED.records,
	record_ends = EXCLUDED.record_ends,
	record_count = EXCLUDED.record_count,
	created_at = now()`
)

// encodePage writes records as one JSON array and returns it with the end
// offset of each record in it, packed as little-endian uint32s.
func encodePage(records []json.RawMessage) ([]byte, []byte) {
	size := 2 + len(records)
	for _, r := range records {
		size += len(r)
	}
	var buf bytes.Buffer
	buf.Grow(size + 4*len(records)) // room for a few nulls
	ends := make([]byte, 0, 4*len(records))
	buf.WriteByte('[')
	for i, r := range records {
		if i > 0 {
			buf.WriteByte(',')
		}
		if len(r) == 0 {
			r = json.RawMessage("null")
		}
		buf.Write(r)
		ends = binary.LittleEndian.AppendUint32(ends, uint32(buf.Len()))
	}
	buf.WriteByte(']')
	return buf.Bytes(), ends
}

// LoadPage returns the records staged under (runID, page, stage), byte for byte as
// staged. A page that is not staged (the run was cleaned up, or the page
// never fetched) is a non-retryable failure.TypeStagedPageMissing error
// naming the run and page.
func (s *Store) LoadPage(ctx context.Context, runID string, page int, stage string) ([]json.RawMessage, error) {
	what := fmt.Sprintf("load staged page %d of run %q", page, runID)
	var (
		body  []byte
		ends  []byte
		count int
	)
	err := s.DB.QueryRowContext(ctx,
		`SELECT records, record_ends, record_count FROM tether_staged_pages WHERE run_id = $1 AND page = $2 AND stage = $3`,
		runID, page, stage).Scan(&body, &ends, &count)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, failure.Permanent(failure.TypeStagedPageMissing,
			fmt.Errorf("%s: not staged (the run was cleaned up, or the page never fetched)", what), runID, page)
	}
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	records, err := decodePage(body, ends, count)
	if err != nil {
		return nil, failure.Permanent(failure.TypeStagedPageMissing, fmt.Errorf("%s: %w", what, err), runID, page)
	}
	return records, nil
}

// decodePage cuts a staged array into its records: by the stored end
// offsets when they are present and consistent, else by parsing the array.
// The records share body's memory (each capped, so appending to one cannot
// overwrite the next).
func decodePage(body, ends []byte, count int) ([]json.RawMessage, error) {
	if records, ok := splitByEnds(body, ends, count); ok {
		return records, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("staged records are not a JSON array")
	}
	records := make([]json.RawMessage, 0, count)
	for dec.More() {
		var r json.RawMessage
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("staged record %d: %w", len(records), err)
		}
		records = append(records, r)
	}
	if len(records) != count {
		return nil, fmt.Errorf("staged page holds %d records, %d expected", len(records), count)
	}
	return records, nil
}

// splitByEnds cuts body at the given end offsets; ok is false when they do
// not describe body.
func splitByEnds(body, ends []byte, count int) ([]json.RawMessage, bool) {
	if ends == nil || len(ends) != 4*count || len(body) < 2 || body[0] != '[' || body[len(body)-1] != ']' {
		return nil, false
	}
	records := make([]json.RawMessage, count)
	start := 1
	for i := range records {
		end := int(binary.LittleEndian.Uint32(ends[4*i:]))
		if end < start || end > len(body)-1 {
			return nil, false
		}
		records[i] = json.RawMessage(body[start:end:end])
		start = end + 1
	}
	if count > 0 && start != len(body) || count == 0 && len(body) != 2 {
		return nil, false
	}
	return records, true
}

// DropPages deletes every page staged by a run.
func (s *Store) DropPages(ctx context.Context, runID string) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM tether_staged_pages WHERE run_id = $1`, runID)
	return postgres.Classify(err, fmt.Sprintf("drop staged pages of run %q", runID))
}

// ForgetRun deletes what a run kept only for its own retries once the run
// has ended: its staged pages and its applied-batch markers. The run's row,
// its quarantined records and the checkpoint stay.
func (s *Store) ForgetRun(ctx context.Context, runID string) error {
	what := fmt.Sprintf("forget run %q", runID)
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return postgres.Classify(err, what)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `DELETE FROM tether_staged_pages WHERE run_id = $1`, runID); err != nil {
		return postgres.Classify(err, what+": staged pages")
	}
	// Markers are keyed by the run, or by the run and one of its executions
	// ("<run>#<execution>"): forget both.
	if _, err := tx.ExecContext(ctx, `DELETE FROM tether_applied_batches WHERE run_id = $1 OR starts_with(run_id, $1 || '#')`, runID); err != nil {
		return postgres.Classify(err, what+": applied batches")
	}
	return postgres.Classify(tx.Commit(), what)
}

// ForgetEarlierRuns drops the staged pages and applied-batch markers of an
// integration's finished runs other than keep: a run that failed keeps its
// pages so that a reset can continue it, until a later run completes.
func (s *Store) ForgetEarlierRuns(ctx context.Context, integration, keep string) error {
	rows, err := s.DB.QueryContext(ctx,
		`SELECT run_id FROM tether_runs WHERE integration = $1 AND run_id <> $2 AND status <> 'Running'`, integration, keep)
	if err != nil {
		return postgres.Classify(err, fmt.Sprintf("list earlier runs of %q", integration))
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return postgres.Classify(err, "scan run id")
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return postgres.Classify(err, "list earlier runs")
	}
	for _, id := range ids {
		if err := s.ForgetRun(ctx, id); err != nil {
			return err
		}
	}
	return nil
}
