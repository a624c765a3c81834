package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/codec"
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
	o, err := parseUpFlags(e, args)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(o.stateDir)
	if err != nil {
		return err
	}
	s := &upStack{e: e, out: e.out, o: o, dir: dir, logs: filepath.Join(dir, "logs")}
	defer s.stop()

	// PostgreSQL first: nothing works without it, and its error is the
	// most common one on a new machine.
	if err := s.startDatabase(ctx); err != nil {
		return err
	}
	if err := s.startEncryption(ctx); err != nil {
		return err
	}
	if err := s.startTemporal(ctx); err != nil {
		return err
	}
	hs, err := s.startSandbox()
	if err != nil {
		return err
	}
	defer hs.Close()
	if err := s.startWorker(ctx); err != nil {
		return err
	}

	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	outcomes, err := s.runSyncs(ctx, c)
	if err != nil {
		return err
	}
	failed := s.summarize(ctx, outcomes)
	if o.exit {
		return failed
	}
	return s.wait(ctx)
}

// upOptions are the flags of `tether up`.
type upOptions struct {
	exit         bool
	contacts     int
	invalid      float64
	sandboxAddr  string
	uiPort       int
	stateDir     string
	schema       string
	keepData     bool
	webhooksAddr string
	encrypt      bool
	codecAddr    string
}

func parseUpFlags(e *env, args []string) (upOptions, error) {
	var o upOptions
	fs := e.flags("up")
	fs.BoolVar(&o.exit, "exit", os.Getenv("TETHER_UP_EXIT") == "1" || os.Getenv("CI") == "true", "exit after the demo (for scripts)")
	fs.IntVar(&o.contacts, "contacts", 20000, "sandbox contacts to seed (companies = contacts/10)")
	fs.Float64Var(&o.invalid, "invalid-rate", 0.02, "share of sandbox records that violate the schema (quarantined by the demo)")
	fs.StringVar(&o.sandboxAddr, "sandbox-addr", getenv("TETHER_SANDBOX_ADDR", "127.0.0.1:8081"), "sandbox API listen address")
	fs.IntVar(&o.uiPort, "ui-port", 8233, "Temporal Web UI port")
	fs.StringVar(&o.stateDir, "state-dir", ".tether", "where the stack keeps its database file, binaries and logs")
	fs.StringVar(&o.schema, "schema", "tether_demo", "PostgreSQL schema for the demo's tables")
	fs.BoolVar(&o.keepData, "keep-data", false, "keep the demo schema's tables from an earlier `up` (default: start from an empty schema)")
	fs.StringVar(&o.webhooksAddr, "webhooks-addr", getenv("TETHER_UP_WEBHOOKS_ADDR", "127.0.0.1:8090"), "where the worker receives the demo's signed webhooks")
	fs.BoolVar(&o.encrypt, "encrypt", os.Getenv("TETHER_UP_ENCRYPT") == "1" || os.Getenv("TETHER_ENCRYPTION_CURRENT") != "",
		"encrypt payloads (a demo key in STATE-DIR/keys unless TETHER_ENCRYPTION_* give keys) and serve a codec server for the Web UI")
	fs.StringVar(&o.codecAddr, "codec-addr", getenv("TETHER_UP_CODEC_ADDR", "127.0.0.1:8234"), "where the codec server listens with --encrypt")
	if _, err := parse(fs, args); err != nil {
		return upOptions{}, err
	}
	return o, nil
}

// upStack is the development stack `tether up` starts, step by step; each
// step reports its line and fills in what the later ones use.
type upStack struct {
	e    *env
	out  io.Writer
	o    upOptions
	dir  string // the state directory, absolute
	logs string

	started    []*devstack.Process // stopped in reverse order
	dsn        string              // the demo schema's database URL
	uiURL      string
	sb         *sandbox.Server
	sandboxURL string
	hook       *demoWebhook
	worker     *devstack.Process
	codecURL   string // the codec server, with --encrypt
}

// stop stops the processes the stack started, the last one first.
func (s *upStack) stop() {
	for i := len(s.started) - 1; i >= 0; i-- {
		p := s.started[i]
		fmt.Fprintf(s.out, "stopping %s\n", p.Name)
		if err := p.Stop(20 * time.Second); err != nil {
			fmt.Fprintf(s.e.errOut, "%v\n", err)
		}
	}
}

func (s *upStack) startDatabase(ctx context.Context) error {
	dsn, err := demoDatabase(ctx, s.e.databaseURL, s.o.schema, !s.o.keepData)
	if err != nil {
		return err
	}
	s.dsn = dsn
	fmt.Fprintf(s.out, "✓ PostgreSQL     %s (schema %s)\n", postgres.RedactDSN(s.e.databaseURL), s.o.schema)
	return nil
}

