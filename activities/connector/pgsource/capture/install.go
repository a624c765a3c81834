package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// lockSQL starts every install and removal: a bounded wait for locks, so a
// long transaction on the source table makes Install fail (and retry)
// instead of queueing the table's writers behind it, and one advisory lock,
// so concurrent installs and removals (several workers starting at once)
// run one after another.
const lockSQL = `SET LOCAL lock_timeout = '10s';
SELECT pg_advisory_xact_lock(hashtext('tether_capture_install'));
`

// InstallSQL returns the SQL Install runs, as one transaction a DBA can
// review and run by hand as it is (psql -f), for example as the source
// table's owner when the worker's role may not create triggers. It is
// idempotent. t must be valid (see Validate).
func InstallSQL(t Target) string {
	return script(t, "installs", installBody(t.names(), t.Key))
}

// RemoveSQL returns the SQL Remove runs, as one transaction to run by hand.
// It is idempotent. t must be valid (see Validate).
func RemoveSQL(t Target) string {
	return script(t, "removes", removeBody(t.names()))
}

// script wraps body in a transaction with a header saying what it does.
func script(t Target, verb, body string) string {
	n := t.names()
	return fmt.Sprintf("-- tether: %s change capture of %s for integration %q (outbox %s).\nBEGIN;\n%s%sCOMMIT;\n",
		verb, n.table, t.Integration, n.outbox, lockSQL, body)
}

// installBody creates what is missing and replaces the trigger function
// (so a changed key takes effect). The trigger is created only when absent:
// creating one locks the table against writes.
func installBody(n names, key []string) string {
	schema := pq.QuoteIdentifier(n.outboxSchema)
	return `DO $tether$
BEGIN
    IF to_regnamespace(` + pq.QuoteLiteral(schema) + `) IS NULL THEN
        CREATE SCHEMA ` + schema + `;
    END IF;
END
$tether$;
CREATE TABLE IF NOT EXISTS ` + n.outbox + ` (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op         text NOT NULL CHECK (op IN ('upsert', 'delete')),
    data       jsonb NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION ` + n.function + `() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tether$` + functionBody(n, key) + `$tether$;
REVOKE ALL ON FUNCTION ` + n.function + `() FROM PUBLIC;
DO $tether$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                   WHERE tgrelid = ` + pq.QuoteLiteral(n.table) + `::regclass AND tgname = ` + pq.QuoteLiteral(n.object) + `) THEN
        CREATE TRIGGER ` + pq.QuoteIdentifier(n.object) + ` AFTER INSERT OR UPDATE OR DELETE ON ` + n.table + `
            FOR EACH ROW EXECUTE FUNCTION ` + n.function + `();
    END IF;
END
$tether$;
`
}

// functionBody is the trigger function's source (pg_proc.prosrc): it
// writes the change rows, a delete of the old row first when an UPDATE
// changed the key, and notifies the integration's channel.
func functionBody(n names, key []string) string {
	cols := make([]string, len(key))
	for i, k := range key {
		cols[i] = pq.QuoteIdentifier(k)
	}
	oldKey := "ROW(OLD." + strings.Join(cols, ", OLD.") + ")"
	newKey := "ROW(NEW." + strings.Join(cols, ", NEW.") + ")"
	return `
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO ` + n.outbox + ` (op, data) VALUES ('delete', to_jsonb(OLD));
    ELSE
        IF TG_OP = 'UPDATE' AND ` + oldKey + ` IS DISTINCT FROM ` + newKey + ` THEN
            INSERT INTO ` + n.outbox + ` (op, data) VALUES ('delete', to_jsonb(OLD));
        END IF;
        INSERT INTO ` + n.outbox + ` (op, data) VALUES ('upsert', to_jsonb(NEW));
    END IF;
    PERFORM pg_notify(` + pq.QuoteLiteral(n.object) + `, '');
    RETURN NULL;
END
`
}

