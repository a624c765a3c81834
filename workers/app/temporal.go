package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.uber.org/fx"
	"google.golang.org/grpc"

	"github.com/tetherflow/tether/workers/codec"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/telemetry"
	"github.com/tetherflow/tether/workflows/datasync"
)

// NewTemporalClient returns the worker's Temporal client without
// connecting. At the app's start, an OnStart hook connects, checks the
// server answers and the namespace exists, and creates the search
// attributes the workflows use if they are missing (bounded by
// temporal.connect_timeout).
func NewTemporalClient(lc fx.Lifecycle, cfg config.Config, log *slog.Logger, sdkMetrics client.MetricsHandler, _ *Tracing) (client.Client, error) {
	kr, err := cfg.Encryption.Keyring()
	if err != nil {
		return nil, fmt.Errorf("encryption: %w", err)
	}
	if kr != nil {
		log.Info("payloads encrypted", "key", kr.Current(), "keys", kr.IDs())
	}
	opts, err := clientOptions(cfg.Temporal, kr, log)
	if err != nil {
		return nil, err
	}
	opts.MetricsHandler = sdkMetrics
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("temporal client (temporal.address / TEMPORAL_ADDRESS %s): %w", cfg.Temporal.Address, err)
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.Temporal.ConnectTimeout)
			defer cancel()
			if err := check(ctx, c, cfg.Temporal, opts.Namespace); err != nil {
				return err
			}
			if err := EnsureSearchAttributes(ctx, c, cfg.Temporal.Namespace); err != nil {
				log.Warn("search attributes could not be created; create them with `temporal operator search-attribute create`", "error", err)
			}
			return nil
		},
		OnStop: func(context.Context) error {
			c.Close()
			return nil
		},
	})
	return c, nil
}

// clientOptions are the options of every Temporal client: the connection
// as the Temporal environment configuration and tether's settings say
// (address, namespace, TLS, API key; config.Temporal.ClientOptions), the
// logger, and the tracing interceptor when tracing is on
// (telemetry.StartTracing), and with kr (nil: none) payloads and
// failures are encrypted (workers/codec).
func clientOptions(t config.Temporal, kr *codec.Keyring, log *slog.Logger) (client.Options, error) {
	opts, err := t.ClientOptions()
	if err != nil {
		return client.Options{}, err
	}
	opts.DataConverter, opts.FailureConverter = codec.DataConverter(kr), codec.FailureConverter(kr)
	opts.Logger = tlog.NewStructuredLogger(log)
	opts.Interceptors = telemetry.ClientInterceptors()
	opts.ConnectionOptions.DialOptions = append(opts.ConnectionOptions.DialOptions, grpc.WithChainUnaryInterceptor(retryBusyWorkflow))
	return opts, nil
}

// Dial connects to Temporal and checks it answers within ctx; the
// payloads are encrypted with the keys the environment gives
// (TETHER_ENCRYPTION_*; config.EncryptionFromEnv), as the CLI reads them.
func Dial(ctx context.Context, t config.Temporal, log *slog.Logger) (client.Client, error) {
	kr, err := config.EncryptionFromEnv().Keyring()
	if err != nil {
		return nil, fmt.Errorf("encryption (TETHER_ENCRYPTION_*): %w", err)
	}
	opts, err := clientOptions(t, kr, log)
	if err != nil {
		return nil, err
	}
	opts.Identity = CLIIdentity()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("temporal at %s is unreachable: %w%s", describe(t), err, hint(t, err))
	}
	if err := check(ctx, c, t, opts.Namespace); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// check asks the server whether it is healthy and has the namespace ns
// (t's, resolved).
func check(ctx context.Context, c client.Client, t config.Temporal, ns string) error {
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("temporal at %s is not healthy: %w%s", describe(t), err, hint(t, err))
	}
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns}); err != nil {
		return fmt.Errorf("temporal namespace of %s (temporal.namespace / TEMPORAL_NAMESPACE): %w%s", describe(t), err, hint(t, err))
	}
	return nil
}

// SearchAttributes are the custom search attributes the workflows upsert.
var SearchAttributes = map[string]enums.IndexedValueType{
	datasync.IntegrationAttr.GetName(): enums.INDEXED_VALUE_TYPE_KEYWORD,
	datasync.StatusAttr.GetName():      enums.INDEXED_VALUE_TYPE_KEYWORD,
}

// EnsureSearchAttributes creates the missing custom search attributes;
// it is idempotent.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	ops := c.OperatorService()
	have, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enums.IndexedValueType{}
	for name, typ := range SearchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	if err != nil && !strings.Contains(strings.ToLower(err.Error()), "already") {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}

// describe says how t connects (address, namespace, TLS, API key), with
// the keys that set it, never a secret.
func describe(t config.Temporal) string {
	p, err := t.Connection()
	if err != nil {
		return t.Address
	}
	return config.Describe(p) + " (temporal.address / TEMPORAL_ADDRESS, temporal.tls.* / TEMPORAL_TLS_*, temporal.api_key / TEMPORAL_API_KEY)"
}

// hint says what a connection error usually means.
func hint(t config.Temporal, err error) string {
	msg := err.Error()
	p, _ := t.Connection()
	tlsOn := p.TLS != nil && !p.TLS.Disabled || p.TLS == nil && p.APIKey != ""
	noClientCert := p.TLS == nil || p.TLS.ClientCertPath == "" && len(p.TLS.ClientCertData) == 0
	dropped := strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF")
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"), strings.Contains(msg, "certificate is not valid"),
		strings.Contains(msg, "x509:"):
		return "; the server's certificate is not trusted: give the CA that signed it (temporal.tls.server_ca_cert / TEMPORAL_TLS_SERVER_CA_CERT_PATH) and, if its name differs from the address, temporal.tls.server_name / TEMPORAL_TLS_SERVER_NAME"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"), tlsOn && noClientCert && dropped:
		return "; the server closed the TLS connection: it may want a client certificate (mTLS): give temporal.tls.client_cert and client_key (TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH) signed by a CA it trusts"
	case strings.Contains(msg, "first record does not look like a TLS handshake"), strings.Contains(msg, "http2: frame too large"),
		strings.Contains(msg, "tls: "):
		return "; TLS does not match the server: turn it on (temporal.tls.enabled / TEMPORAL_TLS=true) or off (TEMPORAL_TLS=false) as the server expects"
	case strings.Contains(msg, "Unauthenticated"), strings.Contains(msg, "PermissionDenied"):
		return "; the server refused the credentials: check the API key (temporal.api_key / TEMPORAL_API_KEY) or client certificate"
	}
	return ""
}

// CLIIdentity is the identity the tether CLI acts as in Temporal (and in
// the audit): TETHER_IDENTITY, else "<user>@<host> (tether CLI)".
func CLIIdentity() string {
	if id := os.Getenv("TETHER_IDENTITY"); id != "" {
		return id
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host + " (tether CLI)"
}
