// Package connectortest is the acceptance suite every connector passes:
// one call from the connector's own test proves it keeps the contract of
// package connector, the way the pipeline relies on it.
//
// What flows in: a driver the connector's test writes. A SourceDriver
// opens the source over a fresh data set of known records it creates (a
// table, an API server on loopback), names the key and cursor members,
// changes records (for incremental reads), breaks the data (a malformed
// answer, a dropped table) and lists configurations the factory must
// refuse. A SinkDriver opens the sink on a fresh, empty destination,
// builds a valid row for a key at a version, reads back what the
// destination holds (key → row), gives a Writer (the batch's transaction
// in the worker's database) and lists the rows and configurations the
// sink must refuse. Sources and sinks are opened through their factory,
// as the connector's Register line in package builtin opens them.
//
// What flows out: subtests, each on fresh data, asserting what a user
// relies on. Sources: pages in a stable order, resumable from any page's
// position with no record lost or duplicated; the same page read twice
// (a crash between read and apply) is the same; an incremental read after
// a (cursor, key) checkpoint returns every later record once; a bad
// payload is a classified error; a bad configuration a permanent
// failure.TypeConfig error naming the field. Sinks: rows applied are read
// back exactly; a batch applied again, or applied in a transaction rolled
// back and then again, leaves one copy of each row; deletes; Restore of a
// run's batches in reverse order puts every row back; bad rows are
// refused with a reason while the rest of the batch is written; bad
// configurations are refused. A case the connector's Capabilities rule
// out (Incremental, Deletes, Compensation) is skipped with the reason;
// the others cannot be skipped, and a driver that leaves out what one
// needs fails.
//
// A new connector's test is one call per connector:
//
//	func TestSink_Acceptance(t *testing.T) {
//		connectortest.Sink(t, connectortest.SinkDriver{
//			Open: func(t *testing.T) connectortest.SinkFixture {
//				db := pgtest.New(t).DB // the worker's database
//				return connectortest.SinkFixture{
//					Factory:   mysink.Factory(db),
//					Config:    mysink.Config{ /* a fresh destination */ },
//					NewWriter: func() connectortest.CommitWriter { return postgres.NewLazyTx(db, "batch") },
//					State:     func(t *testing.T) []connectortest.StoredRow { /* read it back */ },
//				}
//			},
//			Row: func(key string, v int) connector.Row {
//				return connector.Row{"id": key, "name": fmt.Sprintf("item %s v%d", key, v)}
//			},
//			BadRows:    []connectortest.BadRow{{Name: "no name", Row: noName, Why: "name"}},
//			BadConfigs: []connectortest.BadConfig{{Name: "no URL", Config: mysink.Config{}, Field: "url"}},
//		})
//	}
//
// The shipped connectors' acceptance_test.go files are complete examples:
// httpsource and httpsink against the sandbox API (starters/sandbox) on
// loopback, pgsource and pgsink on a PostgreSQL schema of their own
// (tests/pgtest).
package connectortest
