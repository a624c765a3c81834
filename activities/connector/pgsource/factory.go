package pgsource

import "github.com/tetherflow/tether/activities/connector"

// Factory opens PostgreSQL sources (a Config, or a *Config) with opts, for
// a connector.Registry.
func Factory(opts ...Option) connector.SourceFactory {
	return connector.SourceFactoryOf("postgres source", func(integration string, cfg Config) (*Source, error) {
		return New(integration, cfg, opts...)
	})
}
