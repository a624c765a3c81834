package integration

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/workers/webhook"
)

// TestIngress_MetricsAndWebhooksOverTLSWithAToken: a worker process serves
// /metrics over HTTPS requiring its bearer token, and the webhook receiver
// over HTTPS with its OpenAPI document; plain HTTP gets nothing, and the
// token is never logged.
func TestIngress_MetricsAndWebhooksOverTLSWithAToken(t *testing.T) {
	ca := newPKI(t, "ingress")
	_, certFile, keyFile := ca.issue(t, "worker-endpoints", true)
	s := newStack(t, stackOptions{noWorker: true})
	name := uniqueName("tls-hook")
	dir := t.TempDir()
	writeIntegrationFile(t, dir, name, "events:\n  shards: 2\n")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := s.workerEnv("TETHER_CONFIG="+webhookConfig(t, listen, name, "TEST_CRM_HOOK_SECRET"), "TETHER_INTEGRATIONS_DIR="+dir,
		"TETHER_SCHEDULES_OWNER="+name, "TEST_CRM_HOOK_SECRET="+hookSecret,
		"TETHER_METRICS_TLS_CERT="+certFile, "TETHER_METRICS_TLS_KEY="+keyFile, "TETHER_METRICS_TOKEN=scrape-token-1234",
		"TETHER_WEBHOOKS_TLS_CERT="+certFile, "TETHER_WEBHOOKS_TLS_KEY="+keyFile)
	w := s.startWorkerProcess("tls", t.TempDir(), env, workerBinary(t))
	waitPolling(t, w)
	logged, _ := os.ReadFile(w.logFile)
	m := reMetricsURL.FindSubmatch(logged)
	if m == nil || !strings.HasPrefix(string(m[1]), "https://") {
		t.Fatalf("the metrics endpoint is not served over HTTPS:\n%s", logged)
	}
	metricsURL := string(m[1])
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}

	get := func(url, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(metricsURL, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", code)
	}
	if code, _ := get(metricsURL, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong token: %d, want 401", code)
	}
	if code, body := get(metricsURL, "scrape-token-1234"); code != http.StatusOK || !strings.Contains(body, "tether_state_read_ok") {
		t.Errorf("/metrics with the token: %d %.200s", code, body)
	}
	plain := strings.Replace(metricsURL, "https://", "http://", 1)
	if resp, err := http.Get(plain); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "tether_") {
			t.Errorf("/metrics over plain HTTP answered %d with metrics", resp.StatusCode)
		}
	}

	body := contactEvent(11, 1, "contact.created")
	req, _ := http.NewRequest(http.MethodPost, "https://"+listen+webhook.Path("crm"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.DefaultDeliveryHeader, uniqueName("tls-delivery"))
	req.Header.Set(webhook.DefaultSignatureHeader, webhook.Sign("v1", time.Now(), body, hookSecret))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("webhook over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("webhook over HTTPS: %d, want 202", resp.StatusCode)
	}
	if code, doc := get("https://"+listen+webhook.OpenAPIPath, ""); code != http.StatusOK || !strings.Contains(doc, "openapi: 3") {
		t.Errorf("GET %s over HTTPS: %d", webhook.OpenAPIPath, code)
	}
	if logged, _ := os.ReadFile(w.logFile); bytes.Contains(logged, []byte("scrape-token-1234")) {
		t.Errorf("the worker logged the metrics token")
	}
}
