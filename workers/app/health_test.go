package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/tests/pgtest"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/telemetry"
)

// probeClient fails a request that hangs (an endpoint must answer within
// ReadyCheckTimeout; this only keeps a broken one from hanging the test).
var probeClient = &http.Client{Timeout: 20 * time.Second}

// get GETs url with c (probeClient when nil), with header's name-value
// pairs, and returns the status and the body (0 and the error when there
// is no answer).
func get(t *testing.T, c *http.Client, url string, header ...string) (int, string) {
	t.Helper()
	s, b, _ := getTyped(t, c, url, header...)
	return s, b
}

// getTyped is get, with the answer's Content-Type.
func getTyped(t *testing.T, c *http.Client, url string, header ...string) (int, string, string) {
	t.Helper()
	if c == nil {
		c = probeClient
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error(), ""
	}
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

// expect GETs url and fails unless it answers status with the line body,
// as plain text (safe in any goroutine).
func expect(t *testing.T, c *http.Client, url string, status int, body string) {
	t.Helper()
	s, b, ct := getTyped(t, c, url)
	if s != status || b != body+"\n" {
		t.Errorf("GET %s: %d %q, want %d %q", url, s, b, status, body+"\n")
	}
	if s != 0 && !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET %s: Content-Type %q, want text/plain", url, ct)
	}
}

// metricsServer starts the worker's metrics server for cfg on a free
// loopback port; it stops with the test.
func metricsServer(t *testing.T, cfg config.Config, log *slog.Logger) *MetricsServer {
	t.Helper()
	cfg.Metrics.Listen = "127.0.0.1:0"
	reg, err := NewMetricsRegistry()
	if err != nil {
		t.Fatal(err)
	}
	lc := fxtest.NewLifecycle(t)
	m := NewMetricsServer(lc, cfg, reg, log)
	lc.RequireStart()
	t.Cleanup(lc.RequireStop)
	// First: a connection the client dialled and never used would hold
	// the server's graceful shutdown for 5 s.
	t.Cleanup(probeClient.CloseIdleConnections)
	return m
}

