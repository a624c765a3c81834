// Package config loads a worker's configuration with viper from defaults, an
// optional YAML file and the environment, and validates all of it before
// the worker does anything. The ecosystem's usual variables are honoured:
// TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and DATABASE_URL; every other key can
// be set as TETHER_<SECTION>_<KEY>, e.g. TETHER_WORKER_TASK_QUEUE.
package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/workers/codec"
	"github.com/tetherflow/tether/workers/webhook"
)

// Config is the whole worker configuration.
type Config struct {
	Temporal Temporal `mapstructure:"temporal"`
	Database Database `mapstructure:"database"`
	Worker   Worker   `mapstructure:"worker"`
	Log      Log      `mapstructure:"log"`
	Metrics  Metrics  `mapstructure:"metrics"`
	// Connections are the systems the worker's integrations reach, by
	// name (connections.<name>; TETHER_CONNECTIONS_<NAME>_<KEY>). The
	// demo's Go integrations run when a "crm" connection is configured.
	Connections map[string]Connection `mapstructure:"connections"`
	// IntegrationsDir is a directory of integration files (*.yaml, *.yml)
	// run beside the Go integrations; empty means none
	// (TETHER_INTEGRATIONS_DIR).
	IntegrationsDir string `mapstructure:"integrations_dir"`
	// Schedules says whether the worker keeps the integrations' Temporal
	// Schedules as declared.
	Schedules Schedules `mapstructure:"schedules"`
	// Webhooks is the signed webhook receiver the worker serves besides
	// polling Temporal (off unless webhooks.listen is set).
	Webhooks Webhooks `mapstructure:"webhooks"`
	// Encryption seals what the workflows store in Temporal (off unless
	// encryption.current is set).
	Encryption Encryption `mapstructure:"encryption"`
}

// Encryption configures the payload codec (workers/codec). Keys never come
// from integration files: from files of KeysDir, or the variables
// TETHER_ENCRYPTION_KEY_<ID>.
type Encryption struct {
	// Current is the id of the key that seals new payloads; empty turns
	// encryption off (TETHER_ENCRYPTION_CURRENT).
	Current string `mapstructure:"current"`
	// KeysDir is a directory of key files, each named by its key's id
	// and holding base64 of 32 bytes (TETHER_ENCRYPTION_KEYS_DIR).
	KeysDir string `mapstructure:"keys_dir"`
}

// Keyring loads the configured keys (nil when encryption is off).
func (e Encryption) Keyring() (*codec.Keyring, error) {
	return codec.Load(e.Current, e.KeysDir, os.Environ())
}

// EncryptionFromEnv is the encryption the environment configures
// (TETHER_ENCRYPTION_CURRENT, TETHER_ENCRYPTION_KEYS_DIR): what the CLI
// and the harnesses use.
func EncryptionFromEnv() Encryption {
	return Encryption{Current: os.Getenv("TETHER_ENCRYPTION_CURRENT"), KeysDir: os.Getenv("TETHER_ENCRYPTION_KEYS_DIR")}
}

// Webhooks configures the worker's webhook receiver (workers/webhook):
// POST /webhooks/{source} on Listen, each source's events applied to its
// integration through Temporal.
type Webhooks struct {
	// Listen is the host:port the receiver serves on; empty turns it off
	// (TETHER_WEBHOOKS_LISTEN).
	Listen string `mapstructure:"listen"`
	// TLS serves it over HTTPS with this certificate and key.
	TLS ServerTLS `mapstructure:"tls"`
	// Sources are the senders (only in a config file).
	Sources []WebhookSource `mapstructure:"sources"`
}

// WebhookSource is one sender as written in the config file: the source's
// settings with its secrets given by environment variable name, never
// inline.
type WebhookSource struct {
	webhook.Source `mapstructure:",squash"`
	// SecretsEnv names the environment variables holding the source's
	// secrets: one, or two while the sender rotates.
	SecretsEnv []string `mapstructure:"secrets_env"`
}

