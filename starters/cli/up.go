package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

// demoIntegrations are the syncs `tether up` runs.
var demoIntegrations = []string{"crm-companies", "crm-contacts"}

// cmdUp runs the whole development stack on this machine and a demo sync:
// the Temporal dev server with its Web UI (installing the pinned Temporal
// CLI when missing), the sandbox CRM API, a worker process, then the demo
// integrations with progress bars and a summary. It keeps the stack up
// until Ctrl-C unless --exit (or TETHER_UP_EXIT=1, or CI=true) is given.
func cmdUp(ctx context.Context, e *env, args []string) error {
	fs := e.flags("up")
	exit := fs.Bool("exit", os.Getenv("TETHER_UP_EXIT") == "1" || os.Getenv("CI") == "true", "exit after the demo (for scripts)")
	contacts := fs.Int("contacts", 20000, "sandbox contacts to seed (companies = contacts/10)")
	invalid := fs.Float64("invalid-rate", 0.02, "share of sandbox records that violate the schema (quarantined by the demo)")
	sandboxAddr := fs.String("sandbox-addr", getenv("TETHER_SANDBOX_ADDR", "127.0.0.1:8081"), "sandbox API listen address")
	uiPort := fs.Int("ui-port", 8233, "Temporal Web UI port")
	stateDir := fs.String("state-dir", ".tether", "where the stack keeps its database file, binaries and logs")
	schema := fs.String("schema", "tether_demo", "PostgreSQL schema for the demo's tables")
	keepData := fs.Bool("keep-data", false, "keep the demo schema's tables from an earlier `up` (default: start from an empty schema)")
	webhooksAddr := fs.String("webhooks-addr", getenv("TETHER_UP_WEBHOOKS_ADDR", "127.0.0.1:8090"), "where the worker receives the demo's signed webhooks")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	out := e.out
	dir, err := filepath.Abs(*stateDir)
	if err != nil {
		return err
	}
	logs := filepath.Join(dir, "logs")
	var started []*devstack.Process
	defer func() {
		for i := len(started) - 1; i >= 0; i-- {
			p := started[i]
			fmt.Fprintf(out, "stopping %s\n", p.Name)
			if err := p.Stop(20 * time.Second); err != nil {
				fmt.Fprintf(e.errOut, "%v\n", err)
			}
		}
	}()

	// PostgreSQL first: nothing works without it, and its error is the
	// most common one on a new machine.
	dsn, err := demoDatabase(ctx, e.databaseURL, *schema, !*keepData)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "✓ PostgreSQL     %s (schema %s)\n", postgres.RedactDSN(e.databaseURL), *schema)

	cli, err := devstack.EnsureTemporalCLI(ctx, out)
	if err != nil {
		return err
	}
	uiURL := e.uiURL
	if devstack.PortOpen(e.address) {
		fmt.Fprintf(out, "✓ Temporal       using the server already at %s\n", e.address)
	} else {
		_, port, err := net.SplitHostPort(e.address)
		if err != nil {
			return fmt.Errorf("--address %q: %w", e.address, err)
		}
		var p int
		fmt.Sscan(port, &p)
		srv, err := devstack.StartDevServer(ctx, devstack.DevServerOptions{
			CLI: cli, Port: p, UIPort: *uiPort, DBFile: filepath.Join(dir, "temporal.db"), LogFile: filepath.Join(logs, "temporal.log"),
		})
		if err != nil {
			return err
		}
		started = append(started, srv.Process)
		uiURL = strings.Replace(srv.UIURL, "127.0.0.1", "localhost", 1)
		fmt.Fprintf(out, "✓ Temporal       dev server at %s, Web UI %s (log %s)\n", srv.Address, uiURL, filepath.Join(logs, "temporal.log"))
	}

	sb, err := sandbox.New(sandbox.Options{Seed: 7, Contacts: *contacts, Faults: sandbox.Faults{InvalidRate: *invalid}})
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	ln, err := net.Listen("tcp", *sandboxAddr)
	if err != nil {
		return fmt.Errorf("sandbox API on %s: %w (is another `tether up` running? use --sandbox-addr)", *sandboxAddr, err)
	}
	hs := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	sandboxURL := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "✓ Sandbox API    %s (%d contacts, %d companies, %.0f%% schema-invalid)\n", sandboxURL, *contacts, max(1, *contacts/10), 100**invalid)

	moduleDir, err := moduleRoot()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "… building the worker")
	bin, err := devstack.BuildBinary(ctx, moduleDir, "./workers/cmd/worker", filepath.Join(dir, "bin"))
	if err != nil {
		return err
	}
	hook, err := newDemoWebhook(dir, *webhooksAddr)
	if err != nil {
		return err
	}
	w, err := devstack.StartProcess("worker", filepath.Join(logs, "worker.log"), []string{
		"TEMPORAL_ADDRESS=" + e.address,
		"TEMPORAL_NAMESPACE=" + e.namespace,
		"TETHER_TEMPORAL_TASK_QUEUE=" + e.taskQueue,
		"DATABASE_URL=" + dsn,
		"TETHER_SOURCES_CRM_BASE_URL=" + sandboxURL,
		"TETHER_CONFIG=" + hook.configFile,
		demoSecretEnv + "=" + hook.secret,
	}, bin)
	if err != nil {
		return err
	}
	started = append(started, w)
	if err := waitWorker(ctx, w, filepath.Join(logs, "worker.log")); err != nil {
		return err
	}
	fmt.Fprintf(out, "✓ Worker         pid %d, task queue %s (log %s)\n\n", w.Pid(), e.taskQueue, filepath.Join(logs, "worker.log"))

	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var outcomes []Outcome
	for _, name := range demoIntegrations {
		run, err := StartSync(ctx, c, e.taskQueue, datasync.Input{Integration: name, Trigger: "demo"})
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		total := *contacts
		if name == "crm-companies" {
			total = max(1, *contacts/10)
		}
		res, err := Watch(ctx, c, out, run.GetID(), total)
		outcomes = append(outcomes, Outcome{Result: res, Err: err, WorkflowID: run.GetID(), RunID: run.GetRunID()})
	}
	PrintSummary(out, outcomes, uiURL, e.namespace)
	if err := hook.demo(ctx, out, sb, dsn); err != nil {
		outcomes = append(outcomes, Outcome{Err: err, WorkflowID: "webhook demo"})
	}
	fmt.Fprintf(out, "\nAll runs of an integration in the Web UI: %s/namespaces/%s/workflows?query=%s\n",
		uiURL, e.namespace, "IntegrationName%3D%22crm-contacts%22")
	fmt.Fprintf(out, "Quarantined records: go run ./starters/cmd/tether quarantine --database-url '%s'\n", dsn)
	var failed error
	for _, o := range outcomes {
		if o.Err != nil {
			failed = errors.Join(failed, fmt.Errorf("%s: %w", o.WorkflowID, o.Err))
		}
	}
	if *exit {
		return failed
	}
	fmt.Fprintf(out, "\nThe stack is up: Web UI %s · sandbox %s · DATABASE_URL=%s\n", uiURL, sandboxURL, dsn)
	fmt.Fprintf(out, "Try: go run ./starters/cmd/tether start crm-contacts --watch   (in another terminal)\n")
	fmt.Fprintln(out, "Press Ctrl-C to stop everything.")
	select {
	case <-ctx.Done(): // Ctrl-C or SIGTERM
	case <-w.Done():
		return errors.New("the worker exited; see " + filepath.Join(logs, "worker.log"))
	}
	fmt.Fprintln(out)
	return nil
}

