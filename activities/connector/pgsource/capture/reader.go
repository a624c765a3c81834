package capture

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Defaults for Reader calls that leave a limit or duration unset.
const (
	// DefaultReadLimit is how many changes Read returns when asked for none.
	DefaultReadLimit = 1000
	// DefaultFallback is how long Wait waits without a notification when
	// given no fallback.
	DefaultFallback = 30 * time.Second
)

// Listener reconnect backoff: Wait falls back to polling meanwhile.
const (
	minReconnect = time.Second
	maxReconnect = 30 * time.Second
)

// Op is what a Change does to its row in the destination.
type Op string

// The two operations: an INSERT or UPDATE is an upsert, a DELETE a delete.
const (
	OpUpsert Op = "upsert"
	OpDelete Op = "delete"
)

// Change is one captured row change, as the trigger wrote it.
type Change struct {
	// ID is the outbox id: ascending in capture order, and per key in commit
	// order.
	ID int64
	// Op is OpUpsert for an INSERT or UPDATE, OpDelete for a DELETE (and for
	// the old key of an UPDATE that changed the key).
	Op Op
	// Row is the whole row as a JSON object (to_jsonb): the new row for an
	// upsert, the old one for a delete.
	Row json.RawMessage
	// ChangedAt is when the trigger ran (clock_timestamp()).
	ChangedAt time.Time
}

// Reader reads one integration's outbox: Read the oldest changes, apply
// them, Ack them; Wait between rounds. One Reader at a time should read an
// integration. Its methods are safe for concurrent use.
type Reader struct {
	db      *sql.DB
	table   string // the outbox as SQL, for messages
	what    string // "capture "name" outbox "schema"."name"", for messages
	hints   map[string]string
	readSQL string
	ackSQL  string
	lagSQL  string
	log     *slog.Logger

	listener  *pq.Listener // nil when NewReader was given no DSN
	wake      chan struct{}
	closeOnce sync.Once
}

// Option changes how NewReader builds a Reader.
type Option func(*Reader)

// WithLogger sets where the listener's connection events are logged (warn
// when it loses or cannot get its connection, info when it is back).
// Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(r *Reader) {
		if l != nil {
			r.log = l
		}
	}
}

// NewReader builds the Reader of t's outbox. Read, Ack and Lag use db; Wait
// listens for the trigger's notifications on a connection of its own,
// opened on dsn in the background (dsn empty: no listener, Wait only
// polls). It does not connect before it returns, so a database that is
// down is a retryable error of the first Read, not a failed start. An
// invalid t or dsn is a permanent failure.TypeConfig error.
func NewReader(db *sql.DB, dsn string, t Target, opts ...Option) (*Reader, error) {
	n, err := t.validated()
	if err != nil {
		return nil, err
	}
	if dsn != "" {
		if _, err := pq.NewConfig(dsn); err != nil {
			// The driver may quote the DSN it could not parse: show it redacted.
			shown := postgres.RedactDSN(dsn)
			return nil, configError(n.outbox, fmt.Errorf("capture %q: listener DSN %s: %s",
				t.Integration, shown, strings.ReplaceAll(err.Error(), dsn, shown)))
		}
	}
	r := &Reader{
		db:    db,
		table: n.outbox,
		what:  fmt.Sprintf("capture %q outbox %s", t.Integration, n.outbox),
		hints: map[string]string{
			"42P01": "capture is not installed: run Install (or InstallSQL)",
			"3F000": "capture is not installed: run Install (or InstallSQL)",
			"42501": fmt.Sprintf("GRANT USAGE ON SCHEMA %s and SELECT, DELETE ON %s to the reading role",
				pq.QuoteIdentifier(n.outboxSchema), n.outbox),
		},
		readSQL: `SELECT id, op, data, changed_at FROM ` + n.outbox + ` ORDER BY id LIMIT $1`,
		ackSQL:  `DELETE FROM ` + n.outbox + ` WHERE id = ANY ($1)`,
		lagSQL:  `SELECT count(*), min(changed_at) FROM ` + n.outbox,
		log:     slog.New(slog.DiscardHandler),
		wake:    make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(r)
	}
	if dsn != "" {
		r.listener = pq.NewListener(dsn, minReconnect, maxReconnect, r.logEvent)
		go r.listen(n.object)
	}
	return r, nil
}

