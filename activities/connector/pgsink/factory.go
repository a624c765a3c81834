package pgsink

import (
	"database/sql"

	"github.com/tetherflow/tether/activities/connector"
)

// Factory opens PostgreSQL sinks (a Table, or a *Table) writing in db, for
// a connector.Registry.
func Factory(db *sql.DB) connector.SinkFactory {
	return connector.SinkFactoryOf("postgres sink", func(_, _ string, t Table) (*Sink, error) {
		return New(t, db)
	})
}
