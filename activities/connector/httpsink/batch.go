package httpsink

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// createBatch creates the records at idx with one POST of a JSON array to
// batch.path, and reads the per-item results (same order) into out. An
// item the destination could not process for a transient reason (408,
// 429, 5xx) makes the call fail transiently once every item is read; the
// other items keep their outcomes.
func (s *Client) createBatch(ctx context.Context, records []Record, idx []int, out []RecordResult) error {
	b := s.cfg.Batch
	items := make([]json.RawMessage, 0, len(idx))
	sent := make([]int, 0, len(idx))
	keys := make([]string, 0, len(idx))
	for _, i := range idx {
		rec := records[i]
		key := idempotencyKey(rec)
		row := rec.Row
		if b.IdempotencyKeyField != "" {
			row = maps.Clone(row)
			if row == nil {
				row = map[string]any{}
			}
			row[b.IdempotencyKeyField] = key
		}
		item, err := json.Marshal(row)
		if err != nil {
			out[i] = RecordResult{Key: rec.Key, Outcome: OutcomeRejected, Err: fmt.Sprintf("row is not JSON: %v", err)}
			continue
		}
		items = append(items, item)
		sent = append(sent, i)
		keys = append(keys, key)
	}
	if len(items) == 0 {
		return nil
	}
	body, err := json.Marshal(items)
	if err != nil { // unreachable: every item is valid JSON
		return failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("batch body: %w", err))
	}
	header := http.Header{"Content-Type": {"application/json"}}
	if b.IdempotencyKeyField == "" {
		// Without per-item keys, the batch is deduplicated as a whole; with
		// them, a key for the whole would replay stale item failures.
		header.Set(s.cfg.IdempotencyHeader, batchKey(keys))
	}
	u := s.batchURL
	rep, err := s.send(ctx, http.MethodPost, u, body, header)
	if err != nil {
		return err
	}
	ok := rep.status >= 200 && rep.status <= 299
	if !ok && rep.status != http.StatusBadRequest && rep.status != http.StatusUnprocessableEntity {
		return s.statusError(http.MethodPost, u, rep)
	}
	results, perr := s.batchResults(rep, len(items))
	if perr != nil {
		if !ok { // a refusal of the whole batch, not item by item
			return s.statusError(http.MethodPost, u, rep)
		}
		return failure.Permanent(failure.TypeSinkMalformed,
			fmt.Errorf("POST %s: status %d: %v: check batch.status_path, batch.id_path and batch.error_path", httpclient.RedactURL(u.String()), rep.status, perr),
			httpclient.ErrorDetails{StatusCode: rep.status, URL: httpclient.RedactURL(u.String())})
	}
	var retry error
	for j, i := range sent {
		r, transient, err := s.batchItem(results[j], rep.status)
		r.Key = records[i].Key
		out[i] = r
		details := httpclient.ErrorDetails{StatusCode: r.Status, URL: httpclient.RedactURL(u.String())}
		where := fmt.Sprintf("POST %s: item %d (key %q) of %d", details.URL, j, r.Key, len(sent))
		if err != nil {
			return failure.Permanent(failure.TypeSinkMalformed, fmt.Errorf("%s: created, but %v: check batch.id_path", where, err), details)
		}
		if transient && retry == nil {
			retry = failure.Transient(failure.TypeSinkUnavailable, fmt.Errorf("%s: %s", where, r.Err), details)
		}
	}
	return retry
}

// batchResults reads a batch answer: an array of n items.
func (s *Client) batchResults(rep reply, n int) ([]any, error) {
	v, err := decodeJSON(rep.body)
	if err != nil {
		return nil, fmt.Errorf("the answer is not JSON (%v): %s", err, s.client.Quote(rep.body))
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("the answer is not an array: %s", s.client.Quote(rep.body))
	}
	if len(arr) != n {
		return nil, fmt.Errorf("the answer has %d items for %d records", len(arr), n)
	}
	return arr, nil
}

// batchItem reads one item's result. transient reports an item that
// failed for a reason a retry may fix (408, 429, 5xx): its Outcome stays
// empty. The error is for a created item without an id.
func (s *Client) batchItem(item any, batchStatus int) (r RecordResult, transient bool, err error) {
	b := s.cfg.Batch
	r.Status = batchStatus
	if v, ok := lookup(item, b.StatusPath); ok {
		if n, ok := v.(json.Number); ok {
			if code, err := n.Int64(); err == nil {
				r.Status = int(code)
			}
		}
	}
	msg := func() string {
		e, _ := lookup(item, b.ErrorPath)
		text := describe(e)
		if text == "" {
			text = compact(item)
		}
		return fmt.Sprintf("status %d %s: %s", r.Status, http.StatusText(r.Status), s.client.Quote([]byte(text)))
	}
	switch code := r.Status; {
	case code >= 200 && code <= 299:
		id, err := idAt(item, b.IDPath)
		if err != nil {
			return r, false, err
		}
		r.Outcome, r.ExternalID = OutcomeCreated, id
	case code == http.StatusConflict, code == http.StatusPreconditionFailed:
		r.Outcome, r.Err = OutcomeConflict, msg()
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		r.Err = msg()
		return r, true, nil
	default:
		r.Outcome, r.Err = OutcomeRejected, msg()
	}
	return r, false, nil
}
