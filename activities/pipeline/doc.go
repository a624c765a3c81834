// Package pipeline implements the sync steps declared in package syncstep,
// as methods of Activities registered with a worker.
//
// What flows through history is small: a plan, page references (run id and
// page number), positions, checkpoints and counts. Records travel by
// reference: FetchPage stages each page's raw records once in PostgreSQL
// (the claim-check) and keeps them in a worker-local cache. ValidateBatch,
// TransformBatch and ApplyBatch work from the cache and, when a step lands on
// another worker or after a crash, rebuild the page from the staged copy;
// validation and transformation are pure functions of the staged records and
// the pinned definition, so the rebuilt page is the same page.
//
// ApplyBatch commits the rows, the quarantined rejects, the (cursor, key)
// checkpoint, the run's counters and an applied-batch marker in one
// transaction: a retried ApplyBatch whose commit already happened writes
// nothing, and a crash at any point resumes exactly where the data stands.
//
// A refresh run's batches also record the keys they write; SweepRefresh,
// after the last one, deletes from every PostgreSQL destination the rows
// the run did not see (see refresh.go).
package pipeline