// Schedules configures the Temporal Schedules the worker keeps in step
// with the integrations' declarations (workers/schedules), at start and
// after every reload of the integration files.
type Schedules struct {
	// Manage creates, updates and deletes the schedules (default true);
	// false leaves them as they are (TETHER_SCHEDULES_MANAGE), e.g. when
	// `tether schedules apply` keeps them instead.
	Manage bool `mapstructure:"manage"`
	// Owner tags the schedules this worker creates; it only changes or
	// deletes schedules with its owner. Default: the task queue
	// (TETHER_SCHEDULES_OWNER).
	Owner string `mapstructure:"owner"`
}

// Temporal says which cluster and namespace to work with.
type Temporal struct {
	// Address and Namespace: "" takes the Temporal environment
	// configuration's (Connection), else 127.0.0.1:7233 and default.
	Address   string `mapstructure:"address"`
	Namespace string `mapstructure:"namespace"`
	TaskQueue string `mapstructure:"task_queue"`
	// APIKey is sent as the SDK sends it, as a bearer token on every call
	// (TETHER_TEMPORAL_API_KEY, or TEMPORAL_API_KEY).
	APIKey string `mapstructure:"api_key"`
	// TLS says how to reach the frontend over TLS.
	TLS TemporalTLS `mapstructure:"tls"`
	// Profile and ConfigFile choose the Temporal environment
	// configuration's profile (TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE).
	Profile    string `mapstructure:"profile"`
	ConfigFile string `mapstructure:"config_file"`
	// ConnectTimeout bounds the start-up check that the server is reachable.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
}

// Database is the PostgreSQL that holds the pipeline's state (runs,
// checkpoints, quarantine, staged pages) and the shipped destinations.
type Database struct {
	URL          string `mapstructure:"url"`
	MaxOpenConns int    `mapstructure:"max_open_conns"`
}

// Worker tunes the Temporal worker.
type Worker struct {
	MaxConcurrentActivities      int           `mapstructure:"max_concurrent_activities"`
	MaxConcurrentLocalActivities int           `mapstructure:"max_concurrent_local_activities"`
	MaxConcurrentWorkflowTasks   int           `mapstructure:"max_concurrent_workflow_tasks"`
	GracefulStop                 time.Duration `mapstructure:"graceful_stop"`
	CachePages                   int           `mapstructure:"cache_pages"`
	// ValidationCache bounds how many records each schema remembers as
	// valid by the hash of their bytes, so that one read again unchanged
	// is not validated again (schema.SetKnownRecords); 0 turns it off.
	ValidationCache int `mapstructure:"validation_cache"`
	// Integrations limits which registered integrations this worker runs
	// (empty = all).
	Integrations []string `mapstructure:"integrations"`
}

// Log configures slog.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Metrics configures the worker's Prometheus endpoint.
type Metrics struct {
	// Listen is the host:port /metrics is served on; empty disables it
	// (TETHER_METRICS_LISTEN).
	Listen string `mapstructure:"listen"`
	// TLS serves it over HTTPS with this certificate and key.
	TLS ServerTLS `mapstructure:"tls"`
	// Token, when set, must come as "Authorization: Bearer <token>" on
	// every scrape (TETHER_METRICS_TOKEN; Prometheus: authorization.credentials).
	Token string `mapstructure:"token"`
}

// ServerTLS is the certificate an HTTP endpoint of the worker serves
// HTTPS with (both files PEM); empty serves plain HTTP.
type ServerTLS struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
}

// problems checks that both files are given, and load as a pair.
func (t ServerTLS) problems(key string) []error {
	switch {
	case t.Cert == "" && t.Key == "":
		return nil
	case t.Cert == "" || t.Key == "":
		return []error{problem(key, "give both cert and key (PEM files), or neither for plain HTTP")}
	}
	if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
		return []error{problem(key, "cert %s and key %s: %v", t.Cert, t.Key, err)}
	}
	return nil
}

