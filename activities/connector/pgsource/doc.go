// Package pgsource is the PostgreSQL source connector: it reads one
// integration's records from a table (or view), one page per Fetch.
//
// What flows in: a source.Request (where to read, the page size, and for
// incremental reads the checkpoint). What flows out: a source.Page of JSON
// objects, one per row, rendered by PostgreSQL itself (to_jsonb, or
// jsonb_build_object over Config.Columns): timestamps are RFC 3339 strings
// ("2026-01-02T03:04:05.123456+00:00"), numbers are JSON numbers, column
// names are the object's keys. Page.StatusCode is 0 and Page.CacheKey is
// empty: there are no conditional requests.
//
// Two kinds of read:
//
//   - Full (no cursor_column): keyset pagination on the key,
//     WHERE (k1, k2) > (last k1, last k2) ORDER BY k1, k2 LIMIT n. The
//     last key of a page travels in source.Position.Token as JSON: the key
//     values in Key's order, each in its type's PostgreSQL text form, as in
//     {"key":["acme","7"]}. A row whose key exists during the whole read is
//     returned exactly once, however often it is updated meanwhile; rows
//     inserted behind the position are left for the next run. The read is
//     done when a page holds fewer than Limit rows.
//   - Incremental (cursor_column set, one key column): rows ordered by
//     (cursor, key), strictly after the pipeline's checkpoint
//     (source.Request.Since), so rows sharing the checkpoint's cursor value
//     with a greater key are read and none at or before it is read again.
//     A checkpoint with a cursor and no key (an initial cursor) reads rows
//     at or after that cursor. Page.Next.Token holds the page's last
//     position too, rendered as in the record, as in
//     {"cursor":"2026-01-02T03:04:05+00:00","key":["7"]}; when a request
//     carries one it wins over Since. Parameters are cast to the column
//     types, looked up once from the catalog. Strings are compared
//     byte-wise (COLLATE "C") and every page is checked to be in the order
//     the pipeline compares checkpoints in (numbers as numbers, RFC 3339
//     instants as instants, other text byte-wise; numbers before instants
//     before text); a disagreement fails the read permanently instead of
//     losing rows. Rows whose cursor is NULL are not read. The
//     integration's cursor_field and key_field must name the cursor and
//     key columns.
//
// Every page is read in its own REPEATABLE READ READ ONLY transaction. The
// first Fetch reads the catalog once and checks the configuration against
// the table: the columns exist; for tables, partitioned tables and
// materialized views, the key columns are NOT NULL and a primary key or
// unique index covers only key columns (for views and foreign tables this
// is the operator's promise); incremental cursors are numbers, dates or
// times, or strings.
//
// Errors are classified with package failure and name the table and the
// DSN without its password: connection failures, admin shutdowns,
// serialization failures and other SQLSTATE classes 08, 40, 53, 55, 57,
// 58 and XX are retryable failure.TypeSourceUnavailable; a missing table
// or column, a syntax error in Config.Where, a permission denied, bad
// credentials and the other classes retrying cannot fix (0A, 21, 22, 23,
// 25, 28, 2F, 38, 39, 3D, 3F, 42, 44, 54, P0) are permanent
// failure.TypeConfig.
package pgsource
