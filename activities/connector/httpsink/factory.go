package httpsink

import (
	"database/sql"

	"github.com/tetherflow/tether/activities/connector"
)

// Factory opens HTTP sinks (a Destination, or a *Destination) whose
// identity map ids lives in db, with the clients' opts, for a
// connector.Registry.
func Factory(ids connector.IdentityMap, db *sql.DB, opts ...Option) connector.SinkFactory {
	return func(spec connector.SinkSpec) (connector.Sink, error) {
		var d Destination
		switch cfg := spec.Config.(type) {
		case Destination:
			d = cfg
		case *Destination:
			d = *cfg
		default:
			return nil, connector.WrongConfig("http sink", Destination{}, spec.Config)
		}
		if d.Name == "" {
			d.Name = spec.Destination
		}
		return connector.SinkOf(New(spec.Integration, d, ids, db, opts...))
	}
}
