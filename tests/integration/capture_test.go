package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/workflows/capture"
)

// peopleCapture is an integration file capturing table people of the
// test schema into people_copy, deletes removing the row.
func peopleCapture(name string) string {
	return fmt.Sprintf(`name: %s
source:
  postgres:
    dsn: {env: DATABASE_URL}
    table: people
    key: [id]
    cursor_column: updated_at
schema: contacts-table.schema.json
key_field: id
cursor_field: updated_at
mapping:
  - {to: id, from: id, cast: int, required: true}
  - {to: email, from: email, normalize: [email], required: true}
  - {to: full_name, from: full_name}
  - {to: score, from: score, cast: int}
  - {to: updated_at, from: updated_at, cast: timestamp, required: true}
destination:
  postgres:
    name: people_copy
    columns:
      - {name: id, type: bigint, not_null: true}
      - {name: email, type: text, not_null: true}
      - {name: full_name, type: text}
      - {name: score, type: integer}
      - {name: updated_at, type: timestamptz}
    key: [id]
    version_column: updated_at
events:
  capture: true
`, name)
}

// peopleDiff counts the rows that differ between people and people_copy.
func (s *stack) peopleDiff() int {
	return s.count(`
SELECT count(*) FROM people p FULL JOIN people_copy c USING (id)
WHERE p.id IS NULL OR c.id IS NULL
   OR (c.email, c.full_name, c.score, c.updated_at) IS DISTINCT FROM (lower(trim(p.email)), p.full_name, p.score, p.updated_at)`)
}

