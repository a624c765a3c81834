package integration

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
)

// TestDemo_EncryptedLeavesNothingReadableInTemporalsDatabase: `tether up
// --encrypt --exit` (what `make demo ARGS=--encrypt` runs) syncs the
// sandbox and applies its webhook with every payload encrypted; the dev
// server's database file holds the runs but neither the webhook's contact
// (its email, the name it sets) nor the demo key.
func TestDemo_EncryptedLeavesNothingReadableInTemporalsDatabase(t *testing.T) {
	moduleDir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := devstack.BuildBinary(context.Background(), moduleDir, "./starters/cmd/tether", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	port := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	state := t.TempDir()
	schema := "demo_enc_" + strings.ReplaceAll(uniqueName("s"), "-", "_")
	t.Cleanup(func() {
		if db, err := sql.Open("postgres", pgtest.BaseDSN()); err == nil {
			_, _ = db.Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`)
			db.Close()
		}
	})
	uiPort := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"up", "--exit", "--encrypt", "--contacts", "300",
		"--address", port(), "--ui-port", fmt.Sprint(uiPort), "--sandbox-addr", port(), "--webhooks-addr", port(),
		"--codec-addr", "127.0.0.1:0", "--state-dir", state, "--schema", schema,
		"--database-url", pgtest.BaseDSN(), "--task-queue", uniqueName("demo-enc")}
	plain := os.Getenv("TETHER_TEST_DEMO_PLAIN") != "" // the control, by hand: the search finds the email then
	if plain {
		args = slices.DeleteFunc(args, func(a string) bool { return a == "--encrypt" })
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = moduleDir
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "TETHER_ENCRYPTION_") })
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tether up --encrypt --exit: %v\n%s", err, out)
	}
	for _, want := range []string{`✓ (Encryption|Webhook)`, `crm-contacts\s+Completed`, `renamed in crm_contacts`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}

	// The contact the demo's webhook renames: the first valid one.
	sb, err := sandbox.New(sandbox.Options{Seed: 7, Contacts: 300, Faults: sandbox.Faults{InvalidRate: 0.02}})
	if err != nil {
		t.Fatal(err)
	}
	invalid := sb.InvalidContactIDs()
	var email string
	for _, c := range sb.Contacts() {
		if !slices.Contains(invalid, c.ID) {
			email = c.Email
			break
		}
	}
	var db []byte
	for _, f := range []string{"temporal.db", "temporal.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(state, f))
		db = append(db, b...)
	}
	if !bytes.Contains(db, []byte("crm-contacts/sync/demo")) {
		t.Fatalf("the dev server's database (%d bytes) does not hold the demo's runs: the search proves nothing", len(db))
	}
	if plain {
		if !bytes.Contains(db, []byte(email)) {
			t.Fatalf("control: without encryption the webhook contact's email %q is not in the database either", email)
		}
		return
	}
	if !bytes.Contains(out, []byte("✓ Encryption")) {
		t.Errorf("the demo does not say payloads are encrypted:\n%s", out)
	}
	key, err := os.ReadFile(filepath.Join(state, "keys", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	for what, v := range map[string]string{"the webhook contact's email": email, "the key": strings.TrimSpace(string(key))} {
		if v == "" || bytes.Contains(db, []byte(v)) {
			t.Errorf("%s (%q) is readable in the dev server's database", what, v)
		}
	}
}
