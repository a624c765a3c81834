package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/codec"
	"github.com/tetherflow/tether/workers/webhook"
	"github.com/tetherflow/tether/workflows/datasync"
)

// newKey is a fresh AES-256 key, base64.
func newKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, codec.KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// dialWith is a client of addr with opts' converters, logger and
// interceptors (HostPort and Logger are set here), closed when the test
// ends.
func dialWith(t *testing.T, addr string, opts client.Options) client.Client {
	t.Helper()
	opts.HostPort, opts.Logger = addr, quietLogger()
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// sealing are client options that seal and open payloads with kr.
func sealing(kr *codec.Keyring) client.Options {
	return client.Options{DataConverter: codec.DataConverter(kr), FailureConverter: codec.FailureConverter(kr)}
}

// syncThrough starts a sync of crm-contacts through c on taskQueue and
// waits for it to complete.
func syncThrough(t *testing.T, c client.Client, taskQueue string) (client.WorkflowRun, datasync.Result) {
	t.Helper()
	ctx := context.Background()
	run, err := cli.StartSync(ctx, c, taskQueue, datasync.Input{Integration: "crm-contacts", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var res datasync.Result
	if err := run.Get(ctx, &res); err != nil || res.Status != progress.StatusCompleted {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	return run, res
}

// webhookEvent is a CRM contact event whose email is email.
func webhookEvent(id int, email string) []byte {
	body, _ := json.Marshal(map[string]any{"type": "contact.created", "data": map[string]any{
		"id": id, "uuid": fmt.Sprintf("00000000-0000-4000-8000-%012d", id), "first_name": "Ada", "last_name": "Sealed",
		"email": email, "status": "lead", "score": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-11-23T10:00:00Z",
	}})
	return body
}

// TestEncryption_NothingReadableInTemporalsDatabase: on a dev server
// keeping its state in a file, a worker with encryption on applies a
// webhook and runs a sync, and a worker without encryption (its control)
// applies another webhook. The control's email is in the file; the
// encrypted worker's email, the webhook secret and the sync's cursors are
// not. The encrypted history still reads for a client with the key.
func TestEncryption_NothingReadableInTemporalsDatabase(t *testing.T) {
	ctx := context.Background()
	dbFile := filepath.Join(t.TempDir(), "temporal.db")
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: temporalCLI, DBFilename: dbFile, LogLevel: "error",
		ClientOptions: &client.Options{Namespace: "default", Logger: quietLogger()},
		ExtraArgs:     []string{"--search-attribute", "IntegrationName=Keyword", "--search-attribute", "SyncStatus=Keyword"},
		Stdout:        io.Discard, Stderr: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	bin := workerBinary(t)
	key := newKey(t)
	sealedEmail, plainEmail := uniqueName("sealed")+"@example.com", uniqueName("plain")+"@example.com"

	// worker runs a worker process on srv with the webhook receiver and
	// extra env, sends one event with email, and waits for it applied.
	worker := func(email string, extra ...string) (*stack, *workerProcess) {
		s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 31, Contacts: 150}, noWorker: true})
		name := uniqueName("sealed")
		dir := t.TempDir()
		writeIntegrationFile(t, dir, name, "events:\n  shards: 2\n")
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		env := s.workerEnv(append([]string{"TEMPORAL_ADDRESS=" + srv.FrontendHostPort(),
			"TETHER_CONFIG=" + webhookConfig(t, listen, name, "TEST_CRM_HOOK_SECRET"), "TETHER_INTEGRATIONS_DIR=" + dir,
			"TETHER_METRICS_LISTEN=", "TETHER_SCHEDULES_OWNER=" + name, "TEST_CRM_HOOK_SECRET=" + hookSecret}, extra...)...)
		w := s.startWorkerProcess(name, t.TempDir(), env, bin)
		waitPolling(t, w)
		h := &hooks{s: s, url: "http://" + listen, source: webhook.Source{Name: "crm"}, shards: 2}
		h.mustAccept(uniqueName("d"), webhookEvent(7, email))
		eventually(t, 60*time.Second, "the webhook applied", func() bool {
			return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE integration = $1`, name) == 1
		})
		if n := s.count(`SELECT count(*) FROM crm_contacts_yaml WHERE email = $1`, email); n != 1 {
			t.Fatalf("the webhook's contact is not in the table (%d rows)", n)
		}
		return s, w
	}

	s, w := worker(sealedEmail, "TETHER_ENCRYPTION_CURRENT=k1", codec.EnvPrefix+"K1="+key)
	if b, _ := os.ReadFile(w.logFile); !bytes.Contains(b, []byte("payloads encrypted")) || bytes.Contains(b, []byte(key)) {
		t.Fatalf("the worker does not say payloads are encrypted, or prints the key:\n%s", b)
	}
	// A sync through the encrypted worker, started by a client with the key.
	kr, err := codec.Load("k1", "", []string{codec.EnvPrefix + "K1=" + key})
	if err != nil {
		t.Fatal(err)
	}
	run, res := syncThrough(t, dialWith(t, srv.FrontendHostPort(), sealing(kr)), s.taskQueue)
	// A client without the key sees ciphertext, not the result.
	plain := dialWith(t, srv.FrontendHostPort(), client.Options{})
	var opaque datasync.Result
	if err := plain.GetWorkflow(ctx, run.GetID(), "").Get(ctx, &opaque); err == nil && opaque.Counts.Fetched != 0 {
		t.Errorf("a client without the key read the result: %+v", opaque)
	}
	cursor := res.To.Cursor
	_ = w.Stop(10 * time.Second)

	_, control := worker(plainEmail)
	_ = control.Stop(10 * time.Second)
	if err := srv.Stop(); err != nil {
		t.Logf("dev server stop: %v", err)
	}

	var db []byte
	for _, f := range []string{dbFile, dbFile + "-wal"} {
		b, _ := os.ReadFile(f)
		db = append(db, b...)
	}
	if !bytes.Contains(db, []byte(plainEmail)) {
		t.Fatalf("the control's email %s is not in the dev server's database (%d bytes): the search proves nothing", plainEmail, len(db))
	}
	for what, v := range map[string]string{"the webhook's email": sealedEmail, "the sync's cursor": cursor, "the webhook secret": hookSecret, "the key": key} {
		if v != "" && bytes.Contains(db, []byte(v)) {
			t.Errorf("%s (%q) is readable in the dev server's database", what, v)
		}
	}
	if strings.TrimSpace(cursor) == "" {
		t.Errorf("the sync recorded no cursor to look for")
	}
}

// TestEncryption_RunStartedUnderOneKeyFinishesUnderTheNext: a sync
// started while key a seals payloads is finished by a worker whose
// current key is b (a kept to open the run's history): its history holds
// payloads of both keys, and its result opens with them.
func TestEncryption_RunStartedUnderOneKeyFinishesUnderTheNext(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 33, Contacts: 8000}, noWorker: true})
	bin := workerBinary(t)
	ka, kb := newKey(t), newKey(t)
	slow := "TETHER_CONNECTIONS_CRM_RATE_LIMIT=2" // 8 pages at 2 requests/s: the run lasts
	a := s.startWorkerProcess("key-a", t.TempDir(), s.workerEnv(slow, "TETHER_ENCRYPTION_CURRENT=a", codec.EnvPrefix+"A="+ka), bin)
	waitPolling(t, a)

	both, err := codec.Load("b", "", []string{codec.EnvPrefix + "A=" + ka, codec.EnvPrefix + "B=" + kb})
	if err != nil {
		t.Fatal(err)
	}
	onlyA, _ := codec.Load("a", "", []string{codec.EnvPrefix + "A=" + ka})
	ctx := context.Background()
	starter := dialWith(t, devServer.FrontendHostPort(), sealing(onlyA))
	run, err := cli.StartSync(ctx, starter, s.taskQueue, datasync.Input{Integration: "crm-contacts", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the first batch committed under key a", func() bool {
		return s.count(`SELECT count(*) FROM tether_runs WHERE integration = 'crm-contacts' AND (counts->>'inserted')::int > 0`) > 0
	})
	_ = a.Stop(10 * time.Second)
	b := s.startWorkerProcess("key-b", t.TempDir(), s.workerEnv(slow, "TETHER_ENCRYPTION_CURRENT=b",
		codec.EnvPrefix+"A="+ka, codec.EnvPrefix+"B="+kb), bin)
	waitPolling(t, b)

	reader := dialWith(t, devServer.FrontendHostPort(), sealing(both))
	var res datasync.Result
	if err := reader.GetWorkflow(ctx, run.GetID(), "").Get(ctx, &res); err != nil || res.Status != progress.StatusCompleted || res.Counts.Fetched < 8000 {
		t.Fatalf("the run after the rotation: %+v, %v", res, err)
	}
	if n := s.count(`SELECT count(*) FROM crm_contacts`); n < 7000 {
		t.Errorf("%d contacts written, want the valid ones of 8000", n)
	}
	// Which keys sealed the run's history (the raw payloads' metadata).
	keys := map[string]int{}
	iter := devServer.Client().GetWorkflowHistory(ctx, run.GetID(), "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ev.Marshal()
		for _, id := range []string{"a", "b"} {
			keys[id] += bytes.Count(b, []byte(codec.MetaKeyID+"\x12\x01"+id))
		}
	}
	if keys["a"] == 0 || keys["b"] == 0 {
		t.Errorf("payloads sealed by key: %v, want some under a (before the rotation) and some under b (after)", keys)
	}
}
