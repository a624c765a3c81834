package pgsink

import (
	"database/sql"

	"github.com/tetherflow/tether/activities/connector"
)

// Factory opens PostgreSQL sinks (a *Table, or a Table) writing in db, for
// a connector.Registry.
func Factory(db *sql.DB) connector.SinkFactory {
	return func(spec connector.SinkSpec) (connector.Sink, error) {
		switch t := spec.Config.(type) {
		case *Table:
			return connector.SinkOf(New(*t, db))
		case Table:
			return connector.SinkOf(New(t, db))
		}
		return nil, connector.WrongConfig("postgres sink", &Table{}, spec.Config)
	}
}
