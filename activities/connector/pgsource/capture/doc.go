// Package capture is PostgreSQL change capture for one integration's
// source table: a trigger writes every row change into an outbox table
// and notifies the integration's channel; a Reader reads the outbox in
// order, and the caller applies the changes and acknowledges them.
//
// What flows in: INSERTs, UPDATEs and DELETEs committed on the source
// table. What flows out: Changes, oldest first, each an Op (OpUpsert for an
// INSERT or UPDATE, OpDelete for a DELETE) and the row as a JSON object
// rendered by to_jsonb, as pgsource renders whole rows: the new row for an
// upsert, the old one for a delete. An UPDATE that changes a key column is
// two changes: a delete of the old row, then an upsert of the new one.
//
// # What Install creates
//
// In Target.OutboxSchema (default "tether_capture"), created when missing:
// the outbox table named after the integration ("tether_capture"."crm-contacts":
// id bigint identity, op, data jsonb, changed_at = clock_timestamp()), and
// the trigger function "tether_capture_<integration>" (cut to 63 bytes with
// a hash of the name when longer). On the source table: the AFTER INSERT OR
// UPDATE OR DELETE FOR EACH ROW trigger of the same name. The function
// inserts the change rows and calls pg_notify on the channel of the same
// name with an empty payload: PostgreSQL folds identical notifications of
// one transaction, so a transaction wakes a Reader once however many rows
// it changes. InstallSQL and RemoveSQL are the same statements for a DBA to
// review and run by hand. Identifiers are always quoted.
//
// # Delivery: at least once, in order per key
//
// The position is the set of rows still in the outbox, not a last-read id.
// Read returns the oldest rows left (ORDER BY id LIMIT n), the caller
// applies them idempotently, then Ack deletes them. A crash between Read
// and Ack replays those rows; nothing is skipped. A "last id" position
// would skip: ids are taken when the trigger runs, not at commit, so a
// transaction that took id 9 and commits after one that took id 10 was
// read past. With the outbox as position, row 9 is read when it commits.
//
// Changes to one key still arrive in order. Two transactions that change
// the same row are serialised by its row lock (and the unique index on the
// key makes an insert of a key wait for a transaction deleting or inserting
// that key): the later transaction's trigger runs, and takes its id, only
// after the earlier one has committed, so its ids are higher and no
// committed change to a key is ever behind an uncommitted one. Within a
// batch, apply changes in id order (or keep the last per key). Changes to
// different keys may be read out of commit order. Only one Reader should
// read an integration at a time.
//
// Wait returns on a notification, after its fallback duration, or when ctx
// ends. The fallback is a poll for notifications that were missed (the
// listener's connection lost and re-established, or not yet up); a
// reconnect also wakes Wait.
//
// Not captured: TRUNCATE (row triggers do not see it; a reconciliation
// against the table covers it), and changes made while the trigger was not
// installed or with session_replication_role = replica.
//
// # Privileges
//
// Install needs, for the role it runs as: TRIGGER on the source table (its
// owner has it), CREATE on the database when the outbox schema is missing
// (or an existing schema it has USAGE and CREATE on; a DBA may create it:
// CREATE SCHEMA tether_capture AUTHORIZATION worker_role). It checks these
// first and names the GRANT that is missing; otherwise the table's owner
// runs InstallSQL. Once everything is installed and up to date, Install
// changes nothing and needs no privilege, so workers may call it at every
// start after the owner ran InstallSQL. The function is SECURITY DEFINER (search_path pinned,
// EXECUTE revoked from PUBLIC), so the application's roles writing the
// table need no rights on the outbox. A Reader's role needs USAGE on the
// outbox schema and SELECT, DELETE on the outbox. Remove needs the table's
// owner (dropping a trigger does) and the outbox's.
//
// # Why not logical replication
//
// Logical decoding (pgoutput) adds nothing to the writer's transaction,
// but needs wal_level = logical (a server restart), a role with the
// REPLICATION attribute, and a replication slot that retains WAL until it
// is consumed: a stopped or removed integration whose slot is not dropped
// fills the disk. The trigger outbox costs one extra insert per changed row
// inside the writer's transaction, but needs only table-level rights and
// leaves nothing that can grow beyond its own rows, which Ack deletes and
// Reader.Lag measures. It is not implemented here.
//
// The notification has a price at high write rates: PostgreSQL commits the
// transactions that called NOTIFY one at a time, cluster-wide (the lock
// PreCommit_Notify takes is held until the commit is flushed), so writers
// of a captured table cannot share WAL flushes. Measured on a 2-core
// machine (tests/bench/cmd/eventbench): 1,000 one-row transactions a second
// took 1 ms at p50 without capture and 85-185 ms with it, 88% of their
// time waiting on that lock; at 100 a second the cost did not show.
//
// # Errors
//
// Errors are classified with package failure and name the table or the
// outbox: a missing table, key column or privilege, a nullable or
// non-unique key, and the other SQLSTATE classes failure.PostgreSQL calls
// permanent are permanent failure.TypeConfig; connection loss, lock
// timeouts (Install waits at most 10s for the table's lock, rather than
// queueing its writers behind a long transaction) and other classes are
// retryable failure.TypeSourceUnavailable.
package capture
