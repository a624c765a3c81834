// Package store is the sync pipeline's state in PostgreSQL: everything a run
// needs to survive a crash, a retry or a continue-as-new, and everything an
// operator needs to see what happened.
//
// What flows in, and where it lands (all tables are prefixed tether_ and live
// in the connection's search_path schema; Migrate creates them):
//
//   - runs: one row per sync or replay run, spanning continue-as-new. StartRun
//     calls BeginRun, ApplyBatch calls UpdateRun inside the batch's
//     transaction (live counts), FinishRun calls FinishRun.
//   - checkpoints: the (cursor, key) of the last committed record per
//     integration, and the page position to resume from when a run did not
//     finish. SaveCheckpoint runs in the batch's transaction, so the state can
//     never be ahead of or behind the destination.
//   - staged pages (UNLOGGED): the claim-check between steps. FetchPage
//     stages a page's raw records once; later steps LoadPage them by (run,
//     page, stage token) when their worker-local cache misses. The token is
//     new for every fetch, so a retried fetch or a reset execution never
//     reads another fetch's records. ForgetRun drops them.
//   - quarantine: records that failed validation, transformation, keying or
//     the apply, with the reasons, kept until a person replays them. An
//     integration has one pending entry per record (key and payload): a
//     retried step, a rerun, a reset or a replay that meets it again updates
//     its errors instead of adding another.
//   - page memos: the ETag and next position of fully applied pages, for
//     conditional requests (Store implements source.MemoStore).
//   - applied batches: a marker per (run, seq) written in the batch's
//     transaction, so a retried ApplyBatch whose commit already happened
//     writes nothing.
//   - runs double as the apply fence: BeginCompensation marks a run
//     Compensating, after which UpdateRun (in every batch's transaction)
//     refuses it with failure.TypeRunFenced.
//
// What flows out: Run, CheckpointState, staged records, QuarantineEntry and
// memos, and errors already classified with package failure (PostgreSQL
// classes 08/40/53/57 and connection loss are retryable SinkUnavailable
// errors; classes 22/23/42 are non-retryable SinkSQLError), so activities can
// return them as they are. Classify does the same for other PostgreSQL code.
//
// Methods that take a Querier run on it (a *sql.Tx to join the batch's
// transaction, or a *sql.DB); a nil Querier means the Store's own pool.
package store
