package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/viper"

	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Connection is one system the worker's integrations reach over HTTP,
// configured once by name (connections.<name>) and named by the
// integrations that use it: where it is, how to authenticate and how fast
// to call it.
type Connection struct {
	BaseURL string `mapstructure:"base_url"`
	// Auth is none (default), bearer, api_key or oauth2.
	Auth         string `mapstructure:"auth"`
	Token        string `mapstructure:"token"`
	APIKey       string `mapstructure:"api_key"`
	ClientID     string `mapstructure:"client_id"`
	ClientSecret string `mapstructure:"client_secret"`
	// TokenURL is the OAuth2 token endpoint (default <base_url>/oauth/token).
	TokenURL string `mapstructure:"token_url"`
	// RateLimit bounds the requests per second (0: unlimited).
	RateLimit float64 `mapstructure:"rate_limit"`
}

// HTTPAuth is the connection's credentials as an HTTP client sends them.
func (c Connection) HTTPAuth() httpclient.Auth {
	switch c.Auth {
	case "bearer":
		return httpclient.Auth{Kind: "bearer", Token: c.Token}
	case "api_key":
		return httpclient.Auth{Kind: "api_key", Header: "X-API-Key", APIKey: c.APIKey}
	case "oauth2":
		tokenURL := c.TokenURL
		if tokenURL == "" {
			tokenURL = strings.TrimRight(c.BaseURL, "/") + "/oauth/token"
		}
		return httpclient.Auth{Kind: "oauth2", TokenURL: tokenURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret}
	}
	return httpclient.Auth{Kind: "none"}
}

// HTTPRateLimit is the connection's pace as an HTTP client keeps it.
func (c Connection) HTTPRateLimit() httpclient.RateLimit {
	if c.RateLimit <= 0 {
		return httpclient.RateLimit{}
	}
	return httpclient.RateLimit{RequestsPerSecond: c.RateLimit, Burst: 1}
}

// LoadConnections reads only the connections of a worker's configuration
// (file, if not empty, then the environment), as `tether validate
// --resolve` needs them, and checks them.
func LoadConnections(file string) (map[string]Connection, error) {
	v := viper.New()
	where := "environment"
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
		where = file
	}
	envErr := setConnectionsFromEnv(v, os.Environ())
	var c struct {
		Connections map[string]Connection `mapstructure:"connections"`
	}
	if err := v.Unmarshal(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", where, err)
	}
	if err := errors.Join(envErr, errors.Join(connectionsProblems(c.Connections)...)); err != nil {
		return nil, fmt.Errorf("config %s:\n%w", where, err)
	}
	return c.Connections, nil
}

// HTTP is the connection as HTTP connectors use it.
func (c Connection) HTTP() httpclient.Connection {
	return httpclient.Connection{BaseURL: c.BaseURL, Auth: c.HTTPAuth(), RateLimit: c.HTTPRateLimit()}
}

// HTTP returns the connections as HTTP connectors use them, by name.
func HTTP(conns map[string]Connection) map[string]httpclient.Connection {
	out := make(map[string]httpclient.Connection, len(conns))
	for name, c := range conns {
		out[name] = c.HTTP()
	}
	return out
}

// connectionKeys are a connection's keys, as TETHER_CONNECTIONS_<NAME>_<KEY>
// spells them, longest first (so API_KEY is not read as KEY).
var connectionKeys = []string{"CLIENT_SECRET", "RATE_LIMIT", "TOKEN_URL", "CLIENT_ID", "BASE_URL", "API_KEY", "TOKEN", "AUTH"}

var connectionNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// setConnectionsFromEnv sets, over the file's, the connection settings
// the environment gives as TETHER_CONNECTIONS_<NAME>_<KEY> (NAME's
// underscores are the name's dashes). A variable that is not one, or the
// settings' old TETHER_SOURCES_CRM_* names, are reported.
func setConnectionsFromEnv(v *viper.Viper, environ []string) error {
	var errs []string
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if old, ok := strings.CutPrefix(name, "TETHER_SOURCES_CRM_"); ok {
			errs = append(errs, fmt.Sprintf("  %s: sources.crm is now a named connection: set TETHER_CONNECTIONS_CRM_%s (connections.crm.%s)",
				name, old, strings.ToLower(old)))
			continue
		}
		rest, ok := strings.CutPrefix(name, "TETHER_CONNECTIONS_")
		if !ok {
			continue
		}
		conn, key := "", ""
		for _, k := range connectionKeys {
			if c, ok := strings.CutSuffix(rest, "_"+k); ok && c != "" {
				conn, key = c, k
				break
			}
		}
		if key == "" {
			errs = append(errs, fmt.Sprintf("  %s: not a connection setting: want TETHER_CONNECTIONS_<NAME>_<KEY>, KEY one of %s",
				name, strings.Join(connectionKeys, ", ")))
			continue
		}
		v.Set("connections."+strings.ToLower(strings.ReplaceAll(conn, "_", "-"))+"."+strings.ToLower(key), value)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(errs, "\n"))
}

// connectionsProblems checks every connection's name, address and
// credentials.
func connectionsProblems(conns map[string]Connection) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(conns)) {
		c := conns[name]
		key := func(k string) string { return "connections." + name + "." + k }
		if !connectionNameRE.MatchString(name) {
			errs = append(errs, problem("connections."+name, "a connection's name is lower-case letters, digits and dashes, starting with a letter"))
		}
		if u, err := url.Parse(c.BaseURL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, problem(key("base_url"), "%q is not an absolute URL", c.BaseURL))
		}
		switch c.Auth {
		case "", "none":
		case "bearer":
			if c.Token == "" {
				errs = append(errs, problem(key("token"), "required when %s is bearer", key("auth")))
			}
		case "api_key":
			if c.APIKey == "" {
				errs = append(errs, problem(key("api_key"), "required when %s is api_key", key("auth")))
			}
		case "oauth2":
			if c.ClientID == "" || c.ClientSecret == "" {
				errs = append(errs, problem(key("client_id/client_secret"), "required when %s is oauth2", key("auth")))
			}
		default:
			errs = append(errs, problem(key("auth"), "%q is not none, bearer, api_key or oauth2", c.Auth))
		}
		if c.RateLimit < 0 {
			errs = append(errs, problem(key("rate_limit"), "must not be negative"))
		}
	}
	return errs
}
