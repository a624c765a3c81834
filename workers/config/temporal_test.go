package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clearTemporalEnv unsets the Temporal environment for one test.
func clearTemporalEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "TEMPORAL_") || strings.HasPrefix(k, "TETHER_TEMPORAL_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("HOME", t.TempDir()) // no ~/.config/temporalio/temporal.toml
}

func TestConnection_ProfileThenEnvironmentThenTetherKeys(t *testing.T) {
	clearTemporalEnv(t)
	file := filepath.Join(t.TempDir(), "temporal.toml")
	if err := os.WriteFile(file, []byte(`
[profile.default]
address = "default.example:7233"

[profile.prod]
address = "prod.example:7233"
namespace = "prod-ns"
api_key = "from-profile"
[profile.prod.tls]
server_ca_cert_path = "/etc/ca.pem"
server_name = "prod.internal"
`), 0o600); err != nil {
		t.Fatal(err)
	}

	p, err := Temporal{}.Connection()
	if err != nil || p.Address != DefaultTemporalAddress || p.Namespace != DefaultTemporalNamespace || p.TLS != nil || p.APIKey != "" {
		t.Fatalf("nothing configured: %+v, %v; want the defaults in plain text", p, err)
	}

	t.Setenv("TEMPORAL_CONFIG_FILE", file)
	t.Setenv("TEMPORAL_PROFILE", "prod")
	p, err = Temporal{}.Connection()
	if err != nil || p.Address != "prod.example:7233" || p.Namespace != "prod-ns" || p.APIKey != "from-profile" ||
		p.TLS == nil || p.TLS.ServerCACertPath != "/etc/ca.pem" || p.TLS.ServerName != "prod.internal" {
		t.Fatalf("profile prod: %+v (TLS %+v), %v", p, p.TLS, err)
	}
	if got := Describe(p); !strings.Contains(got, "prod.example:7233 namespace prod-ns, TLS, API key") || strings.Contains(got, "from-profile") {
		t.Errorf("Describe = %q", got)
	}

	t.Setenv("TEMPORAL_API_KEY", "from-env")
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "env.internal")
	p, _ = Temporal{}.Connection()
	if p.APIKey != "from-env" || p.TLS.ServerName != "env.internal" {
		t.Errorf("the environment does not win over the profile: %+v (TLS %+v)", p, p.TLS)
	}

	p, _ = Temporal{Address: "tether.example:7233", APIKey: "from-tether", TLS: TemporalTLS{ServerCACert: "/tether/ca.pem", ClientCert: "/c.pem", ClientKey: "/k.pem"}}.Connection()
	if p.Address != "tether.example:7233" || p.APIKey != "from-tether" || p.TLS.ServerCACertPath != "/tether/ca.pem" || p.TLS.ClientCertPath != "/c.pem" || p.TLS.ServerName != "env.internal" {
		t.Errorf("tether's keys do not win: %+v (TLS %+v)", p, p.TLS)
	}
	if got := Describe(p); !strings.Contains(got, "mTLS, API key") {
		t.Errorf("Describe = %q, want mTLS", got)
	}

	t.Setenv("TEMPORAL_PROFILE", "missing")
	if _, err := (Temporal{}).Connection(); err == nil || !strings.Contains(err.Error(), "TEMPORAL_PROFILE") {
		t.Errorf("a missing profile: %v, want an error naming TEMPORAL_PROFILE", err)
	}
}

func TestLoad_BadTLSFilesStopTheWorkerNamingTheKey(t *testing.T) {
	clearTemporalEnv(t)
	t.Setenv("TETHER_TEMPORAL_TLS_CLIENT_CERT", "/nonexistent/client.pem")
	t.Setenv("TETHER_TEMPORAL_TLS_CLIENT_KEY", "/nonexistent/client-key.pem")
	_, err := Load("")
	if err == nil || !strings.Contains(err.Error(), "temporal.tls") || !strings.Contains(err.Error(), "client.pem") {
		t.Fatalf("Load = %v; want the TLS problem named", err)
	}
}
