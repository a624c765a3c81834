package httpsink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Modes of an HTTP destination.
const (
	// ModeUpsert creates an object once and updates it afterwards under the
	// id the API gave it; compensation deletes what a run created and puts
	// back what it changed.
	ModeUpsert = "upsert"
	// ModeNotify POSTs every new version of a record, as to a webhook;
	// compensation sends the Reversal.
	ModeNotify = "notify"
)

// Destination is one HTTP destination of an integration: the API and how
// its objects are kept.
type Destination struct {
	// Name names the destination in errors and logs.
	Name string
	// Config is the API.
	Config Config
	// Mode is ModeUpsert or ModeNotify.
	Mode string
	// Identity names the identity map's namespace: record key → the API's
	// id. Integrations writing the same objects share one.
	Identity string
	// Reversal is the request a notify destination's compensation sends
	// for every notification it undoes (nil: nothing to undo them with).
	Reversal *Endpoint
}

// Sink is the HTTP destination connector (connector.Sink). A record is
// created once, with an idempotency key derived from the run, its key and
// its row, so a retried call never creates a second object; the id the
// API gives it is kept in the identity map, and later versions update it
// under that id (upsert mode). A record whose row the map already holds is
// not sent again. In an atomic run, an image of every record is committed
// before the calls, so Restore knows what they may have done even when the
// batch never commits.
type Sink struct {
	dest     Destination
	client   *Client
	reversal *Client // notify destinations with a reversal
	ids      connector.IdentityMap
	db       *sql.DB // where the identity map lives, for a failed batch's own transaction
	log      *slog.Logger
}

var _ connector.Sink = (*Sink)(nil)

