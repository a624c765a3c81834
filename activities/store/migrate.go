package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// migrateLockClass is the first key of the advisory lock Migrate takes; the
// second is a hash of the target schema, so workers migrating different
// schemas do not wait for each other.
const migrateLockClass = 0x7e7e

// migration is one versioned schema change. Versions only grow; a released
// migration is never edited (add a new one instead).
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the schema history, oldest first.
func migrations() []migration {
	return []migration{
		{1, "runs", `
CREATE TABLE tether_runs (
    run_id          text PRIMARY KEY,
    integration     text NOT NULL,
    workflow_id     text NOT NULL DEFAULT '',
    kind            text NOT NULL DEFAULT 'sync' CHECK (kind IN ('sync', 'replay')),
    status          text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    counts          jsonb NOT NULL DEFAULT '{}',
    checkpoint_from jsonb NOT NULL DEFAULT '{}',
    checkpoint_to   jsonb NOT NULL DEFAULT '{}',
    position        jsonb,
    error           text,
    error_type      text
);
CREATE INDEX tether_runs_integration_started_idx ON tether_runs (integration, started_at DESC);`},
		{2, "checkpoints", `
CREATE TABLE tether_checkpoints (
    integration text PRIMARY KEY,
    checkpoint  jsonb NOT NULL DEFAULT '{}',
    position    jsonb,
    run_id      text NOT NULL DEFAULT '',
    seq         integer NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);`},
		{3, "staged pages", `
CREATE UNLOGGED TABLE tether_staged_pages (
    run_id       text NOT NULL,
    page         integer NOT NULL,
    records      bytea NOT NULL,
    record_ends  bytea,
    record_count integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, page)
);
-- lz4 (PostgreSQL 14+, when built with it) compresses a JSON page several
-- times over for little CPU: fewer TOAST chunks make staging about twice as
-- fast as storing it uncompressed. Elsewhere the default compression stays.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE tether_staged_pages ALTER COLUMN records SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    NULL;
END
$$;`},
		{4, "quarantine", `
CREATE TABLE tether_quarantine (
    id            bigserial PRIMARY KEY,
    integration   text NOT NULL,
    run_id        text NOT NULL,
    page          integer NOT NULL,
    record_index  integer NOT NULL,
    record_key    text NOT NULL DEFAULT '',
    step          text NOT NULL CHECK (step IN ('validate', 'transform', 'apply', 'key')),
    payload       jsonb,
    payload_text  text,
    errors        jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    replayed_at   timestamptz,
    replay_run_id text,
    CONSTRAINT tether_quarantine_record_key UNIQUE (run_id, page, record_index)
);
CREATE INDEX tether_quarantine_pending_idx ON tether_quarantine (integration, replayed_at);`},
		{5, "page memos", `
CREATE TABLE tether_page_memos (
    integration text NOT NULL,
    cache_key   text NOT NULL,
    memo        jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration, cache_key)
);`},
		{6, "applied batches", `
CREATE TABLE tether_applied_batches (
    run_id     text NOT NULL,
    seq        integer NOT NULL,
    result     jsonb,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);`},
		{7, "staged page tokens", `
-- Two fetches of one page number (a retried fetch, a reset execution)
-- stage under their own token.
ALTER TABLE tether_staged_pages ADD COLUMN stage text NOT NULL DEFAULT '';
ALTER TABLE tether_staged_pages DROP CONSTRAINT tether_staged_pages_pkey;
ALTER TABLE tether_staged_pages ADD PRIMARY KEY (run_id, page, stage);`},
		{8, "one pending entry per record", `
-- A record that is read again while it waits in quarantine (a rerun, a
-- full read, a reset, a replay that still finds it invalid) keeps its one
-- pending entry instead of gaining another: one per key, or per payload for
-- records without a key. Pending duplicates recorded before this migration
-- are kept, marked as merged into the newest one.
UPDATE tether_quarantine q SET replayed_at = now(), replay_run_id = 'merged-into-' || d.keep
FROM (
    SELECT id, max(id) OVER (PARTITION BY integration, record_key,
        CASE WHEN record_key = '' THEN md5(coalesce(payload::text, payload_text, '')) ELSE '' END) AS keep
    FROM tether_quarantine WHERE replayed_at IS NULL
) d
WHERE q.id = d.id AND d.id <> d.keep;
ALTER TABLE tether_quarantine DROP CONSTRAINT tether_quarantine_record_key;
CREATE UNIQUE INDEX tether_quarantine_pending_record ON tether_quarantine (integration, record_key,
    (CASE WHEN record_key = '' THEN md5(coalesce(payload::text, payload_text, '')) ELSE '' END)) WHERE replayed_at IS NULL;
CREATE INDEX tether_quarantine_run_idx ON tether_quarantine (run_id);
CREATE INDEX tether_quarantine_replay_run_idx ON tether_quarantine (replay_run_id) WHERE replay_run_id IS NOT NULL;`},
		{9, "identity map", `
-- The identity map: the id each destination system gave a record (by the
-- record's key), with the last row sent there, so the next version of
-- the record updates the same object and an unchanged one is not sent.
CREATE TABLE tether_identities (
    namespace   text NOT NULL,
    record_key  text NOT NULL,
    external_id text NOT NULL,
    row_hash    text NOT NULL DEFAULT '',
    last_row    jsonb,
    run_id      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, record_key)
);
CREATE INDEX tether_identities_external_idx ON tether_identities (namespace, external_id);
-- What an atomic run's HTTP step is about to change, recorded before the
-- calls: the identity before the run (none: the run creates the object),
-- the row sent and its idempotency key, then the id the destination gave.
-- Compensation deletes, restores or reverses from it.
CREATE TABLE tether_identity_images (
    run_id          text NOT NULL,
    namespace       text NOT NULL,
    record_key      text NOT NULL,
    seq             integer NOT NULL,
    existed         boolean NOT NULL,
    prior_id        text NOT NULL DEFAULT '',
    prior_hash      text NOT NULL DEFAULT '',
    prior_row       jsonb,
    prior_run_id    text NOT NULL DEFAULT '',
    idempotency_key text NOT NULL DEFAULT '',
    sent_row        jsonb,
    sent_id         text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, namespace, record_key, seq)
);
-- Duplicate detection: the normalised match value of an entity, owned by
-- the key of the record first seen with it.
CREATE TABLE tether_match_keys (
    namespace   text NOT NULL,
    match_value text NOT NULL,
    record_key  text NOT NULL,
    run_id      text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, match_value)
);
CREATE INDEX tether_match_keys_owner_idx ON tether_match_keys (namespace, record_key);`},
		{10, "one writer per integration", `
-- Runs of every kind that write: refresh re-reads the whole source and
-- sweeps what it did not see; repair applies what a reconciliation found.
ALTER TABLE tether_runs DROP CONSTRAINT tether_runs_kind_check;
ALTER TABLE tether_runs ADD CONSTRAINT tether_runs_kind_check
    CHECK (kind IN ('sync', 'replay', 'refresh', 'repair'));
-- The run allowed to write an integration now (at most one per
-- integration, whatever started it).
CREATE TABLE tether_writers (
    integration text PRIMARY KEY,
    run_id      text NOT NULL,
    workflow_id text NOT NULL DEFAULT '',
    kind        text NOT NULL DEFAULT '',
    trigger     text NOT NULL DEFAULT '',
    acquired_at timestamptz NOT NULL DEFAULT now()
);`},
		{11, "reconciliations", `
-- One row per reconciliation: what it found and did.
CREATE TABLE tether_reconciliations (
    reconcile_id     text PRIMARY KEY,
    integration      text NOT NULL,
    workflow_id      text NOT NULL DEFAULT '',
    dry_run          boolean NOT NULL DEFAULT false,
    extras_policy    text NOT NULL DEFAULT 'report',
    status           text NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    chunks           integer NOT NULL DEFAULT 0,
    chunks_differing integer NOT NULL DEFAULT 0,
    source_read      bigint NOT NULL DEFAULT 0,
    destination_rows bigint NOT NULL DEFAULT 0,
    rows_compared    bigint NOT NULL DEFAULT 0,
    missing          integer NOT NULL DEFAULT 0,
    changed          integer NOT NULL DEFAULT 0,
    extra            integer NOT NULL DEFAULT 0,
    invalid          integer NOT NULL DEFAULT 0,
    repaired         integer NOT NULL DEFAULT 0,
    extras_handled   integer NOT NULL DEFAULT 0,
    samples          jsonb NOT NULL DEFAULT '{}',
    error            text
);
CREATE INDEX tether_reconciliations_integration_idx ON tether_reconciliations (integration, started_at DESC);
-- The source's digest of every chunk of the key space.
CREATE TABLE tether_reconcile_chunks (
    reconcile_id text NOT NULL,
    chunk        integer NOT NULL,
    n            bigint NOT NULL,
    x1           bigint NOT NULL,
    x2           bigint NOT NULL,
    PRIMARY KEY (reconcile_id, chunk)
);
-- Source records of the chunks that differ (and every invalid one), then
-- their class once compared: missing, changed, same or invalid.
CREATE TABLE tether_reconcile_rows (
    reconcile_id text NOT NULL,
    ord          bigint NOT NULL,
    chunk        integer NOT NULL,
    key_text     text NOT NULL,
    source_key   text NOT NULL DEFAULT '',
    row_hash     text NOT NULL DEFAULT '',
    class        text,
    record       jsonb,
    record_text  text,
    PRIMARY KEY (reconcile_id, ord)
);
CREATE INDEX tether_reconcile_rows_key_idx ON tether_reconcile_rows (reconcile_id, key_text);
-- Destination rows of differing chunks the source does not have.
CREATE TABLE tether_reconcile_extras (
    reconcile_id text NOT NULL,
    key_text     text NOT NULL,
    key          jsonb NOT NULL,
    handled      text,
    PRIMARY KEY (reconcile_id, key_text)
);`},
		{12, "event deliveries", `
-- The delivery id of every event applied (a webhook's delivery id, a
-- captured change's id): a redelivered event is recognised and not
-- applied twice. Rows older than the retention are pruned.
CREATE TABLE tether_event_deliveries (
    source      text NOT NULL,
    delivery_id text NOT NULL,
    integration text NOT NULL,
    entity_key  text NOT NULL DEFAULT '',
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, delivery_id)
);
CREATE INDEX tether_event_deliveries_applied_idx ON tether_event_deliveries (applied_at);`},
		{13, "runs of records", `
-- Runs of records a workflow of its own hands to the steps (workflows/steps).
ALTER TABLE tether_runs DROP CONSTRAINT tether_runs_kind_check;
ALTER TABLE tether_runs ADD CONSTRAINT tether_runs_kind_check
    CHECK (kind IN ('sync', 'replay', 'refresh', 'repair', 'records'));`},
		{14, "committed counts", `
-- A run's counts as of its last committed batch (UpdateRun, in the batch's
-- transaction): what an execution reset in the Web UI goes on from. counts
-- is what the run did, written by FinishRun too.
ALTER TABLE tether_runs ADD COLUMN committed jsonb NOT NULL DEFAULT '{}';`},
		{15, "deployment", `
-- The deployment's identity: one random id per database (and schema), which
-- its workers show Temporal, so that workers of another database refuse to
-- share their task queue.
CREATE TABLE tether_deployment (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         text NOT NULL DEFAULT gen_random_uuid()::text,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tether_deployment DEFAULT VALUES;`},
		{16, "audit", `
-- Who did what to which run or schedule, and when: one row per act, kept
-- once however often the step that records it is retried.
CREATE TABLE tether_audit (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    via          text NOT NULL DEFAULT '',
    action       text NOT NULL,
    integration  text NOT NULL DEFAULT '',
    target       text NOT NULL DEFAULT '',
    target_run   text NOT NULL DEFAULT '',
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX tether_audit_once ON tether_audit (action, target, target_run);
CREATE INDEX tether_audit_by_integration ON tether_audit (integration, at DESC);`},
		{17, "delivery senders", `
-- Who delivered each applied event, as the ingress authenticated it.
ALTER TABLE tether_event_deliveries ADD COLUMN sender text NOT NULL DEFAULT '';`},
		{18, "two-way sync", `
-- Each record of a two-way integration: its key on each side, and its
-- last synced state (the base of the three-way comparison) with each
-- side's version then.
CREATE TABLE tether_twoway_pairs (
    id          bigserial PRIMARY KEY,
    integration text NOT NULL,
    a_key       text,
    b_key       text,
    base        jsonb,
    a_version   text NOT NULL DEFAULT '',
    b_version   text NOT NULL DEFAULT '',
    synced_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (integration, a_key),
    UNIQUE (integration, b_key)
);
-- Where each side's change feed was read up to.
CREATE TABLE tether_twoway_cursors (
    integration text NOT NULL,
    side        text NOT NULL,
    cursor      text NOT NULL,
    key         text NOT NULL,
    -- partial: the last read stopped at its limit; the next goes on
    -- strictly after (cursor, key)
    partial     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (integration, side)
);
-- Every conflict: both versions, the base, the policy, the result, and
-- who resolved it (a parked one waits for a person).
CREATE TABLE tether_conflicts (
    id          bigserial PRIMARY KEY,
    integration text NOT NULL,
    pair_id     bigint NOT NULL,
    a_key       text NOT NULL DEFAULT '',
    b_key       text NOT NULL DEFAULT '',
    base        jsonb,
    a           jsonb,
    b           jsonb,
    a_deleted   boolean NOT NULL DEFAULT false,
    b_deleted   boolean NOT NULL DEFAULT false,
    a_version   text NOT NULL DEFAULT '',
    b_version   text NOT NULL DEFAULT '',
    a_at        timestamptz,
    b_at        timestamptz,
    fields      text[] NOT NULL DEFAULT '{}',
    policy      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('resolved', 'parked', 'superseded')),
    resolution  text NOT NULL DEFAULT '',
    result      jsonb,
    resolved_by text NOT NULL DEFAULT '',
    detected_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE UNIQUE INDEX tether_conflicts_one_parked ON tether_conflicts (integration, pair_id) WHERE status = 'parked';
CREATE INDEX tether_conflicts_by_integration ON tether_conflicts (integration, detected_at DESC);`},
		{19, "event quarantine step", `
-- An event the webhook receiver marked invalid (its source's schema) is
-- quarantined at step 'event': the check refused it, and the insert failed
-- the shard's whole batch, again and again (found by make chaos).
ALTER TABLE tether_quarantine DROP CONSTRAINT tether_quarantine_step_check;
ALTER TABLE tether_quarantine ADD CONSTRAINT tether_quarantine_step_check
    CHECK (step IN ('validate', 'transform', 'apply', 'key', 'event'));`},
	}
}

