package pgside_test

import (
	"fmt"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/connectortest"
	"github.com/tetherflow/tether/activities/connector/pgside"
	"github.com/tetherflow/tether/tests/pgtest"
)

// accounts is the side: a table with a text key, updated_at and, unless
// hard, deleted_at.
func accounts(hard bool) pgside.Config {
	c := pgside.Config{Table: "accounts", Key: "id", UpdatedAt: "updated_at", DeletedAt: "deleted_at",
		Fields: map[string]string{"email": "email", "name": "full_name", "seats": "seats"}}
	if hard {
		c.DeletedAt = ""
	}
	return c
}

func open(hard bool) func(t *testing.T, pageSize int) connectortest.SideFixture {
	return openKeyed(hard, "text")
}

// openKeyed is open with a key column of type keyType.
func openKeyed(hard bool, keyType string) func(t *testing.T, pageSize int) connectortest.SideFixture {
	return func(t *testing.T, pageSize int) connectortest.SideFixture {
		pg := pgtest.New(t)
		if _, err := pg.DB.Exec(`CREATE TABLE accounts (id ` + keyType + ` PRIMARY KEY, email text NOT NULL UNIQUE, full_name text,
			seats integer, updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz)`); err != nil {
			t.Fatal(err)
		}
		cfg := accounts(hard)
		cfg.PageSize = pageSize
		return connectortest.SideFixture{
			Factory: pgside.Factory(pg.DB),
			Config:  cfg,
			Edit: func(t *testing.T, key string, rec connector.Row) {
				if _, err := pg.DB.Exec(`UPDATE accounts SET email = $2, full_name = $3, seats = $4, updated_at = clock_timestamp() WHERE id = $1`,
					key, rec["email"], rec["name"], rec["seats"]); err != nil {
					t.Fatal(err)
				}
			},
		}
	}
}

func record(n, v int) connector.Row {
	return connector.Row{"email": fmt.Sprintf("a%d@example.com", n), "name": fmt.Sprintf("Account %d v%d", n, v), "seats": float64(n + v)}
}

func badConfigs() []connectortest.BadConfig {
	noTable := accounts(false)
	noTable.Table = ""
	keyShared := accounts(false)
	keyShared.Fields = map[string]string{"id": "id"}
	quoted := accounts(false)
	quoted.UpdatedAt = `updated_at"; DROP TABLE accounts; --`
	negative := accounts(false)
	negative.PageSize = -1
	return []connectortest.BadConfig{
		{Name: "no table", Config: noTable, Field: "table"},
		{Name: "the key as a shared field", Config: keyShared, Field: "fields.id"},
		{Name: "not an identifier", Config: quoted, Field: "updated_at"},
		{Name: "negative page size", Config: negative, Field: "page_size"},
	}
}

// TestSide_Acceptance runs the two-way side acceptance suite on a table
// with soft deletes (deleted_at).
func TestSide_Acceptance(t *testing.T) {
	connectortest.Side(t, connectortest.SideDriver{Open: open(false), Record: record, DeletesInFeed: true, BadConfigs: badConfigs()})
}

// TestSide_AcceptanceHardDeletes runs it on a table whose deletes remove
// the row: the feed cannot show them.
func TestSide_AcceptanceHardDeletes(t *testing.T) {
	connectortest.Side(t, connectortest.SideDriver{Open: open(true), Record: record, BadConfigs: badConfigs()})
}

// TestSide_AcceptanceUUIDKeys runs it on a table keyed by a uuid (records
// created for the other side's get UUIDs derived from its keys).
func TestSide_AcceptanceUUIDKeys(t *testing.T) {
	connectortest.Side(t, connectortest.SideDriver{Open: openKeyed(false, "uuid"), Record: record, DeletesInFeed: true, BadConfigs: badConfigs(),
		Idem: func(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }})
}