// startTemporal starts the Temporal dev server, unless one already listens
// at the address.
func (s *upStack) startTemporal(ctx context.Context) error {
	e := s.e
	cli, err := devstack.EnsureTemporalCLI(ctx, s.out)
	if err != nil {
		return err
	}
	s.uiURL = e.uiURL
	if devstack.PortOpen(e.address) {
		fmt.Fprintf(s.out, "✓ Temporal       using the server already at %s\n", e.address)
		if s.codecURL != "" {
			fmt.Fprintf(s.out, "  its Web UI decodes payloads once its Codec Server setting is %s\n", s.codecURL)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(e.address)
	if err != nil {
		return fmt.Errorf("--address %q: %w", e.address, err)
	}
	var p int
	fmt.Sscan(port, &p)
	srv, err := devstack.StartDevServer(ctx, devstack.DevServerOptions{
		CLI: cli, Port: p, UIPort: s.o.uiPort, DBFile: filepath.Join(s.dir, "temporal.db"), LogFile: filepath.Join(s.logs, "temporal.log"),
		UICodecEndpoint: s.codecURL,
	})
	if err != nil {
		return err
	}
	s.started = append(s.started, srv.Process)
	s.uiURL = strings.Replace(srv.UIURL, "127.0.0.1", "localhost", 1)
	fmt.Fprintf(s.out, "✓ Temporal       dev server at %s, Web UI %s (log %s)\n", srv.Address, s.uiURL, filepath.Join(s.logs, "temporal.log"))
	return nil
}

// startSandbox serves the sandbox CRM API; the caller closes the server.
func (s *upStack) startSandbox() (*http.Server, error) {
	sb, err := sandbox.New(sandbox.Options{Seed: 7, Contacts: s.o.contacts, Faults: sandbox.Faults{InvalidRate: s.o.invalid}})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	ln, err := net.Listen("tcp", s.o.sandboxAddr)
	if err != nil {
		return nil, fmt.Errorf("sandbox API on %s: %w (is another `tether up` running? use --sandbox-addr)", s.o.sandboxAddr, err)
	}
	hs := &http.Server{Handler: sb.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	s.sb = sb
	s.sandboxURL = "http://" + ln.Addr().String()
	fmt.Fprintf(s.out, "✓ Sandbox API    %s (%d contacts, %d companies, %.0f%% schema-invalid)\n", s.sandboxURL, s.o.contacts, max(1, s.o.contacts/10), 100*s.o.invalid)
	return hs, nil
}

// startWorker builds the worker, writes its configuration with the demo
// webhook source, starts it and waits until it polls.
func (s *upStack) startWorker(ctx context.Context) error {
	e := s.e
	moduleDir, err := moduleRoot()
	if err != nil {
		return err
	}
	fmt.Fprintln(s.out, "… building the worker")
	bin, err := devstack.BuildBinary(ctx, moduleDir, "./workers/cmd/worker", filepath.Join(s.dir, "bin"))
	if err != nil {
		return err
	}
	s.hook, err = newDemoWebhook(s.dir, s.o.webhooksAddr)
	if err != nil {
		return err
	}
	w, err := devstack.StartProcess("worker", filepath.Join(s.logs, "worker.log"), []string{
		"TEMPORAL_ADDRESS=" + e.address,
		"TEMPORAL_NAMESPACE=" + e.namespace,
		"TETHER_TEMPORAL_TASK_QUEUE=" + e.taskQueue,
		"DATABASE_URL=" + s.dsn,
		"TETHER_CONNECTIONS_CRM_BASE_URL=" + s.sandboxURL,
		"TETHER_CONFIG=" + s.hook.configFile,
		demoSecretEnv + "=" + s.hook.secret,
	}, bin)
	if err != nil {
		return err
	}
	s.started = append(s.started, w)
	s.worker = w
	if err := waitWorker(ctx, w, filepath.Join(s.logs, "worker.log")); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "✓ Worker         pid %d, task queue %s (log %s)\n\n", w.Pid(), e.taskQueue, filepath.Join(s.logs, "worker.log"))
	return nil
}

// runSyncs runs the demo integrations one after the other with progress
// bars. The error is only a run that could not start; how each run ended
// is in its Outcome.
func (s *upStack) runSyncs(ctx context.Context, c client.Client) ([]Outcome, error) {
	var outcomes []Outcome
	for _, name := range demoIntegrations {
		run, err := StartSync(ctx, c, s.e.taskQueue, datasync.Input{Integration: name, Trigger: "demo"})
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		total := s.o.contacts
		if name == "crm-companies" {
			total = max(1, s.o.contacts/10)
		}
		res, err := Watch(ctx, c, s.out, run.GetID(), total)
		outcomes = append(outcomes, Outcome{Result: res, Err: err, WorkflowID: run.GetID(), RunID: run.GetRunID()})
	}
	return outcomes, nil
}

// summarize prints the demo runs' summary, runs the webhook demo and says
// where to look next. It returns every failure, joined.
func (s *upStack) summarize(ctx context.Context, outcomes []Outcome) error {
	PrintSummary(s.out, outcomes, s.uiURL, s.e.namespace)
	if err := s.hook.demo(ctx, s.out, s.sb, s.dsn); err != nil {
		outcomes = append(outcomes, Outcome{Err: err, WorkflowID: "webhook demo"})
	}
	fmt.Fprintf(s.out, "\nAll runs of an integration in the Web UI: %s/namespaces/%s/workflows?query=%s\n",
		s.uiURL, s.e.namespace, "IntegrationName%3D%22crm-contacts%22")
	fmt.Fprintf(s.out, "Quarantined records: go run ./starters/cmd/tether quarantine --database-url '%s'\n", s.dsn)
	var failed error
	for _, o := range outcomes {
		if o.Err != nil {
			failed = errors.Join(failed, fmt.Errorf("%s: %w", o.WorkflowID, o.Err))
		}
	}
	return failed
}

// wait keeps the stack up until Ctrl-C, or fails when the worker exits.
func (s *upStack) wait(ctx context.Context) error {
	fmt.Fprintf(s.out, "\nThe stack is up: Web UI %s · sandbox %s · DATABASE_URL=%s\n", s.uiURL, s.sandboxURL, s.dsn)
	fmt.Fprintf(s.out, "Try: go run ./starters/cmd/tether start crm-contacts --watch   (in another terminal)\n")
	fmt.Fprintln(s.out, "Press Ctrl-C to stop everything.")
	select {
	case <-ctx.Done(): // Ctrl-C or SIGTERM
	case <-s.worker.Done():
		return errors.New("the worker exited; see " + filepath.Join(s.logs, "worker.log"))
	}
	fmt.Fprintln(s.out)
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

// demoKeyID names the key `tether up --encrypt` makes when the
// environment gives none.
const demoKeyID = "demo"

// startEncryption, with --encrypt, makes sure the stack has keys (the
// environment's, or a demo key kept in STATE-DIR/keys), gives them to the
// worker and the CLI through the environment, and serves the codec server
// the dev server's Web UI decodes with.
func (s *upStack) startEncryption(ctx context.Context) error {
	if !s.o.encrypt {
		return nil
	}
	if os.Getenv("TETHER_ENCRYPTION_CURRENT") == "" {
		dir := filepath.Join(s.dir, "keys")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		file := filepath.Join(dir, demoKeyID)
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			raw := make([]byte, codec.KeySize)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600); err != nil {
				return err
			}
		}
		for k, v := range map[string]string{"TETHER_ENCRYPTION_CURRENT": demoKeyID, "TETHER_ENCRYPTION_KEYS_DIR": dir} {
			if err := os.Setenv(k, v); err != nil {
				return err
			}
		}
	}
	origins := []string{fmt.Sprintf("http://localhost:%d", s.o.uiPort), fmt.Sprintf("http://127.0.0.1:%d", s.o.uiPort)}
	addr, _, err := StartCodecServer(ctx, CodecServerOptions{Listen: s.o.codecAddr, Origins: origins, Token: os.Getenv("TETHER_CODEC_TOKEN")})
	if err != nil {
		return err
	}
	s.codecURL = "http://" + addr
	fmt.Fprintf(s.out, "✓ Encryption     payloads sealed with key %q; codec server %s for the Web UI (keys: %s)\n",
		os.Getenv("TETHER_ENCRYPTION_CURRENT"), s.codecURL, firstNonEmpty(os.Getenv("TETHER_ENCRYPTION_KEYS_DIR"), "TETHER_ENCRYPTION_KEY_*"))
	if dir := os.Getenv("TETHER_ENCRYPTION_KEYS_DIR"); dir != "" {
		fmt.Fprintf(s.out, "  for tether watch/start in another shell: export TETHER_ENCRYPTION_CURRENT=%s TETHER_ENCRYPTION_KEYS_DIR=%s\n",
			os.Getenv("TETHER_ENCRYPTION_CURRENT"), dir)
	}
	return nil
}