// Migrate brings the state tables in db's search_path schema up to date.
// Each migration is applied once and recorded in tether_schema_migrations;
// all of them run in one transaction under an advisory lock, so several
// workers starting at once are safe and a failed migration leaves nothing
// half done. Running it again is a no-op.
func Migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return postgres.Classify(err, "migrate: begin")
	}
	defer func() { _ = tx.Rollback() }()

	if _, err := tx.ExecContext(ctx,
		`SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))`, migrateLockClass); err != nil {
		return postgres.Classify(err, "migrate: lock")
	}
	if _, err := tx.ExecContext(ctx, `
CREATE TABLE IF NOT EXISTS tether_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return postgres.Classify(err, "migrate: create tether_schema_migrations")
	}
	applied, err := appliedVersions(ctx, tx)
	if err != nil {
		return err
	}
	for _, m := range migrations() {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return postgres.Classify(err, fmt.Sprintf("migrate: apply %d (%s)", m.version, m.name))
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO tether_schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return postgres.Classify(err, fmt.Sprintf("migrate: record %d (%s)", m.version, m.name))
		}
	}
	if err := tx.Commit(); err != nil {
		return postgres.Classify(err, "migrate: commit")
	}
	return nil
}

// appliedVersions reads the versions already recorded.
func appliedVersions(ctx context.Context, q Querier) (map[int]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT version FROM tether_schema_migrations`)
	if err != nil {
		return nil, postgres.Classify(err, "migrate: read applied versions")
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, postgres.Classify(err, "migrate: read applied versions")
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, postgres.Classify(err, "migrate: read applied versions")
	}
	return applied, nil
}
