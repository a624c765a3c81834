// Package pgsink writes batches of records into a PostgreSQL table, the
// destination of an integration.
//
// What flows in: a Table (the destination's columns, natural key and optional
// version column, usually from an integration's YAML) and, per batch, rows
// decoded from JSON (Row) together with the caller's *sql.Tx, in which the
// caller also saves its checkpoint, so the destination and the pipeline state
// commit or roll back together.
//
// What happens to a batch (TableWriter.Upsert):
//
//	rows ──convert per column type──► COPY into a temporary staging table
//	     ──DISTINCT ON (key), last row wins──► INSERT ... ON CONFLICT (key)
//	       DO UPDATE ... WHERE the row changed AND the version is not older
//
// A batch costs one COPY and one statement whatever its size. Rows whose
// values cannot be converted to their column's type, rows with a NULL key,
// and rows PostgreSQL itself refuses (SQLSTATE classes 22 and 23: a value too
// long, a check constraint) are returned in Result.Rejected with the reason,
// and the rest of the batch is applied: one poison row never blocks a batch.
// Applying the same batch twice changes nothing (every row counts as
// Unchanged), so a retried activity is harmless.
//
// What flows out: a Result counting what happened to every received row
// (Received = Duplicates + Inserted + Updated + Unchanged + Stale +
// len(Rejected)), and errors already classified with package failure:
// non-retryable failure.TypeSinkSQL for bad data, bad SQL or a table that does
// not match its definition, retryable failure.TypeSinkUnavailable when
// PostgreSQL cannot be reached.
//
// Atomic integrations: with UpsertOptions.BeforeImages, the batch first
// records the current image of every key it touches in tether_before_images
// (beside the target table). Compensate puts those keys back as they were
// (deleting the keys the batch created); compensating a run's batches in
// reverse order restores the table exactly. DropBeforeImages forgets a run's
// images once the run has completed or been compensated.
//
// Batch refresh: with UpsertOptions.SeenRun, the batch also records the key
// of every row it stages in tether_seen_keys (beside the target, in the
// same savepoint). Sweep then deletes, in one statement, the rows whose
// keys the run did not see (keeping the rows of keys it is told to keep),
// optionally recording their before-images so Compensate puts them back;
// DropSeen forgets a run's keys.
package pgsink