// defaults lists every key (env overrides only bind to known keys).
var defaults = map[string]any{
	"temporal.address":                       "",
	"temporal.namespace":                     "",
	"temporal.api_key":                       "",
	"temporal.profile":                       "",
	"temporal.config_file":                   "",
	"temporal.tls.enabled":                   false,
	"temporal.tls.server_ca_cert":            "",
	"temporal.tls.client_cert":               "",
	"temporal.tls.client_key":                "",
	"temporal.tls.server_name":               "",
	"temporal.tls.disable_host_verification": false,
	"temporal.task_queue":                    "tether-sync",
	"temporal.connect_timeout":               "10s",
	"database.url":                           "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
	"database.max_open_conns":                16,
	"worker.max_concurrent_activities":       64,
	"worker.max_concurrent_local_activities": 64,
	"worker.max_concurrent_workflow_tasks":   16,
	"worker.graceful_stop":                   "30s",
	"worker.cache_pages":                     64,
	"worker.validation_cache":                1 << 17,
	"worker.integrations":                    []string{},
	"log.level":                              "info",
	"log.format":                             "text",
	"metrics.listen":                         "127.0.0.1:9464",
	"metrics.tls.cert":                       "",
	"metrics.tls.key":                        "",
	"metrics.token":                          "",
	"webhooks.tls.cert":                      "",
	"webhooks.tls.key":                       "",
	"integrations_dir":                       "",
	"schedules.manage":                       true,
	"schedules.owner":                        "",
	"webhooks.listen":                        "",
	"encryption.current":                     "",
	"encryption.keys_dir":                    "",
}

// aliases are the ecosystem's variable names, read besides TETHER_*.
var aliases = map[string]string{
	"temporal.address":   "TEMPORAL_ADDRESS",
	"temporal.namespace": "TEMPORAL_NAMESPACE",
	"temporal.profile":   "TEMPORAL_PROFILE",
	"database.url":       "DATABASE_URL",
}

// Load reads defaults, then file (if not empty), then the environment, and
// validates the result. Every problem is reported in one error that names
// the file and the key.
func Load(file string) (Config, error) {
	v := viper.New()
	for k, val := range defaults {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix("TETHER")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for k := range defaults {
		envs := []string{"TETHER_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))}
		if alias, ok := aliases[k]; ok {
			envs = append(envs, alias)
		}
		if err := v.BindEnv(append([]string{k}, envs...)...); err != nil {
			return Config{}, fmt.Errorf("bind %s: %w", k, err)
		}
	}
	where := "defaults and environment"
	if file != "" {
		if _, err := os.Stat(file); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", file, err)
		}
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", file, err)
		}
		where = file
	}
	envErr := setConnectionsFromEnv(v, os.Environ())
	var cfg Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", where, err)
	}
	// viper reads an empty variable as unset: an empty
	// TETHER_METRICS_LISTEN disables the endpoint, as in a file.
	if l, ok := os.LookupEnv("TETHER_METRICS_LISTEN"); ok && l == "" {
		cfg.Metrics.Listen = ""
	}
	if _, err := cfg.Encryption.Keyring(); err != nil {
		envErr = errors.Join(envErr, problem("encryption", "%v", err))
	}
	// The Temporal connection: tether's settings over the Temporal
	// environment configuration (profile file, TEMPORAL_* variables).
	if p, err := cfg.Temporal.Connection(); err != nil {
		envErr = errors.Join(envErr, problem("temporal", "%v", err))
	} else if _, err := ClientOptionsOf(p); err != nil {
		envErr = errors.Join(envErr, problem("temporal", "%v", err))
	} else {
		cfg.Temporal.Address, cfg.Temporal.Namespace = p.Address, p.Namespace
	}
	// Every problem at once: the secrets that could not be read and the
	// rest of the configuration.
	if err := errors.Join(envErr, cfg.resolveWebhookSecrets(os.LookupEnv), cfg.Validate()); err != nil {
		return Config{}, fmt.Errorf("config %s:\n%w", where, err)
	}
	return cfg, nil
}

// Validate reports every problem, one per line, each naming its key.
func (c Config) Validate() error {
	return errors.Join(slices.Concat(
		c.Temporal.problems(),
		c.Database.problems(),
		c.Worker.problems(),
		c.Log.problems(),
		c.Metrics.problems(),
		connectionsProblems(c.Connections),
		c.Schedules.problems(),
		integrationsDirProblems(c.IntegrationsDir),
		c.Webhooks.problems(),
	)...)
}

