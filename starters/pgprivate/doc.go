// Package pgprivate runs a private PostgreSQL cluster for the demo and the
// tests on a machine that has PostgreSQL's server programs but no server
// to use: `make demo` and `make test` go through starters/cmd/withpg,
// which calls Start when DATABASE_URL is unset and nothing listens on the
// PostgreSQL port.
//
// In: a directory and a port. Search finds initdb, pg_ctl and postgres
// (the distributions' versioned directories, PATH, pg_config --bindir);
// the first Start runs initdb (superuser postgres, trust authentication,
// 127.0.0.1 only), later ones reuse the data directory. Out: a running
// server with databases postgres and test, its URLs, and Stop.
//
// Where no server programs exist, ErrNoBinaries says in one line what to
// install.
package pgprivate