// demoDatabase checks PostgreSQL, creates the demo schema (emptied first
// when fresh) and returns a URL whose search_path is that schema.
func demoDatabase(ctx context.Context, base, schema string, fresh bool) (string, error) {
	db, err := postgres.Open(ctx, base)
	if err != nil {
		return "", fmt.Errorf("%w\n  set DATABASE_URL or --database-url to a PostgreSQL you can create a schema in", err)
	}
	defer db.Close()
	if fresh {
		if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+quoteIdent(schema)+` CASCADE`); err != nil {
			return "", fmt.Errorf("empty schema %s: %w", schema, err)
		}
	}
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(schema)); err != nil {
		return "", fmt.Errorf("create schema %s: %w", schema, err)
	}
	return postgres.WithSearchPath(base, schema)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// waitWorker waits until the worker logs that it polls, or fails with the
// tail of its log when it exits first.
func waitWorker(ctx context.Context, w *devstack.Process, logFile string) error {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if exited, _ := w.Exited(); exited {
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("the worker exited at start:\n%s", tail(string(b), 20))
		}
		if b, err := os.ReadFile(logFile); err == nil && strings.Contains(string(b), "worker polling") {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the worker did not start polling within 90s; see %s", logFile)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// moduleRoot is the directory of this module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run tether up from inside the repository (no go.mod found)")
	}
	return filepath.Dir(mod), nil
}
