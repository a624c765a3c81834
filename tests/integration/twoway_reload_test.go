package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/tetherflow/tether/starters/sandbox"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

// TestTwoWay_FilesReloadWhileTheWorkerRuns: a worker process follows the
// two-way files of its integrations directory as it does the one-way
// ones. A file added starts its integration; a file changed is used from
// the next cycle on (a field it now maps flows); a change that does not
// load is logged and the last good file keeps running; a file removed
// cancels its integration's workflow.
func TestTwoWay_FilesReloadWhileTheWorkerRuns(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Contacts: 10}, noWorker: true})
	for _, table := range []string{"accounts", "partners"} {
		mustExec(t, s, `CREATE TABLE `+table+` (id text PRIMARY KEY, email text NOT NULL, name text, plan text,
			updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz)`)
	}
	mustExec(t, s, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'ada@example.com', 'Ada', 'free')`)
	mustExec(t, s, `INSERT INTO partners (id, email, name, plan) VALUES ('par-1', 'pat@example.com', 'Pat', 'pro')`)
	accounts, partners := uniqueName("accounts-billing"), uniqueName("partners-billing")
	file := func(name, table, fields string) string {
		return fmt.Sprintf(`kind: two-way
name: %s
a:
  name: app
  postgres: {table: %s, key: id, updated_at: updated_at, deleted_at: deleted_at, fields: {%s}}
b:
  name: billing
  http: {base_url: %s, path: /v1/customers, fields: {%s}}
match: [email]
conflicts: {policy: last_writer_wins}
every: 1s
`, name, table, fields, s.url, fields)
	}
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		// Written beside, then renamed in: the watcher never sees half a file.
		tmp := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("accounts.yaml", file(accounts, "accounts", "email: email, name: name"))
	env := s.workerEnv("TETHER_INTEGRATIONS_DIR="+dir, "TETHER_WORKER_GRACEFUL_STOP=1s")
	w := s.startWorkerProcess("worker", t.TempDir(), env, workerBinary(t))
	customer := func(email string) (sandbox.Customer, bool) {
		for _, c := range s.sandbox.Customers() {
			if c.Email == email {
				return c, true
			}
		}
		return sandbox.Customer{}, false
	}
	eventually(t, time.Minute, "ada on billing", func() bool { _, ok := customer("ada@example.com"); return ok })

	// Not mapped yet: a plan edit stays in the table.
	mustExec(t, s, `UPDATE accounts SET plan = 'pro', name = 'Ada L', updated_at = clock_timestamp() WHERE id = 'acc-1'`)
	eventually(t, time.Minute, "ada's new name on billing", func() bool { c, _ := customer("ada@example.com"); return c.Name == "Ada L" })
	if c, _ := customer("ada@example.com"); c.Plan != "" {
		t.Fatalf("ada's plan reached billing (%q) though the file does not map it", c.Plan)
	}

	// A file added: its integration starts.
	write("partners.yaml", file(partners, "partners", "email: email, name: name, plan: plan"))
	eventually(t, time.Minute, "pat on billing", func() bool { c, ok := customer("pat@example.com"); return ok && c.Plan == "pro" })

	// A file changed: the plan is mapped from the next cycle on.
	write("accounts.yaml", file(accounts, "accounts", "email: email, name: name, plan: plan"))
	eventually(t, time.Minute, "ada's plan on billing", func() bool {
		// Touched until a cycle of the new file reads it.
		mustExec(t, s, `UPDATE accounts SET plan = 'enterprise', updated_at = clock_timestamp() WHERE id = 'acc-1'`)
		c, _ := customer("ada@example.com")
		return c.Plan == "enterprise"
	})

	// A change that does not load: logged, the last good file runs on.
	write("accounts.yaml", strings.Replace(file(accounts, "accounts", "email: email, name: name, plan: plan"), "every: 1s", "evry: 1s", 1))
	eventually(t, time.Minute, "the bad file logged", func() bool {
		return strings.Contains(w.logTail(200), "two-way integration files changed but do not load")
	})
	mustExec(t, s, `UPDATE accounts SET name = 'Ada Lovelace', updated_at = clock_timestamp() WHERE id = 'acc-1'`)
	eventually(t, time.Minute, "ada's name on billing under the last good file", func() bool {
		c, _ := customer("ada@example.com")
		return c.Name == "Ada Lovelace"
	})

	// A file removed (the bad one mended first: a directory that does not
	// load changes nothing): its workflow is cancelled.
	write("accounts.yaml", file(accounts, "accounts", "email: email, name: name, plan: plan"))
	if err := os.Remove(filepath.Join(dir, "partners.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "partners' workflow cancelled", func() bool {
		d, err := s.client.DescribeWorkflowExecution(context.Background(), twowaywf.WorkflowID(partners), "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_CANCELED
	})
	if d, err := s.client.DescribeWorkflowExecution(context.Background(), twowaywf.WorkflowID(accounts), ""); err != nil ||
		d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("accounts' workflow: %v, %v; want it running", d.GetWorkflowExecutionInfo().GetStatus(), err)
	}
}