// removeBody drops the trigger (when the table and the trigger exist), the
// function and the outbox with its rows. The outbox schema stays: other
// integrations may use it.
func removeBody(n names) string {
	return `DO $tether$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger
               WHERE tgrelid = to_regclass(` + pq.QuoteLiteral(n.table) + `) AND tgname = ` + pq.QuoteLiteral(n.object) + `) THEN
        DROP TRIGGER ` + pq.QuoteIdentifier(n.object) + ` ON ` + n.table + `;
    END IF;
END
$tether$;
DROP FUNCTION IF EXISTS ` + n.function + `();
DROP TABLE IF EXISTS ` + n.outbox + `;
`
}

// Install creates, idempotently, the outbox schema, the integration's
// outbox table, the trigger function and the AFTER INSERT OR UPDATE OR
// DELETE row trigger on the source table: the statements of InstallSQL, in
// one transaction. Several workers may run it at once. When all of it is
// there already, function up to date, it changes nothing and needs no
// privilege (so a worker may call it after the table's owner ran
// InstallSQL). Otherwise it first checks the table and the role's
// privileges and fails, permanently, with every problem it finds (a
// missing table or key column, a nullable or non-unique key, a missing
// privilege with the GRANT that gives it); connection problems and lock
// timeouts are retryable. Errors are classified with package failure.
func Install(ctx context.Context, db *sql.DB, t Target) error {
	n, err := t.validated()
	if err != nil {
		return err
	}
	what := fmt.Sprintf("install capture %q on %s", t.Integration, n.table)
	hints := map[string]string{
		"42501": "grant what is missing, or have the table's owner run InstallSQL",
	}
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, lockSQL); err != nil {
			return err
		}
		current, err := preflight(ctx, tx, t, n)
		if err != nil || current {
			return err
		}
		_, err = tx.ExecContext(ctx, installBody(n, t.Key))
		return err
	})
	return classify(ctx, err, what, n.table, hints)
}

// Remove drops the trigger, the trigger function and the outbox table with
// the changes still in it: the statements of RemoveSQL, in one transaction.
// It is idempotent, and succeeds when nothing was installed or the source
// table is gone. Dropping the trigger needs the table's owner.
func Remove(ctx context.Context, db *sql.DB, t Target) error {
	n, err := t.validated()
	if err != nil {
		return err
	}
	what := fmt.Sprintf("remove capture %q on %s", t.Integration, n.table)
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, lockSQL+removeBody(n))
		return err
	})
	return classify(ctx, err, what, n.table, map[string]string{
		"42501": "the table's owner (and the outbox's) must run RemoveSQL",
	})
}

// Installed reports whether the trigger on the source table and the outbox
// table both exist. A missing source table or outbox schema is not an error.
func Installed(ctx context.Context, db *sql.DB, t Target) (bool, error) {
	n, err := t.validated()
	if err != nil {
		return false, err
	}
	var ok bool
	err = db.QueryRowContext(ctx, `
SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2)
   AND to_regclass($3) IS NOT NULL`, n.table, n.object, n.outbox).Scan(&ok)
	return ok, classify(ctx, err, fmt.Sprintf("check capture %q on %s", t.Integration, n.table), n.table, nil)
}

