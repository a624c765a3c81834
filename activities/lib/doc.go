// Package lib groups tether's leaf libraries: packages that know nothing of
// runs, steps or connectors, imported by all of them (workflows included,
// for cursor, failure and progress).
//
//	cursor     where a read stands: positions, (cursor, key) checkpoints and their order
//	failure    error classification for Temporal: permanent, transient, throttled
//	heartbeat  keep a long activity visibly alive
//	httpclient the HTTP client of connectors: auth, pacing, short retries
//	mapping    declarative record → row mappings
//	postgres   pools, DSN redaction, SQLSTATE classification, lazy transactions
//	progress   a run's counters and progress report
//	record     fields of decoded JSON records
//	schema     JSON Schema validation of records
package lib
