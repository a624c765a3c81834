package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/webhook"
)

// demoSecretEnv holds the demo webhook source's secret in the worker's
// environment.
const demoSecretEnv = "TETHER_DEMO_WEBHOOK_SECRET"

// demoWebhook is the webhook source `tether up` configures on its worker:
// the CRM's contact events, applied to crm-contacts.
type demoWebhook struct {
	addr, secret, configFile string
}

// newDemoWebhook writes the worker's configuration file with the demo
// webhook source and a fresh secret.
func newDemoWebhook(dir, addr string) (*demoWebhook, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	h := &demoWebhook{addr: addr, secret: hex.EncodeToString(b[:]), configFile: filepath.Join(dir, "worker.yaml")}
	cfg := fmt.Sprintf(`# written by tether up: the demo's signed webhook source
webhooks:
  listen: %q
  sources:
    - name: crm
      integration: crm-contacts
      secrets_env: [%s]
      key_path: data.id
      version_path: data.updated_at
      record_path: data
      type_path: type
      delete_types: [contact.deleted]
`, addr, demoSecretEnv)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return h, os.WriteFile(h.configFile, []byte(cfg), 0o600)
}

// demo sends one signed webhook (a contact renamed in the CRM) to the
// worker and shows it applied, then how to send one by hand.
func (h *demoWebhook) demo(ctx context.Context, out io.Writer, sb *sandbox.Server, dsn string) error {
	invalid := sb.InvalidContactIDs()
	var contact sandbox.Contact
	for _, c := range sb.Contacts() {
		if !slices.Contains(invalid, c.ID) {
			contact = c
			break
		}
	}
	if contact.ID == 0 {
		return fmt.Errorf("webhook demo: no valid sandbox contact to update")
	}
	raw, err := json.Marshal(contact)
	if err != nil {
		return err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return err
	}
	data["last_name"] = "Webhook"
	data["updated_at"] = time.Now().UTC().Format(time.RFC3339Nano)
	body, err := json.Marshal(map[string]any{"type": "contact.updated", "data": data})
	if err != nil {
		return err
	}
	url := "http://" + h.addr + webhook.Path("crm")
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.DefaultDeliveryHeader, fmt.Sprintf("demo-%d", start.UnixNano()))
	req.Header.Set(webhook.DefaultSignatureHeader, webhook.Sign(webhook.DefaultSignatureScheme, start, body, h.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("webhook demo: POST %s: %w", url, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	accepted := time.Since(start)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("webhook demo: POST %s: %s %s", url, resp.Status, bytes.TrimSpace(answer))
	}
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var name string
		err := db.QueryRowContext(ctx, `SELECT last_name FROM crm_contacts WHERE id = $1`, contact.ID).Scan(&name)
		if err == nil && name == "Webhook" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook demo: contact %d not applied within 30s (see `tether events crm-contacts`)", contact.ID)
		}
	}
	fmt.Fprintf(out, "\n✓ Webhook        POST %s → 202 in %s; contact %d renamed in crm_contacts %s after the request\n",
		url, accepted.Round(time.Millisecond), contact.ID, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "  Send your own (docs/events.md): secret=%s, header X-Tether-Signature: t=<unix>,v1=<hex HMAC-SHA256 of \"<unix>.<body>\">\n", h.secret)
	fmt.Fprintln(out, "  Shards and counts: go run ./starters/cmd/tether events crm-contacts")
	return nil
}
