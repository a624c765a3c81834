package config

import (
	"strings"
	"testing"
)

func TestLoad_MetricsListen(t *testing.T) {
	tests := []struct {
		name    string
		file    string // YAML, "" for none
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "default", want: "127.0.0.1:9464"},
		{name: "file", file: "metrics:\n  listen: 0.0.0.0:9100\n", want: "0.0.0.0:9100"},
		{name: "all interfaces", file: "metrics:\n  listen: \":9464\"\n", want: ":9464"},
		{name: "any free port", env: map[string]string{"TETHER_METRICS_LISTEN": "127.0.0.1:0"}, want: "127.0.0.1:0"},
		{name: "disabled in the file", file: "metrics:\n  listen: \"\"\n", want: ""},
		{name: "disabled by the environment", file: "metrics:\n  listen: 0.0.0.0:9100\n", env: map[string]string{"TETHER_METRICS_LISTEN": ""}, want: ""},
		{name: "no port", env: map[string]string{"TETHER_METRICS_LISTEN": "localhost"},
			wantErr: `metrics.listen (TETHER_METRICS_LISTEN): "localhost" is not host:port`},
		{name: "port out of range", file: "metrics:\n  listen: 127.0.0.1:99999\n",
			wantErr: `metrics.listen (TETHER_METRICS_LISTEN): "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{name: "named port", file: "metrics:\n  listen: 127.0.0.1:http\n",
			wantErr: `port "http" is not a number`},
		{name: "typo in the key", file: "metrics:\n  listne: 127.0.0.1:9464\n", wantErr: "listne"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			file := ""
			if tt.file != "" {
				file = writeFile(t, tt.file)
			}
			cfg, err := Load(file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Metrics.Listen != tt.want {
				t.Errorf("metrics.listen = %q, want %q", cfg.Metrics.Listen, tt.want)
			}
		})
	}
}
