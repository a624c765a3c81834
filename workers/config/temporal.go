package config

import (
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
)

// Default Temporal address and namespace, when neither tether's settings
// nor the Temporal environment configuration name one.
const (
	DefaultTemporalAddress   = "127.0.0.1:7233"
	DefaultTemporalNamespace = "default"
)

// TemporalTLS says how to reach a Temporal frontend over TLS. Every field
// is also read, the way the Temporal CLI and SDKs read it, from the
// Temporal environment configuration (TEMPORAL_TLS*, or the profile's
// [tls] in the TOML file); a field set here wins.
type TemporalTLS struct {
	// Enabled turns TLS on with the system's roots (TEMPORAL_TLS=true);
	// it is on as well when a certificate, a server name or an API key is
	// given, unless TEMPORAL_TLS=false.
	Enabled bool `mapstructure:"enabled"`
	// ServerCACert is the PEM file of the CA that signed the server's
	// certificate (TEMPORAL_TLS_SERVER_CA_CERT_PATH).
	ServerCACert string `mapstructure:"server_ca_cert"`
	// ClientCert and ClientKey are the PEM files of this client's
	// certificate and key, for mTLS (TEMPORAL_TLS_CLIENT_CERT_PATH,
	// TEMPORAL_TLS_CLIENT_KEY_PATH).
	ClientCert string `mapstructure:"client_cert"`
	ClientKey  string `mapstructure:"client_key"`
	// ServerName is the name the server's certificate must carry, when it
	// is not the address's host (TEMPORAL_TLS_SERVER_NAME).
	ServerName string `mapstructure:"server_name"`
	// DisableHostVerification skips checking the server's certificate
	// (TEMPORAL_TLS_DISABLE_HOST_VERIFICATION): for tests only.
	DisableHostVerification bool `mapstructure:"disable_host_verification"`
}

// Connection returns the Temporal connection these settings describe: the
// profile of the Temporal environment configuration (the TOML file
// TEMPORAL_CONFIG_FILE or ~/.config/temporalio/temporal.toml, its profile
// TEMPORAL_PROFILE or "default", then the TEMPORAL_* variables), loaded by
// the SDK's contrib/envconfig, with every value tether's settings give
// (file or TETHER_TEMPORAL_*) in place of the profile's, and the default
// address and namespace where neither has one.
func (t Temporal) Connection() (envconfig.ClientConfigProfile, error) {
	p, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{
		ConfigFilePath: t.ConfigFile, ConfigFileProfile: t.Profile,
	})
	if err != nil {
		return p, fmt.Errorf("temporal environment configuration (temporal.config_file / TEMPORAL_CONFIG_FILE, temporal.profile / TEMPORAL_PROFILE): %w", err)
	}
	p.Address = firstOf(t.Address, p.Address, DefaultTemporalAddress)
	p.Namespace = firstOf(t.Namespace, p.Namespace, DefaultTemporalNamespace)
	p.APIKey = firstOf(t.APIKey, p.APIKey)
	tl := t.TLS
	if tl.Enabled || tl.ServerCACert != "" || tl.ClientCert != "" || tl.ClientKey != "" || tl.ServerName != "" || tl.DisableHostVerification {
		if p.TLS == nil {
			p.TLS = &envconfig.ClientConfigTLS{}
		}
		pt := p.TLS
		if tl.ServerCACert != "" {
			pt.ServerCACertPath, pt.ServerCACertData = tl.ServerCACert, nil
		}
		if tl.ClientCert != "" {
			pt.ClientCertPath, pt.ClientCertData = tl.ClientCert, nil
		}
		if tl.ClientKey != "" {
			pt.ClientKeyPath, pt.ClientKeyData = tl.ClientKey, nil
		}
		pt.ServerName = firstOf(tl.ServerName, pt.ServerName)
		pt.DisableHostVerification = pt.DisableHostVerification || tl.DisableHostVerification
	}
	return p, nil
}

// ClientOptions are the SDK client options of the connection (address,
// namespace, TLS, API key as the SDK sends it, gRPC metadata), built by
// contrib/envconfig; the caller adds its logger, interceptors and metrics.
func (t Temporal) ClientOptions() (client.Options, error) {
	p, err := t.Connection()
	if err != nil {
		return client.Options{}, err
	}
	return ClientOptionsOf(p)
}

// ClientOptionsOf are the SDK client options of a resolved connection
// (Connection).
func ClientOptionsOf(p envconfig.ClientConfigProfile) (client.Options, error) {
	opts, err := p.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal TLS (temporal.tls.* / TEMPORAL_TLS_*): %w", err)
	}
	return opts, nil
}

// Describe says how the connection is made, without secrets: for logs and
// error messages.
func Describe(p envconfig.ClientConfigProfile) string {
	s := p.Address + " namespace " + p.Namespace
	switch {
	case p.TLS != nil && p.TLS.Disabled, p.TLS == nil && p.APIKey == "":
		s += ", plain text"
	case p.TLS != nil && (p.TLS.ClientCertPath != "" || len(p.TLS.ClientCertData) > 0):
		s += ", mTLS"
	default:
		s += ", TLS"
	}
	if p.APIKey != "" {
		s += ", API key"
	}
	return s
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