// New builds the Sink of destination d of the named integration: its
// client (with opts) and, for a notify destination with a reversal, the
// reversal's client. The identity map ids lives in db.
func New(integration string, d Destination, ids connector.IdentityMap, db *sql.DB, opts ...Option) (*Sink, error) {
	switch d.Mode {
	case "":
		d.Mode = ModeUpsert
	case ModeUpsert, ModeNotify:
	default:
		// Any other mode would be applied as notify, and Restore would have no
		// client to undo it with.
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("http sink %q: mode: %q is not %q or %q",
			integration+"/"+d.Name, d.Mode, ModeUpsert, ModeNotify))
	}
	if d.Identity == "" {
		d.Identity = integration + "/" + d.Name
	}
	s := &Sink{dest: d, ids: ids, db: db, log: slog.New(slog.DiscardHandler)}
	withLabels := func(destination string) []Option {
		return append([]Option{WithDestination(integration, destination)}, opts...)
	}
	var err error
	if s.client, err = NewClient(integration+"/"+d.Name, d.Config, withLabels(d.Name)...); err != nil {
		return nil, err
	}
	s.log = s.client.log
	if d.Mode == ModeNotify && d.Reversal != nil {
		rc := d.Config
		rc.Create = *d.Reversal
		rc.Batch = Batch{}
		if s.reversal, err = NewClient(integration+"/"+d.Name+" reversal", rc, withLabels(d.Name+"/reversal")...); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Capabilities: an HTTP destination is not transactional (calls are made
// idempotent instead), compensates, and neither deletes nor sweeps.
func (s *Sink) Capabilities() connector.Capabilities {
	return connector.Capabilities{Kind: "http", Compensation: true}
}

// Client is the API client, for callers that need the calls themselves.
func (s *Sink) Client() *Client { return s.client }

// String names the API (credentials redacted).
func (s *Sink) String() string { return s.client.String() }

// sent is what an Apply's calls did, to record in the batch's transaction.
type sent struct {
	identities []connector.Identity
	sentIDs    map[string]string
}

// Apply sends the batch's rows to the API, then records the identities
// the calls created or updated in w's transaction. Unchanged rows (the
// identity map holds the same row) are not sent; known records are updated
// under their id (upsert mode); others are created under an idempotency
// key. Rows the API refuses are returned as refusals; an error that stops
// the batch keeps what is known (created ids, refused records) first.
func (s *Sink) Apply(ctx context.Context, w connector.Writer, b connector.Batch) (connector.Result, error) {
	var res connector.Result
	ns := s.dest.Identity
	known, err := s.ids.LookupIdentities(ctx, nil, ns, b.Keys)
	if err != nil {
		return res, err
	}
	// An earlier attempt at this batch may have sent some records already.
	done := map[string]connector.IdentityImage{}
	if b.KeepImages {
		images, err := s.ids.IdentityImages(ctx, b.RunID, ns, b.Seq)
		if err != nil {
			return res, err
		}
		for _, im := range images {
			if im.SentID != "" {
				done[im.Key] = im
			}
		}
	}
	// The last row of a key wins, as in a PostgreSQL destination.
	last := make(map[string]int, len(b.Rows))
	for i, k := range b.Keys {
		last[k] = i
	}
	var (
		records []Record
		recRow  []int // records[j] is b.Rows[recRow[j]]
		bodies  [][]byte
		images  []connector.IdentityImage
	)
	for i, row := range b.Rows {
		key := b.Keys[i]
		if last[key] != i {
			res.Duplicates++
			continue
		}
		body, err := json.Marshal(row)
		if err != nil {
			res.Refused = append(res.Refused, connector.Refusal{Index: i, Keyword: "json",
				Message: fmt.Sprintf("destination %q: row is not JSON: %v", s.dest.Name, err)})
			continue
		}
		prior, ok := known[key]
		if ok && prior.RowHash == RowHash(body) {
			// Sent by an earlier attempt of this very batch (which failed
			// part-way): counted as what that attempt did.
			if im, mine := done[key]; mine && prior.RunID == b.RunID && im.SentID == prior.ExternalID {
				if im.Existed {
					res.Updated++
				} else {
					res.Inserted++
				}
				continue
			}
			res.Unchanged++
			continue
		}
		rec := Record{Key: key, Row: row, IdempotencyKey: IdempotencyKey(b.RunID, key, row)}
		if ok && s.dest.Mode == ModeUpsert {
			rec.ExternalID = prior.ExternalID
		}
		records, recRow, bodies = append(records, rec), append(recRow, i), append(bodies, body)
		images = append(images, connector.IdentityImage{Key: key, Seq: b.Seq, Existed: ok, Prior: prior,
			IdempotencyKey: rec.IdempotencyKey, SentRow: body})
	}
	if len(records) > 0 {
		out, err := s.send(ctx, b, records, recRow, bodies, images, &res)
		if err != nil {
			return res, err
		}
		if err := s.record(ctx, w, b, out); err != nil {
			return res, err
		}
	}
	return res, nil
}

// send makes the calls of an Apply and counts their outcomes in res.
func (s *Sink) send(ctx context.Context, b connector.Batch, records []Record, recRow []int, bodies [][]byte, images []connector.IdentityImage, res *connector.Result) (*sent, error) {
	if b.KeepImages {
		firstPerRun := s.dest.Mode == ModeUpsert
		if err := s.ids.RecordIdentityImages(ctx, nil, b.RunID, s.dest.Identity, b.Seq, firstPerRun, images); err != nil {
			return nil, err
		}
	}
	out, err := s.client.Apply(ctx, records)
	if err != nil {
		// Keep what is known before failing: the objects created or
		// updated (so a retry updates them and compensation finds their
		// ids), and the records the API refused outright (4xx), which
		// compensation has nothing to undo for.
		if perr := s.recordPartial(ctx, b, records, bodies, out); perr != nil {
			s.log.Warn("recording a failed batch's partial outcome failed", "destination", s.dest.Name, "error", perr)
		}
		return nil, err // classified: throttled, circuit open, transient or permanent
	}
	// An object deleted in the destination since it was last sent (404 or
	// 410 on its update) is created again.
	var again []int
	for j, r := range out.Records {
		if r.Outcome == OutcomeConflict && records[j].ExternalID != "" &&
			(r.Status == http.StatusNotFound || r.Status == http.StatusGone) {
			again = append(again, j)
		}
	}
	if len(again) > 0 {
		recs := make([]Record, len(again))
		for i, j := range again {
			recs[i] = records[j]
			recs[i].ExternalID = ""
		}
		out2, err := s.client.Apply(ctx, recs)
		if err != nil {
			return nil, err
		}
		for i, j := range again {
			out.Records[j] = out2.Records[i]
		}
	}
	done := &sent{sentIDs: map[string]string{}}
	for j, r := range out.Records {
		i := recRow[j]
		switch r.Outcome {
		case OutcomeCreated, OutcomeUpdated:
			if r.Outcome == OutcomeCreated {
				res.Inserted++
			} else {
				res.Updated++
			}
			done.identities = append(done.identities, connector.Identity{Key: records[j].Key, ExternalID: r.ExternalID,
				RowHash: RowHash(bodies[j]), LastRow: bodies[j]})
			done.sentIDs[records[j].Key] = r.ExternalID
		case OutcomeConflict:
			res.Refused = append(res.Refused, connector.Refusal{Index: i, Keyword: "conflict",
				Message: fmt.Sprintf("destination %q: %s", s.dest.Name, r.Err)})
		default: // rejected (superseded cannot happen: keys are unique here)
			res.Refused = append(res.Refused, connector.Refusal{Index: i, Keyword: "rejected",
				Message: fmt.Sprintf("destination %q: %s", s.dest.Name, r.Err)})
		}
	}
	return done, nil
}

// recordPartial records what an Apply that failed part-way did, in its own
// transaction (the batch's is rolled back): the identities of the records
// it created or updated and, in an atomic run, their ids in the images;
// the images of records the API refused with a 4xx answer (not 408 or 429)
// are dropped, as nothing was written for them.
func (s *Sink) recordPartial(ctx context.Context, b connector.Batch, records []Record, bodies [][]byte, res Result) error {
	done := &sent{sentIDs: map[string]string{}}
	var refused []connector.IdentityImage
	for j, r := range res.Records {
		switch {
		case r.Outcome == OutcomeCreated || r.Outcome == OutcomeUpdated:
			done.identities = append(done.identities, connector.Identity{Key: records[j].Key, ExternalID: r.ExternalID,
				RowHash: RowHash(bodies[j]), LastRow: bodies[j]})
			done.sentIDs[records[j].Key] = r.ExternalID
		case r.Outcome == "" && r.Status >= 400 && r.Status < 500 &&
			r.Status != http.StatusRequestTimeout && r.Status != http.StatusTooManyRequests:
			refused = append(refused, connector.IdentityImage{Key: records[j].Key, Seq: b.Seq})
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return postgres.Classify(err, "begin recording a partial batch")
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := s.save(ctx, tx, b, done); err != nil {
		return err
	}
	if b.KeepImages {
		if err := s.ids.DropIdentityImages(ctx, tx, b.RunID, s.dest.Identity, refused); err != nil {
			return err
		}
	}
	return postgres.Classify(tx.Commit(), "commit a partial batch")
}

// record saves what the calls did in the batch's transaction.
func (s *Sink) record(ctx context.Context, w connector.Writer, b connector.Batch, done *sent) error {
	tx, err := w.Tx(ctx)
	if err != nil {
		return err
	}
	return s.save(ctx, tx, b, done)
}

// save records the identities the calls created or updated and the ids
// they got.
func (s *Sink) save(ctx context.Context, q postgres.Querier, b connector.Batch, done *sent) error {
	if err := s.ids.SaveIdentities(ctx, q, s.dest.Identity, b.RunID, done.identities); err != nil {
		return err
	}
	if !b.KeepImages {
		return nil
	}
	return s.ids.SetImageSentIDs(ctx, q, b.RunID, s.dest.Identity, b.Seq, done.sentIDs)
}

// Delete is not supported: an HTTP destination's objects are created and
// updated by syncs; change events go to PostgreSQL destinations.
func (s *Sink) Delete(context.Context, connector.Writer, connector.Batch) (connector.Result, error) {
	return connector.Result{}, failure.Permanent(failure.TypeConfig, fmt.Errorf(
		"destination %q is an HTTP API: deleting its objects by event is not supported", s.dest.Name))
}

// Restore undoes batch seq of a run, record by record, each image consumed
// once undone: an upsert destination's objects the run created are deleted
// and those it changed get their previous row back; a notify destination's
// notifications get their reversal. A transient failure is returned for a
// retry (records done stay done); the records that cannot be undone are
// listed in a permanent failure.TypeCompensation error, to repair by hand.
func (s *Sink) Restore(ctx context.Context, _ connector.Writer, runID string, seq int) (int, error) {
	ns := s.dest.Identity
	images, err := s.ids.IdentityImages(ctx, runID, ns, seq)
	if err != nil {
		return 0, err
	}
	var left []string
	undone := 0
	for _, im := range images {
		if err := s.undo(ctx, im); err != nil {
			if !failure.IsPermanent(err) {
				return undone, err
			}
			left = append(left, fmt.Sprintf("%s: %v", im.Key, err))
			continue
		}
		if err := s.ids.UndoIdentity(ctx, runID, ns, im); err != nil {
			return undone, err
		}
		undone++
	}
	if len(left) > 0 {
		sort.Strings(left)
		return undone, failure.Permanent(failure.TypeCompensation, fmt.Errorf(
			"destination %q, batch %d: %d of %d records could not be undone; repair them by hand (their images stay in tether_identity_images, namespace %q): %s",
			s.dest.Name, seq, len(left), len(images), ns, strings.Join(left, "; ")))
	}
	return undone, nil
}

// undo undoes one record's call.
func (s *Sink) undo(ctx context.Context, im connector.IdentityImage) error {
	sentRow, err := decodeRow(im.SentRow)
	if err != nil {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("the row sent is unreadable: %v", err))
	}
	if s.dest.Mode == ModeUpsert && im.Existed {
		prior, err := decodeRow(im.Prior.LastRow)
		if err != nil || prior == nil {
			return failure.Permanent(failure.TypeCompensation, fmt.Errorf("no readable previous row to restore %s with", im.Prior.ExternalID))
		}
		return s.client.Restore(ctx, im.Prior.ExternalID, prior)
	}
	if s.dest.Mode == ModeNotify && s.reversal == nil {
		return nil // nothing declared to undo a notification with
	}
	id := im.SentID
	if id == "" {
		// The call's answer was never recorded (the worker stopped, or the
		// batch failed after it): ask again under the same idempotency key,
		// which answers with the object the first call created, if any.
		res, err := s.client.Apply(ctx, []Record{{Key: im.Key, Row: sentRow, IdempotencyKey: im.IdempotencyKey}})
		if err != nil {
			return err
		}
		r := res.Records[0]
		if r.Outcome == OutcomeRejected || r.Outcome == OutcomeConflict {
			// The API refuses the create (it replays its first answer):
			// nothing was created, so nothing is left to undo.
			return nil
		}
		if r.Outcome != OutcomeCreated {
			return failure.Permanent(failure.TypeCompensation, fmt.Errorf(
				"could not learn the id of the object created under idempotency key %s: %s %s", im.IdempotencyKey, r.Outcome, r.Err))
		}
		id = r.ExternalID
	}
	if s.dest.Mode == ModeUpsert {
		return s.client.Delete(ctx, id, sentRow)
	}
	res, err := s.reversal.Apply(ctx, []Record{{
		Key:            im.Key,
		Row:            map[string]any{"reversal_of": id, "record": json.RawMessage(im.SentRow)},
		IdempotencyKey: "reversal-" + im.IdempotencyKey,
	}})
	if err != nil {
		return err
	}
	if r := res.Records[0]; r.Outcome != OutcomeCreated {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("the reversal of %s was refused: %s", id, r.Err))
	}
	return nil
}

// LastImaged returns the highest batch of the run with images left.
func (s *Sink) LastImaged(ctx context.Context, runID string) (int, error) {
	return s.ids.LastIdentityImageSeq(ctx, runID, s.dest.Identity)
}

// Forget drops the images the run left.
func (s *Sink) Forget(ctx context.Context, runID string) error {
	return s.ids.ForgetIdentityImages(ctx, runID, s.dest.Identity)
}

// RowHash identifies a row's content (its JSON, keys sorted).
func RowHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

func decodeRow(b json.RawMessage) (map[string]any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var row map[string]any
	err := dec.Decode(&row)
	return row, err
}

// Erase deletes the record the destination holds for the source record
// key (found in the identity map) with the destination's delete endpoint,
// for a subject's erasure; it returns 1 when there was one to delete, 0
// when the identity map knows none. A notify destination keeps no record
// to delete: Erase says so.
func (s *Sink) Erase(ctx context.Context, key string) (int, error) {
	if s.dest.Mode == ModeNotify {
		return 0, failure.Permanent(failure.TypeConfig, fmt.Errorf("destination %q only notifies: nothing it holds can be deleted by tether; ask its owner to erase record %q", s.dest.Name, key))
	}
	ids, err := s.ids.LookupIdentities(ctx, nil, s.dest.Identity, []string{key})
	if err != nil {
		return 0, err
	}
	id, ok := ids[key]
	if !ok || id.ExternalID == "" {
		return 0, nil
	}
	row, err := decodeRow(id.LastRow)
	if err != nil {
		row = map[string]any{}
	}
	if err := s.client.Delete(ctx, id.ExternalID, row); err != nil {
		return 0, err
	}
	return 1, nil
}
