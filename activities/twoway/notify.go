package twoway

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// NotifyChannel is the NOTIFY channel of integration's PostgreSQL side.
func NotifyChannel(integration string, side PostgresSide) string {
	sum := sha256.Sum256([]byte(integration + "\x00" + side.Schema + "\x00" + side.Table))
	return "tether_twoway_" + hex.EncodeToString(sum[:8])
}

// NotifySQL is the SQL that makes side's table send a NOTIFY on its
// channel after every statement that changes it (for the table's owner to
// run when the worker may not create triggers).
func NotifySQL(integration string, side PostgresSide) string {
	ch := NotifyChannel(integration, side)
	fn := pq.QuoteIdentifier(ch)
	target := pq.QuoteIdentifier(side.Table)
	if side.Schema != "" {
		fn = pq.QuoteIdentifier(side.Schema) + "." + fn
		target = pq.QuoteIdentifier(side.Schema) + "." + target
	}
	return fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(%s, '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS %s ON %s;
CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s();`,
		fn, pq.QuoteLiteral(ch), pq.QuoteIdentifier(ch), target, pq.QuoteIdentifier(ch), target, fn)
}

// Watch makes the PostgreSQL sides of reg's integrations that ask for it
// (Notify) wake their cycle: it installs each table's trigger in db, then
// listens on dsn and calls wake with the integration's name on every
// notification (and once after each connect: a notification sent while
// it was not listening is lost), until ctx ends. A trigger that cannot be
// installed is logged with the SQL to run, and that side is polled only.
func Watch(ctx context.Context, db *sql.DB, dsn string, reg *Registry, wake func(integration string), log *slog.Logger) error {
	byChannel := map[string]string{}
	for _, name := range reg.Names() {
		d, _ := reg.Get(name)
		for _, s := range []SideSpec{d.A, d.B} {
			if s.Postgres == nil || !s.Postgres.Notify {
				continue
			}
			if _, err := db.ExecContext(ctx, NotifySQL(name, *s.Postgres)); err != nil {
				log.Warn("two-way: the change trigger could not be installed; the table is polled only",
					"integration", name, "table", s.Postgres.Table, "error", postgres.Classify(err, "install the trigger"), "sql", NotifySQL(name, *s.Postgres))
				continue
			}
			byChannel[NotifyChannel(name, *s.Postgres)] = name
		}
	}
	if len(byChannel) == 0 {
		return nil
	}
	l := pq.NewListener(dsn, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			log.Warn("two-way: listener", "event", ev, "error", err)
		}
	})
	defer l.Close()
	for ch, name := range byChannel {
		if err := l.Listen(ch); err != nil {
			return fmt.Errorf("listen on %s: %w", ch, err)
		}
		wake(name) // what changed before it listened
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-l.Notify:
			if n == nil { // (re)connected: what was sent meanwhile is lost
				for _, name := range byChannel {
					wake(name)
				}
				continue
			}
			if name, ok := byChannel[n.Channel]; ok {
				wake(name)
			}
		}
	}
}