func TestCapture_InsertsUpdatesDeletesSurviveAWorkerKilledBetweenReadAndApply(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	ctx := context.Background()
	if _, err := s.schema.DB.Exec(`
CREATE TABLE people (id bigint PRIMARY KEY, email text NOT NULL, full_name text, score integer, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE people_copy (id bigint PRIMARY KEY, email text NOT NULL, full_name text, score integer, updated_at timestamptz);`); err != nil {
		t.Fatal(err)
	}
	name := uniqueName("capture")
	dir, logDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(peopleCapture(name)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := workerBinary(t)
	env := s.workerEnv("TETHER_INTEGRATIONS_DIR="+dir, "TETHER_METRICS_LISTEN=", "TETHER_SCHEDULES_OWNER="+name)
	w1 := s.startWorkerProcess("worker-1", logDir, env, bin)
	outbox := func() int {
		return s.count(`SELECT count(*) FROM tether_capture.` + `"` + name + `"`)
	}
	wait := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; outbox %d, diff %d, copy %d; capture: %s; worker log:\n%s", what, within, outbox(), s.peopleDiff(), s.count(`SELECT count(*) FROM people_copy`), captureProgress(s, name), w1.logTail(40))
			}
		}
	}
	// The worker installs the capture at start.
	wait("capture installed", 60*time.Second, func() bool {
		return s.count(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal`) == 1
	})
	t.Cleanup(func() { _, _ = s.schema.DB.Exec(`DROP TABLE IF EXISTS tether_capture."` + name + `"`) })

	// Inserts, updates (one changes the key), deletes, some in one transaction.
	if _, err := s.schema.DB.Exec(`
INSERT INTO people (id, email, full_name, score) SELECT g, ' P' || g || '@Example.com', 'Person ' || g, g % 90 FROM generate_series(1, 200) g;
UPDATE people SET score = score + 5, updated_at = clock_timestamp() WHERE id % 10 = 0;
DELETE FROM people WHERE id % 25 = 0;
UPDATE people SET id = 1001, updated_at = clock_timestamp() WHERE id = 7;`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("quarantined: %v", s.quarantinedKeys(name))
		}
	})
	wait("first changes applied", 30*time.Second, func() bool { return outbox() == 0 && s.peopleDiff() == 0 })
	if n := s.count(`SELECT count(*) FROM people_copy`); n != 192 {
		t.Fatalf("people_copy has %d rows, want 192 (200 - 8 deleted)", n)
	}

	// Hold the destination table locked, so the next apply blocks after
	// its read; then kill the worker while it waits.
	lockTx, err := s.schema.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockTx.Exec(`LOCK TABLE people_copy IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.schema.DB.Exec(`
UPDATE people SET full_name = full_name || ' (renamed)', updated_at = clock_timestamp() WHERE id <= 50;
INSERT INTO people (id, email, full_name, score) SELECT g, 'n' || g || '@example.com', 'New ' || g, 1 FROM generate_series(300, 340) g;
DELETE FROM people WHERE id BETWEEN 60 AND 64;`); err != nil {
		t.Fatal(err)
	}
	// The apply is waiting for the lock: its read is done, nothing applied.
	wait("apply blocked on the destination lock", 30*time.Second, func() bool {
		return s.count(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND query ILIKE '%people_copy%'`) > 0
	})
	w1.Kill()
	<-w1.Done()
	if err := lockTx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The changes read and not applied are still in the outbox.
	if n := outbox(); n != 93 {
		t.Fatalf("after the kill the outbox holds %d changes, want the 93 not applied (47 renamed, 41 inserted, 5 deleted)", n)
	}
	// Another worker takes over once the killed one's heartbeat times out.
	w2 := s.startWorkerProcess("worker-2", logDir, env, bin)
	w1 = w2
	wait("changes applied by the second worker", 90*time.Second, func() bool { return outbox() == 0 && s.peopleDiff() == 0 })
	// Row by row: every source row is in the copy as it is now, and
	// nothing else.
	if d := s.peopleDiff(); d != 0 {
		t.Fatalf("%d rows differ", d)
	}
	if n := s.count(`SELECT count(*) FROM people_copy WHERE full_name LIKE '%(renamed)'`); n != 47 { // 1..50 without 7 (now 1001) and 25, 50 (deleted)
		t.Errorf("%d renamed rows in the copy, want 47", n)
	}

	// The lag is visible: the progress query of the capture workflow.
	resp, err := s.client.QueryWorkflow(ctx, capture.WorkflowID(name), "", capture.QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var p capture.Progress
	if err := resp.Get(&p); err != nil {
		t.Fatal(err)
	}
	if p.Integration != name || p.Status != "capturing" {
		t.Errorf("progress %+v", p)
	}
	// And `tether capture` shows it (it reads the integration files as the
	// worker does).
	t.Setenv("DATABASE_URL", s.schema.DSN)
	var out, errOut bytes.Buffer
	if code := cli.Run(ctx, []string{"capture", name, "--dir", dir, "--address", devServer.FrontendHostPort()}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), name+": capturing") || !strings.Contains(out.String(), "outbox: 0 changes waiting") {
		t.Errorf("tether capture: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	// With the running capture's live figures, from its heartbeat.
	wait("tether capture shows the live figures", 30*time.Second, func() bool {
		out.Reset()
		code := cli.Run(ctx, []string{"capture", name, "--dir", dir, "--address", devServer.FrontendHostPort()}, &out, &errOut)
		return code == 0 && strings.Contains(out.String(), "0 waiting, lag 0s (outbox empty)") && strings.Contains(out.String(), "now (heartbeat")
	})

	// Removing the integration drops the trigger, the function and the
	// outbox with its changes.
	if err := os.Remove(filepath.Join(dir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
	wait("capture removed", 60*time.Second, func() bool {
		return s.count(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal`) == 0 &&
			s.count(`SELECT count(*) FROM pg_proc WHERE proname = 'tether_capture_' || $1`, name) == 0 &&
			s.count(`SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tether_capture' AND table_name = $1`, name) == 0
	})
	if _, err := s.schema.DB.Exec(`INSERT INTO people (id, email) VALUES (9999, 'after@example.com')`); err != nil {
		t.Fatalf("the source table takes writes after removal: %v", err)
	}
	// The capture workflow completed after removing itself.
	run := s.client.GetWorkflow(ctx, capture.WorkflowID(name), "")
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("capture workflow after removal: %v", err)
	}
	s.record(capture.WorkflowID(name)) // replay test data (workflows/capture)
}

// captureProgress describes the capture workflow's progress, for failure
// messages.
func captureProgress(s *stack, name string) string {
	resp, err := s.client.QueryWorkflow(context.Background(), capture.WorkflowID(name), "", capture.QueryProgress)
	if err != nil {
		return err.Error()
	}
	var p capture.Progress
	if err := resp.Get(&p); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%+v", p)
}
