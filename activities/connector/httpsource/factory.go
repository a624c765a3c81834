package httpsource

import "github.com/tetherflow/tether/activities/connector"

// Factory opens HTTP sources (a Config, or a *Config) with opts, for a
// connector.Registry.
func Factory(opts ...Option) connector.SourceFactory {
	return connector.SourceFactoryOf("http source", func(integration string, cfg Config) (*Source, error) {
		return New(integration, cfg, opts...)
	})
}
