package httpsink

import (
	"database/sql"

	"github.com/tetherflow/tether/activities/connector"
)

// Factory opens HTTP sinks (a Destination, or a *Destination) whose
// identity map ids lives in db, with the clients' opts, for a
// connector.Registry.
func Factory(ids connector.IdentityMap, db *sql.DB, opts ...Option) connector.SinkFactory {
	return connector.SinkFactoryOf("http sink", func(integration, destination string, d Destination) (*Sink, error) {
		if d.Name == "" {
			d.Name = destination
		}
		return New(integration, d, ids, db, opts...)
	})
}
