package pgsource

import "github.com/tetherflow/tether/activities/connector"

// Factory opens PostgreSQL sources (a *Config, or a Config) with opts, for
// a connector.Registry.
func Factory(opts ...Option) connector.SourceFactory {
	return func(spec connector.SourceSpec) (connector.Source, error) {
		switch cfg := spec.Config.(type) {
		case *Config:
			return connector.SourceOf(New(spec.Integration, *cfg, opts...))
		case Config:
			return connector.SourceOf(New(spec.Integration, cfg, opts...))
		}
		return nil, connector.WrongConfig("postgres source", &Config{}, spec.Config)
	}
}