// problem is one line of Validate's report: the key, then what is wrong.
func problem(key, format string, args ...any) error {
	return fmt.Errorf("  %s: %s", key, fmt.Sprintf(format, args...))
}

// problems checks the Temporal connection settings.
func (t Temporal) problems() []error {
	var errs []error
	if _, _, err := net.SplitHostPort(t.Address); err != nil {
		errs = append(errs, problem("temporal.address (TEMPORAL_ADDRESS)", "%q is not host:port: %v", t.Address, err))
	}
	if t.Namespace == "" {
		errs = append(errs, problem("temporal.namespace (TEMPORAL_NAMESPACE)", "must not be empty"))
	}
	if t.TaskQueue == "" {
		errs = append(errs, problem("temporal.task_queue", "must not be empty"))
	}
	if t.ConnectTimeout <= 0 {
		errs = append(errs, problem("temporal.connect_timeout", "must be positive"))
	}
	return errs
}

// problems checks the database settings.
func (d Database) problems() []error {
	var errs []error
	if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		errs = append(errs, problem("database.url (DATABASE_URL)", "want a postgres:// URL, got %q", postgres.RedactDSN(d.URL)))
	}
	if d.MaxOpenConns < 2 {
		errs = append(errs, problem("database.max_open_conns", "%d is too small (at least 2)", d.MaxOpenConns))
	}
	return errs
}

// problems checks the worker's limits.
func (w Worker) problems() []error {
	var errs []error
	for key, n := range map[string]int{
		"worker.max_concurrent_activities":       w.MaxConcurrentActivities,
		"worker.max_concurrent_local_activities": w.MaxConcurrentLocalActivities,
		"worker.max_concurrent_workflow_tasks":   w.MaxConcurrentWorkflowTasks,
		"worker.cache_pages":                     w.CachePages,
	} {
		if n < 1 {
			errs = append(errs, problem(key, "%d must be at least 1", n))
		}
	}
	if w.MaxConcurrentWorkflowTasks == 1 {
		errs = append(errs, problem("worker.max_concurrent_workflow_tasks", "must be at least 2 (the SDK needs one sticky and one normal poller)"))
	}
	if w.GracefulStop < 0 {
		errs = append(errs, problem("worker.graceful_stop", "must not be negative"))
	}
	if w.ValidationCache < 0 {
		errs = append(errs, problem("worker.validation_cache", "%d must not be negative (0 turns it off)", w.ValidationCache))
	}
	return errs
}

// problems checks the log settings.
func (l Log) problems() []error {
	var errs []error
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, problem("log.level", "%q is not one of debug, info, warn, error", l.Level))
	}
	switch l.Format {
	case "text", "json":
	default:
		errs = append(errs, problem("log.format", "%q is not text or json", l.Format))
	}
	return errs
}