// inTx runs f in a transaction and commits it when f succeeds.
func inTx(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op; f's error is being reported
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// preflightSQL reads what Install needs to know about the source table,
// what is installed and the role's privileges, in one round trip. It looks
// names up in the catalog, which needs no privilege. $1 and $2 are the
// table's schema and name, $3 the outbox schema, $4 the outbox table's
// name, $5 the trigger's and function's, $6 the key columns.
const preflightSQL = `
WITH t AS (SELECT c.oid, c.relkind::text AS kind, has_schema_privilege(c.relnamespace, 'USAGE') AS usable
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relname = $2),
     s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $3)
SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger g, t WHERE g.tgrelid = t.oid AND g.tgname = $5)
           AND EXISTS (SELECT FROM pg_catalog.pg_class c, s WHERE c.relnamespace = s.oid AND c.relname = $4),
       (SELECT p.prosrc FROM pg_catalog.pg_proc p, s WHERE p.pronamespace = s.oid AND p.proname = $5 AND p.pronargs = 0),
       (SELECT kind FROM t),
       current_user, current_database(),
       COALESCE((SELECT usable FROM t), false),
       COALESCE((SELECT has_table_privilege(oid, 'TRIGGER') FROM t), false),
       EXISTS (SELECT FROM s),
       COALESCE((SELECT has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE') FROM s),
                has_database_privilege(current_database(), 'CREATE')),
       ARRAY(SELECT k FROM unnest($6::text[]) AS k
             WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a, t
                               WHERE a.attrelid = t.oid AND a.attname = k AND a.attnum > 0 AND NOT a.attisdropped)),
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a, t
             WHERE a.attrelid = t.oid AND a.attname = ANY ($6) AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnotnull),
       EXISTS (SELECT FROM pg_catalog.pg_index i, t
               WHERE i.indrelid = t.oid AND i.indisunique AND i.indpred IS NULL
                 AND NOT EXISTS (SELECT FROM unnest(i.indkey[0:i.indnkeyatts - 1]) AS c(attnum)
                                 LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = c.attnum
                                 WHERE a.attname IS NULL OR a.attname <> ALL ($6)))`

// preflight reports whether everything is installed already, function
// up to date, and otherwise, as one permanent error, every way the source
// table or the role's privileges keep Install from working.
func preflight(ctx context.Context, tx *sql.Tx, t Target, n names) (current bool, err error) {
	var (
		installed                        bool
		source, kind                     sql.NullString
		role, database                   string
		canUse, canTrigger, schemaExists bool
		canCreate, unique                bool
		missing, nullable                []string
	)
	err = tx.QueryRowContext(ctx, preflightSQL, n.schema, t.Table, n.outboxSchema, t.Integration, n.object, pq.Array(t.Key)).
		Scan(&installed, &source, &kind, &role, &database, &canUse, &canTrigger, &schemaExists, &canCreate,
			pq.Array(&missing), pq.Array(&nullable), &unique)
	if err != nil {
		return false, err
	}
	if installed && source.String == functionBody(n, t.Key) {
		return true, nil
	}
	if !kind.Valid {
		return false, configError(n.table, fmt.Errorf("install capture %q: table %s does not exist (check schema and table)", t.Integration, n.table))
	}
	q := pq.QuoteIdentifier
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if kind.String != "r" && kind.String != "p" {
		add("%s is not a table (relkind %q): only tables and partitioned tables can be captured", n.table, kind.String)
	}
	if len(missing) > 0 {
		add("key: no column %s in %s", strings.Join(missing, ", "), n.table)
	}
	if len(nullable) > 0 {
		add("key: column %s of %s is nullable; key columns must be NOT NULL", strings.Join(nullable, ", "), n.table)
	}
	if len(missing) == 0 && !unique {
		add("key: (%s) is not unique in %s: no primary key or unique index covers only these columns", strings.Join(t.Key, ", "), n.table)
	}
	if !canUse {
		add("role %s may not use schema %s: GRANT USAGE ON SCHEMA %s TO %s", q(role), q(n.schema), q(n.schema), q(role))
	}
	if !canTrigger {
		add("role %s may not create triggers on %s: GRANT TRIGGER ON %s TO %s, or have the table's owner run InstallSQL",
			q(role), n.table, n.table, q(role))
	}
	switch {
	case canCreate:
	case schemaExists:
		add("role %s may not create in schema %s: GRANT USAGE, CREATE ON SCHEMA %s TO %s",
			q(role), q(n.outboxSchema), q(n.outboxSchema), q(role))
	default:
		add("schema %s does not exist and role %s may not create schemas: CREATE SCHEMA %s AUTHORIZATION %s, or GRANT CREATE ON DATABASE %s TO %s",
			q(n.outboxSchema), q(role), q(n.outboxSchema), q(role), q(database), q(role))
	}
	if len(problems) > 0 {
		return false, configError(n.table, fmt.Errorf("install capture %q on %s: %w", t.Integration, n.table, errors.Join(problems...)))
	}
	return false, nil
}
