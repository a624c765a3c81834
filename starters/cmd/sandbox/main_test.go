package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRun_BadFlagsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // in stderr
	}{
		{name: "unknown flag", args: []string{"--contactz", "5"}, want: "contactz"},
		{name: "not a number", args: []string{"--contacts", "many"}, want: "contacts"},
		{name: "bad duration", args: []string{"--latency", "20"}, want: "latency"},
		{name: "bad env", env: map[string]string{"SANDBOX_ERROR_RATE": "half"}, want: "SANDBOX_ERROR_RATE"},
		{name: "unknown auth", args: []string{"--auth", "kerberos"}, want: "kerberos"},
		{name: "bearer without token", args: []string{"--auth", "bearer"}, want: "token"},
		{name: "rate out of range", args: []string{"--invalid-rate", "3"}, want: "invalid_rate"},
		{name: "write rate out of range", args: []string{"--write-error-rate", "2"}, want: "writes.error_rate"},
		{name: "negative lost every", env: map[string]string{"SANDBOX_WRITE_LOST_RESPONSE_EVERY": "-1"}, want: "writes.lost_response_every"},
		{name: "negative rate limit", args: []string{"--rate-limit", "-1"}, want: "rate-limit"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, want: "log-format"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, want: "log-level"},
		{name: "bad addr", args: []string{"--addr", "8081"}, want: "addr"},
		{name: "positional", args: []string{"serve"}, want: "serve"},
		{name: "webhooks without a secret", args: []string{"--webhook-url", "http://127.0.0.1:8080/webhooks/billing"}, want: "SANDBOX_WEBHOOK_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			getenv := func(k string) string { return tt.env[k] }
			code := run(context.Background(), tt.args, getenv, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and a message naming %q", code, stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout %q", stdout.String())
			}
		})
	}
}

func TestRun_ServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	env := map[string]string{"SANDBOX_CONTACTS": "40", "SANDBOX_AUTH": "api_key", "SANDBOX_API_KEY": "from-env"}
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--api-key", "from-flag", "--log-level", "debug", "--log-format", "json"},
			func(k string) string { return env[k] }, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("read ready line: %v", err)
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain
	base := strings.TrimSpace(strings.TrimPrefix(line, "sandbox listening on "))
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("ready line %q", line)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	tests := []struct {
		key    string
		status int
	}{
		{key: "from-flag", status: 200}, // the flag wins over the environment
		{key: "from-env", status: 401},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/contacts?per_page=100", nil)
		req.Header.Set("X-API-Key", tt.key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Data []json.RawMessage `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || err != nil {
			t.Fatalf("key %s: status %d (%v), want %d", tt.key, resp.StatusCode, err, tt.status)
		}
		if tt.status == 200 && len(body.Data) != 40 {
			t.Fatalf("%d contacts, want the 40 of SANDBOX_CONTACTS", len(body.Data))
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after cancel: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no shutdown 30s after cancel")
	}
	if !strings.Contains(stderr.String(), `"msg":"request"`) || !strings.Contains(stderr.String(), `"path":"/v1/contacts"`) {
		t.Errorf("no debug request log in %s", stderr.String())
	}
}