// TestHealthEndpoints_BesideMetricsAndWithoutItsToken: /healthz answers
// 200 throughout; /readyz 503 while starting, 200 once polling, 503 for
// good once the stop begins; neither asks for the token /metrics asks for.
func TestHealthEndpoints_BesideMetricsAndWithoutItsToken(t *testing.T) {
	var cfg config.Config
	cfg.Metrics.Token = "s3cr3t-token"
	m := metricsServer(t, cfg, discardLogger())
	base := "http://" + m.Addr()

	if s, _ := get(t, nil, base+"/metrics"); s != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", s)
	}
	if s, b := get(t, nil, base+"/metrics", "Authorization", "Bearer s3cr3t-token"); s != http.StatusOK || !strings.Contains(b, "go_goroutines") {
		t.Errorf("/metrics with the token: %d %.100q", s, b)
	}
	expect(t, nil, base+"/healthz", http.StatusOK, "ok")
	expect(t, nil, base+"/readyz", http.StatusServiceUnavailable, NotReadyStarting)

	m.Ready.Polling()
	expect(t, nil, base+"/readyz", http.StatusOK, "ok")
	expect(t, nil, base+"/healthz", http.StatusOK, "ok")
	// HEAD too (some probes and load balancers send it).
	if resp, err := probeClient.Head(base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	m.Ready.Stopping()
	expect(t, nil, base+"/readyz", http.StatusServiceUnavailable, NotReadyStopping)
	expect(t, nil, base+"/healthz", http.StatusOK, "ok")
	m.Ready.Polling() // a stop is for good
	expect(t, nil, base+"/readyz", http.StatusServiceUnavailable, NotReadyStopping)

	if resp, err := probeClient.Post(base+"/healthz", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %v %v, want 405", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestHealthEndpoints_OverHTTPS: with metrics.tls, the probes' paths are
// served over HTTPS on the same listener (probes need scheme: HTTPS).
func TestHealthEndpoints_OverHTTPS(t *testing.T) {
	var cfg config.Config
	cfg.Metrics.TLS.Cert, cfg.Metrics.TLS.Key = selfSigned(t)
	m := metricsServer(t, cfg, discardLogger())
	// As the kubelet does for an HTTPS probe: no verification.
	c := &http.Client{Timeout: probeClient.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	base := "https://" + m.Addr()
	expect(t, c, base+"/healthz", http.StatusOK, "ok")
	expect(t, c, base+"/readyz", http.StatusServiceUnavailable, NotReadyStarting)
	m.Ready.Polling()
	expect(t, c, base+"/readyz", http.StatusOK, "ok")
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadyz_DatabaseCheck: while the worker polls, /readyz pings the
// worker's PostgreSQL as NewWorker requires: 200 when it answers; 503
// with the reason (not the error, which is logged) when it refuses; 503
// "no answer" rather than a hang when it accepts connections and never
// answers, for every request at once; /healthz stays 200.
func TestReadyz_DatabaseCheck(t *testing.T) {
	for _, c := range []struct {
		name, dsn, want string
		logged          []string
	}{
		{name: "answers", dsn: pgtest.New(t).DSN, want: "ok"},
		{name: "refuses", dsn: "postgres://tether:pw-not-shown@" + closedPort(t) + "/tether?sslmode=disable",
			want: "database: not answering (the worker's log says why)", logged: []string{"database check failed", "connection refused"}},
		{name: "never answers", dsn: "postgres://tether:pw-not-shown@" + blackHole(t) + "/tether?sslmode=disable",
			want: "database: no answer within 1s", logged: []string{"database check failed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs := &syncBuffer{}
			m := metricsServer(t, config.Config{}, slog.New(slog.NewTextHandler(logs, nil)))
			db, err := postgres.Pool(c.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var cfg config.Config
			cfg.Database.URL = c.dsn
			// As the worker is built, without starting it (no Temporal).
			NewWorker(WorkerParams{Lifecycle: fxtest.NewLifecycle(t), Config: cfg, Store: store.New(db), Logger: discardLogger(), Health: m})
			base := "http://" + m.Addr()
			expect(t, nil, base+"/readyz", http.StatusServiceUnavailable, NotReadyStarting) // no ping before polling
			m.Ready.Polling()

			status := http.StatusServiceUnavailable
			if c.want == "ok" {
				status = http.StatusOK
			}
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() { expect(t, nil, base+"/readyz", status, c.want) })
			}
			expect(t, nil, base+"/healthz", http.StatusOK, "ok")
			wg.Wait()
			for _, want := range c.logged {
				eventually(t, "log line "+want, func() bool { return strings.Contains(logs.String(), want) })
			}
			if strings.Contains(logs.String(), "pw-not-shown") {
				t.Errorf("the log shows the database password:\n%s", logs)
			}
		})
	}
}

// TestReadyz_CheckThatIgnoresItsDeadline: a dependency check stuck past
// its context's deadline (a driver that ignores it) delays no answer:
// /readyz says "no answer" within ReadyCheckTimeout, requests meanwhile
// wait for the same check rather than pile up more, and /readyz is 200
// again once a check passes.
func TestReadyz_CheckThatIgnoresItsDeadline(t *testing.T) {
	m := metricsServer(t, config.Config{}, discardLogger())
	unblock := make(chan struct{})
	var calls sync.WaitGroup
	var n int
	var mu sync.Mutex
	m.Ready.Require("database", func(context.Context) error {
		mu.Lock()
		n++
		mu.Unlock()
		<-unblock // ignores its context
		return nil
	})
	m.Ready.Polling()
	base := "http://" + m.Addr()
	for range 3 {
		calls.Go(func() { expect(t, nil, base+"/readyz", http.StatusServiceUnavailable, "database: no answer within 1s") })
	}
	calls.Wait()
	expect(t, nil, base+"/readyz", http.StatusServiceUnavailable, "database: no answer within 1s")
	mu.Lock()
	if n != 1 {
		t.Errorf("%d checks ran at once, want the one in flight shared", n)
	}
	mu.Unlock()
	close(unblock)
	eventually(t, "/readyz 200 once the check passes", func() bool {
		s, _ := get(t, nil, base+"/readyz")
		return s == http.StatusOK
	})
	expect(t, nil, base+"/healthz", http.StatusOK, "ok")
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// blackHole is a loopback address that accepts connections and never
// answers on them (a database that hangs).
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestReadyz_FollowsTheWorkersLifecycle: the real worker (NewWorker) on a
// Temporal dev server and PostgreSQL, wired with the metrics server as the
// worker's module wires them. /readyz answers 503 "starting" while the
// app starts (held between the metrics server's start and the worker's),
// 200 once the worker polls, and 503 "stopping" as soon as its graceful
// stop begins, while a running activity holds the stop; /healthz answers
// 200 throughout.
func TestReadyz_FollowsTheWorkersLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal dev server")
	}
	cli := devstack.FindTemporalCLI()
	if cli == "" {
		t.Skip("no temporal binary (PATH, $(go env GOPATH)/bin or TEMPORAL_CLI); `make test` installs the pinned one")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{Namespace: "default", Logger: sdklog.NewStructuredLogger(discardLogger())},
		LogLevel:      "error",
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
	if err != nil {
		t.Fatalf("start the Temporal dev server with %s: %v", cli, err)
	}
	defer func() { _ = dev.Stop() }()

	schema := pgtest.New(t)
	if err := store.Migrate(ctx, schema.DB); err != nil {
		t.Fatal(err)
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	var cfg config.Config
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Database.URL = schema.DSN
	cfg.Temporal.Namespace = "default"
	cfg.Temporal.TaskQueue = "health-" + hex.EncodeToString(suffix[:])
	cfg.Temporal.ConnectTimeout = 30 * time.Second
	cfg.Worker.GracefulStop = 2 * time.Minute // the activity below holds the stop

	// The held start, and an activity that holds the stop until released.
	starting, proceed := make(chan struct{}), make(chan struct{})
	running, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func(r worker.Registry) {
		r.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
			ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 5 * time.Minute})
			return workflow.ExecuteActivity(ctx, "health-test-hold").Get(ctx, nil)
		}, workflow.RegisterOptions{Name: "health-test"})
		r.RegisterActivityWithOptions(func(ctx context.Context) error {
			once.Do(func() { close(running) })
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, activity.RegisterOptions{Name: "health-test-hold"})
	}
	var srv *MetricsServer
	a := fx.New(
		fx.NopLogger,
		fx.Supply(cfg, discardLogger(), store.New(schema.DB)),
		fx.Provide(
			func() client.Client { return dev.Client() },
			func() *telemetry.Metrics { return nil },
			func() *Activities { return NewActivities(ActivitiesParams{}) },
			NewMetricsRegistry, NewMetricsServer, NewWorker,
		),
		WithWorkflows(hold),
		// In the module's order: the metrics endpoint, then the worker.
		fx.Invoke(func(*MetricsServer) {}),
		fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.Hook{OnStart: func(ctx context.Context) error {
				close(starting)
				select {
				case <-proceed:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}})
		}),
		fx.Invoke(func(*Worker) {}),
		fx.Populate(&srv),
	)
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}

	started := make(chan error, 1)
	go func() { started <- a.Start(ctx) }()
	select {
	case <-starting:
	case err := <-started:
		t.Fatalf("start: %v", err)
	case <-ctx.Done():
		t.Fatal("the start did not reach the worker")
	}
	base := "http://" + srv.Addr()
	expect(t, nil, base+"/healthz", http.StatusOK, "ok")
	expect(t, nil, base+"/readyz", http.StatusServiceUnavailable, NotReadyStarting)
	close(proceed)
	if err := <-started; err != nil {
		t.Fatalf("start: %v", err)
	}
	// The worker's start hook has run: it polls.
	expect(t, nil, base+"/readyz", http.StatusOK, "ok")
	expect(t, nil, base+"/healthz", http.StatusOK, "ok")

	if _, err := dev.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: cfg.Temporal.TaskQueue}, "health-test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-running:
	case <-ctx.Done():
		t.Fatal("the worker did not run the activity")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop(ctx) }()
	eventually(t, "/readyz 503 once the stop begins", func() bool {
		s, b := get(t, nil, base+"/readyz")
		return s == http.StatusServiceUnavailable && b == NotReadyStopping+"\n"
	})
	select {
	case err := <-stopped:
		t.Fatalf("the stop ended (%v) while an activity ran: nothing held it", err)
	default:
	}
	expect(t, nil, base+"/healthz", http.StatusOK, "ok") // liveness through the graceful stop
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if resp, err := probeClient.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("/healthz answered %s after the stop", resp.Status)
	}
}

// TestModule_TheWorkerMarksTheMetricsServersReadiness: in the worker's
// module (as main builds it), the worker is wired to the metrics server
// whose /readyz it marks, with the database check (the dependency is
// optional, so only this would notice it missing).
func TestModule_TheWorkerMarksTheMetricsServersReadiness(t *testing.T) {
	var srv *MetricsServer
	a := New(loadConfig(t, ""), fx.Populate(&srv))
	if err := StartError(a.Err()); err != nil {
		t.Fatal(err)
	}
	srv.Ready.mu.Lock()
	defer srv.Ready.mu.Unlock()
	if len(srv.Ready.checks) != 1 || srv.Ready.checks[0].name != "database" {
		t.Errorf("/readyz checks %v, want the worker's database check: NewWorker did not get the metrics server", srv.Ready.checks)
	}
}
