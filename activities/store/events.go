package store

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Delivery is one event's delivery, as the dedupe of event applies records
// it: a source's delivery id (a webhook's delivery header, a captured
// change's id) and the entity it was about.
type Delivery struct {
	Source string
	ID     string
	Key    string
	// Sender is who delivered it, as the ingress authenticated it.
	Sender string
}

// RecordDeliveries records, in q (the apply's transaction), the
// deliveries of events being applied to integration, and reports for each
// whether it is new: false means an earlier apply recorded it (a
// redelivery), and the event must not be applied again. A delivery listed
// twice is new only the first time.
func (s *Store) RecordDeliveries(ctx context.Context, q Querier, integration string, ds []Delivery) ([]bool, error) {
	fresh := make([]bool, len(ds))
	if len(ds) == 0 {
		return fresh, nil
	}
	sources, ids, keys, senders := make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds))
	for i, d := range ds {
		sources[i], ids[i], keys[i], senders[i] = d.Source, d.ID, cleanText(d.Key), cleanText(d.Sender)
	}
	what := fmt.Sprintf("record %d deliveries of %q", len(ds), integration)
	rows, err := s.on(q).QueryContext(ctx, `
INSERT INTO tether_event_deliveries (source, delivery_id, integration, entity_key, sender)
SELECT d.source, d.id, $4, d.key, d.sender
FROM unnest($1::text[], $2::text[], $3::text[], $5::text[]) WITH ORDINALITY AS d(source, id, key, sender, ord)
ORDER BY d.ord
ON CONFLICT (source, delivery_id) DO NOTHING
RETURNING source, delivery_id`, pq.StringArray(sources), pq.StringArray(ids), pq.StringArray(keys), integration, pq.StringArray(senders))
	if err != nil {
		return nil, postgres.Classify(err, what)
	}
	defer rows.Close()
	inserted := map[[2]string]bool{}
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			return nil, postgres.Classify(err, what)
		}
		inserted[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, postgres.Classify(err, what)
	}
	for i, d := range ds {
		k := [2]string{d.Source, d.ID}
		fresh[i] = inserted[k]
		delete(inserted, k) // a second listing of the same delivery is not new
	}
	return fresh, nil
}

// DeliveryRecorded reports whether a source's delivery was applied
// already (and not yet pruned).
func (s *Store) DeliveryRecorded(ctx context.Context, source, id string) (bool, error) {
	var seen bool
	err := s.DB.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM tether_event_deliveries WHERE source = $1 AND delivery_id = $2)`, source, id).Scan(&seen)
	return seen, postgres.Classify(err, fmt.Sprintf("look up delivery %q of source %q", id, source))
}

// PruneDeliveries forgets the deliveries applied before now minus
// retention; a redelivery after that is recognised only by the entity's
// version. It returns how many it forgot.
func (s *Store) PruneDeliveries(ctx context.Context, retention time.Duration) (int64, error) {
	res, err := s.DB.ExecContext(ctx,
		`DELETE FROM tether_event_deliveries WHERE applied_at < now() - make_interval(secs => $1)`, retention.Seconds())
	if err != nil {
		return 0, postgres.Classify(err, "prune event deliveries")
	}
	return res.RowsAffected()
}
