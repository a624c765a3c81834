// Package pgtest gives each test its own PostgreSQL schema on the real
// server, so tests run in parallel and leave nothing behind.
package pgtest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"

	_ "github.com/lib/pq" // PostgreSQL driver
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// DefaultDSN is the development and CI database (trust auth on loopback).
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseDSN returns TEST_DATABASE_URL, else DATABASE_URL, else DefaultDSN.
func BaseDSN() string {
	for _, k := range []string{"TEST_DATABASE_URL", "DATABASE_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return DefaultDSN
}

// Schema is a fresh schema for one test.
type Schema struct {
	// Name is the schema's name.
	Name string
	// DSN connects with search_path set to the schema, for code under test
	// that opens its own connections (workers, starters).
	DSN string
	// DB is an open pool on DSN, closed when the test ends.
	DB *sql.DB
}

// New creates a schema named after a random suffix, returns a pool whose
// search_path is that schema, and drops the schema when the test ends.
// The test fails at once, naming the DSN, when PostgreSQL is unreachable.
func New(t testing.TB) *Schema {
	t.Helper()
	base := BaseDSN()
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("pgtest: open %s: %v", base, err)
	}
	defer admin.Close()
	if err := admin.Ping(); err != nil {
		t.Fatalf("pgtest: PostgreSQL at %s is unreachable: %v", base, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(`CREATE SCHEMA ` + name); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	dsn, err := postgres.WithSearchPath(base, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatalf("pgtest: open %s: %v", dsn, err)
	}
	t.Cleanup(func() {
		db.Close()
		if os.Getenv("PGTEST_KEEP") != "" {
			return
		}
		a, err := sql.Open("postgres", base)
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.Exec(`DROP SCHEMA ` + name + ` CASCADE`)
	})
	return &Schema{Name: name, DSN: dsn, DB: db}
}
