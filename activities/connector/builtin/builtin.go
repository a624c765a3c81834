// Package builtin registers the connectors tether ships: HTTP and
// PostgreSQL sources, HTTP and PostgreSQL sinks, HTTP and PostgreSQL
// two-way sides. It is the one list a worker's connectors come from; add
// your own connector to the Registry it returns with one RegisterSource,
// RegisterSink or RegisterSide line.
package builtin

import (
	"database/sql"
	"log/slog"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/connector/httpside"
	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgside"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
)

// Kinds of the shipped connectors, as integrations name them.
const (
	HTTP     = "http"
	Postgres = "postgres"
)

// Options are what the shipped connectors need from the worker.
type Options struct {
	// DB is the worker's database: PostgreSQL destinations are written in
	// it (in the transaction of the run's state), identity maps live in it.
	DB *sql.DB
	// Memos remembers the validators of applied pages (HTTP sources'
	// conditional requests); Identities is the HTTP sinks' identity map.
	Memos      connector.MemoStore
	Identities connector.IdentityMap
	Logger     *slog.Logger
	// LookupEnv resolves a PostgreSQL source's dsn_env (default
	// os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// HTTPSource and HTTPSink are added to every HTTP source's and sink's
	// options (transports in tests, metrics).
	HTTPSource []httpsource.Option
	HTTPSink   []httpsink.Option
}

// Registry returns a registry of the shipped connectors.
func Registry(o Options) *connector.Registry {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	pgOpts := []pgsource.Option{pgsource.WithLogger(log)}
	if o.LookupEnv != nil {
		pgOpts = append(pgOpts, pgsource.WithLookupEnv(o.LookupEnv))
	}
	httpOpts := append([]httpsource.Option{httpsource.WithMemoStore(o.Memos), httpsource.WithLogger(log)}, o.HTTPSource...)
	sinkOpts := append([]httpsink.Option{httpsink.WithLogger(log)}, o.HTTPSink...)
	return connector.NewRegistry().
		RegisterSource(HTTP, httpsource.Factory(httpOpts...)).
		RegisterSource(Postgres, pgsource.Factory(pgOpts...)).
		RegisterSink(HTTP, httpsink.Factory(o.Identities, o.DB, sinkOpts...)).
		RegisterSink(Postgres, pgsink.Factory(o.DB)).
		RegisterSide(HTTP, httpside.Factory(nil)).
		RegisterSide(Postgres, pgside.Factory(o.DB))
}