// listen subscribes to channel and turns every notification into a wake-up.
// It also wakes Wait once listening starts and after every reconnect (pq
// sends a nil notification then): notifications sent while the listener
// was not connected are lost, so the caller should read.
func (r *Reader) listen(channel string) {
	if err := r.listener.Listen(channel); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return // Close came first
		}
		r.log.Warn("capture listener stopped; waiting falls back to polling", "outbox", r.table, "error", err)
		return
	}
	r.wakeUp()
	for range r.listener.Notify {
		r.wakeUp()
	}
}

// wakeUp makes the next Wait return at once; wake-ups coalesce.
func (r *Reader) wakeUp() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// logEvent logs the listener's connection events.
func (r *Reader) logEvent(ev pq.ListenerEventType, err error) {
	switch ev {
	case pq.ListenerEventDisconnected, pq.ListenerEventConnectionAttemptFailed:
		r.log.Warn("capture listener has no connection; waiting falls back to polling", "outbox", r.table, "event", ev.String(), "error", err)
	case pq.ListenerEventReconnected:
		r.log.Info("capture listener reconnected", "outbox", r.table)
	}
}

// Read returns up to limit changes (DefaultReadLimit when limit <= 0), the
// oldest first. It does not remove them: the same changes come back until
// they are Acked, so a crash between Read and Ack replays them.
func (r *Reader) Read(ctx context.Context, limit int) ([]Change, error) {
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	rows, err := r.db.QueryContext(ctx, r.readSQL, limit)
	if err != nil {
		return nil, r.classify(ctx, err, "read")
	}
	defer rows.Close()
	var changes []Change
	for rows.Next() {
		var c Change
		if err := rows.Scan(&c.ID, &c.Op, &c.Row, &c.ChangedAt); err != nil {
			return nil, r.classify(ctx, err, "read")
		}
		changes = append(changes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, r.classify(ctx, err, "read")
	}
	return changes, nil
}

// Ack removes the changes with the given ids, once they are applied. Ids
// already removed are ignored, so Ack may be retried.
func (r *Reader) Ack(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := r.db.ExecContext(ctx, r.ackSQL, pq.Array(ids))
	return r.classify(ctx, err, "ack")
}

// Wait returns nil when the trigger notified a committed change (or the
// listener connected or reconnected, as notifications may have been missed
// meanwhile), when fallback has passed (DefaultFallback when <= 0): a poll
// in case a notification was missed, or ctx's error when ctx ends first. A
// notification that came since the last Wait returns at once, so no change
// committed between a Read and the next Wait is waited past.
func (r *Reader) Wait(ctx context.Context, fallback time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if fallback <= 0 {
		fallback = DefaultFallback
	}
	timer := time.NewTimer(fallback)
	defer timer.Stop()
	select {
	case <-r.wake:
		return nil
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Lag returns how many changes wait in the outbox and when the oldest of
// them was captured (the zero time when none waits).
func (r *Reader) Lag(ctx context.Context) (pending int64, oldest time.Time, err error) {
	var at sql.NullTime
	if err := r.db.QueryRowContext(ctx, r.lagSQL).Scan(&pending, &at); err != nil {
		return 0, time.Time{}, r.classify(ctx, err, "measure lag")
	}
	return pending, at.Time, nil
}

// Close stops listening. It leaves db open. Calling it again does nothing.
func (r *Reader) Close() error {
	var err error
	r.closeOnce.Do(func() {
		if r.listener != nil {
			err = r.listener.Close()
		}
	})
	return err
}

// classify classifies err, met while doing what on the outbox.
func (r *Reader) classify(ctx context.Context, err error, what string) error {
	return classify(ctx, err, what+" "+r.what, r.table, r.hints)
}