// problems checks the metrics endpoint's address.
func (m Metrics) problems() []error {
	l := m.Listen
	if l == "" {
		return nil
	}
	if errs := m.TLS.problems("metrics.tls (TETHER_METRICS_TLS_CERT, TETHER_METRICS_TLS_KEY)"); len(errs) > 0 {
		return errs
	}
	_, port, err := net.SplitHostPort(l)
	if err != nil {
		return []error{problem("metrics.listen (TETHER_METRICS_LISTEN)", "%q is not host:port (e.g. 127.0.0.1:9464; empty disables the endpoint): %v", l, err)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return []error{problem("metrics.listen (TETHER_METRICS_LISTEN)", "%q: port %q is not a number from 0 to 65535", l, port)}
	}
	return nil
}

// problems checks the schedules' owner tag.
func (s Schedules) problems() []error {
	if o := s.Owner; o != strings.TrimSpace(o) {
		return []error{problem("schedules.owner (TETHER_SCHEDULES_OWNER)", "%q has leading or trailing spaces", o)}
	}
	return nil
}

// integrationsDirProblems checks that the integrations directory, when
// set, is one.
func integrationsDirProblems(d string) []error {
	if d == "" {
		return nil
	}
	info, err := os.Stat(d)
	if err != nil {
		return []error{problem("integrations_dir (TETHER_INTEGRATIONS_DIR)", "%q: %v", d, unwrapPath(err))}
	}
	if !info.IsDir() {
		return []error{problem("integrations_dir (TETHER_INTEGRATIONS_DIR)", "%q is not a directory", d)}
	}
	return nil
}

// problems checks the webhook receiver's settings (secrets resolved).
func (w Webhooks) problems() []error {
	errs := w.TLS.problems("webhooks.tls (TETHER_WEBHOOKS_TLS_CERT, TETHER_WEBHOOKS_TLS_KEY)")
	if w.Listen != "" {
		if _, _, err := net.SplitHostPort(w.Listen); err != nil {
			errs = append(errs, fmt.Errorf("  webhooks.listen (TETHER_WEBHOOKS_LISTEN): %q is not host:port (e.g. 127.0.0.1:8090; empty turns the receiver off): %v", w.Listen, err))
		}
		if len(w.Sources) == 0 {
			errs = append(errs, fmt.Errorf("  webhooks.sources: the receiver is on (webhooks.listen is %q) but no source is configured", w.Listen))
		}
	}
	for i, s := range w.Sources {
		key := fmt.Sprintf("webhooks.sources[%d] (%s)", i, s.Name)
		if s.Integration == "" {
			errs = append(errs, fmt.Errorf("  %s: integration: required: the integration the source's events are applied to", key))
		}
		if len(s.SecretsEnv) == 0 {
			errs = append(errs, fmt.Errorf("  %s: secrets_env: required: the environment variables holding the source's secrets", key))
			continue
		}
		src := s.Source
		if len(src.Secrets) < len(s.SecretsEnv) {
			// A variable is unset (reported by resolveWebhookSecrets): check
			// the rest of the source, and the number of secrets named.
			src.Secrets = slices.Repeat([]string{"unresolved"}, len(s.SecretsEnv))
		}
		if err := src.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, fmt.Errorf("  %s: %s", key, line))
			}
		}
	}
	return errs
}

// resolveWebhookSecrets reads every webhook source's secrets from the
// environment variables it names; an unset one is an error naming it.
func (c *Config) resolveWebhookSecrets(lookup func(string) (string, bool)) error {
	var errs []error
	for i := range c.Webhooks.Sources {
		s := &c.Webhooks.Sources[i]
		if len(s.Secrets) > 0 {
			errs = append(errs, fmt.Errorf("  webhooks.sources[%d] (%s): secrets: never inline; name the environment variables in secrets_env", i, s.Name))
			continue
		}
		for _, name := range s.SecretsEnv {
			v, ok := lookup(name)
			if !ok {
				errs = append(errs, fmt.Errorf("  webhooks.sources[%d] (%s): secrets_env: environment variable %s is not set", i, s.Name, name))
				continue
			}
			s.Secrets = append(s.Secrets, v)
		}
	}
	return errors.Join(errs...)
}

// unwrapPath drops the path an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Redacted returns the database URL with any password hidden, for logs.
func (d Database) Redacted() string { return postgres.RedactDSN(d.URL) }

// EnvNames lists the environment variables the configuration reads,
// besides the connections' TETHER_CONNECTIONS_<NAME>_<KEY> (ReadsEnv).
func EnvNames() []string {
	names := make([]string, 0, len(defaults)+len(aliases))
	for k := range defaults {
		names = append(names, "TETHER_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_")))
	}
	for _, a := range aliases {
		names = append(names, a)
	}
	return names
}

// ReadsEnv reports whether the configuration reads the environment
// variable name: one of EnvNames, or a connection's setting.
func ReadsEnv(name string) bool {
	if slices.Contains(EnvNames(), name) {
		return true
	}
	rest, ok := strings.CutPrefix(name, "TETHER_CONNECTIONS_")
	if !ok {
		return false
	}
	for _, k := range connectionKeys {
		if c, ok := strings.CutSuffix(rest, "_"+k); ok && c != "" {
			return true
		}
	}
	return false
}
