package compose

// The deployment beyond one machine (docs/deploy.md): docker-compose.yml's
// Temporal schema and namespace one-shots, its Prometheus scraping every
// worker replica with the alert rules, and the Kubernetes manifests of
// docs/deploy/, each checked against what the worker's code reads, serves
// and waits for. Nothing here runs Docker or Kubernetes.

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/contrib/envconfig"
	"go.uber.org/fx/fxtest"
	"go.yaml.in/yaml/v3"

	"github.com/tetherflow/tether/tests/tooltest"
	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/codec"
	"github.com/tetherflow/tether/workers/config"
)

const (
	// root is the repository, from this package's directory.
	root = "../.."
	// The files checked, relative to root.
	alertRules    = "workers/prometheus/alerts.yml"
	workerMain    = "workers/cmd/worker/main.go"
	workerDocker  = "workers/Dockerfile"
	k8sWorker     = "docs/deploy/worker.yaml"
	k8sPodMonitor = "docs/deploy/podmonitor.yaml"
	deployDoc     = "docs/deploy.md"

	// temporalSchemaDir is where the admin-tools image keeps the
	// versioned PostgreSQL schemas of its server version.
	temporalSchemaDir = "/etc/temporal/schema/postgresql/v12"
)

// ---- what the worker reads ----

// readsEnv reports whether the worker reads the environment variable
// name: a key of its configuration (config.ReadsEnv), a variable of the
// Temporal environment configuration that changes the connection it makes
// (contrib/envconfig, as config.Temporal.Connection loads it), an
// encryption key (codec.EnvPrefix), one its main reads itself, or one of
// the Go runtime's memory settings (GOGC: app.TuneGC leaves the worker's
// default to it; GOMEMLIMIT).
func readsEnv(t *testing.T, name string) bool {
	t.Helper()
	if config.ReadsEnv(name) || temporalEnvRead(t, name) || name == "GOGC" || name == "GOMEMLIMIT" {
		return true
	}
	if id, ok := strings.CutPrefix(name, codec.EnvPrefix); ok && id != "" {
		return true
	}
	return slices.Contains(mainReads(t), name)
}

// envMap is an envconfig.EnvLookup over a map.
type envMap map[string]string

func (e envMap) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e envMap) LookupEnv(k string) (string, bool) { v, ok := e[k]; return v, ok }

// temporalEnvRead reports whether setting name changes the Temporal
// connection contrib/envconfig loads: its variables (TEMPORAL_ADDRESS,
// TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_GRPC_META_*, …) and the file it
// reads the profile from (TEMPORAL_CONFIG_FILE).
func temporalEnvRead(t *testing.T, name string) bool {
	t.Helper()
	load := func(env envMap, file bool) envconfig.ClientConfigProfile {
		p, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{DisableFile: !file, EnvLookup: env})
		if err != nil {
			return envconfig.ClientConfigProfile{Address: "error: " + err.Error()}
		}
		return p
	}
	if !reflect.DeepEqual(load(envMap{}, false), load(envMap{name: "true"}, false)) {
		return true
	}
	toml := filepath.Join(t.TempDir(), "temporal.toml")
	if err := os.WriteFile(toml, []byte("[profile.default]\naddress = \"from-the-file:7233\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return load(envMap{name: toml}, true).Address == "from-the-file:7233"
}

// mainReads lists the variables the worker's main reads by name.
func mainReads(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, workerMain))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`os\.(?:Getenv|LookupEnv)\("([A-Z0-9_]+)"\)`).FindAllStringSubmatch(string(b), -1) {
		names = append(names, m[1])
	}
	return names
}

// loadConfig is the worker's configuration in environment env, as the
// worker loads it; the test fails when the worker would refuse it.
func loadConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Load("")
	if err != nil {
		t.Fatalf("the worker would refuse this environment: %v", err)
	}
	return cfg
}

// workerApp is the worker application of cfg as main builds it (not
// started: nothing is reached), for its start and stop bounds.
func workerApp(t *testing.T, cfg config.Config) interface {
	StartTimeout() time.Duration
	StopTimeout() time.Duration
} {
	t.Helper()
	a := app.New(cfg)
	if err := a.Err(); err != nil {
		t.Fatalf("the worker would not build: %v", app.StartError(err))
	}
	return a
}

// metricsStatus serves cfg's metrics endpoint as the worker does (on a
// free loopback port, with cfg's token) and returns the status of a GET of
// path: what a scrape of that path gets.
func metricsStatus(t *testing.T, cfg config.Config, path string) int {
	t.Helper()
	m, stop := serveMetrics(t, cfg)
	defer stop()
	resp, err := http.Get("http://" + m.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// serveMetrics starts cfg's metrics endpoint as the worker does, on a
// free loopback port; stop stops it.
func serveMetrics(t *testing.T, cfg config.Config) (m *app.MetricsServer, stop func()) {
	t.Helper()
	cfg.Metrics.Listen = "127.0.0.1:0"
	reg, err := app.NewMetricsRegistry()
	if err != nil {
		t.Fatal(err)
	}
	lc := fxtest.NewLifecycle(t)
	m = app.NewMetricsServer(lc, cfg, reg, slog.New(slog.DiscardHandler))
	lc.RequireStart()
	return m, lc.RequireStop
}

// lifecycleStatus is what a path answers while the worker starts (before
// it polls), while it polls, and once its graceful stop has begun.
type lifecycleStatus [3]int

// probeStatus serves cfg's metrics endpoint as the worker does (on a free
// loopback port, with cfg's token, without a database to check) and
// returns the status of a GET of path, without a token, at each step of
// the worker's lifecycle as the worker marks it (NewWorker): what a
// kubelet's probe of that path gets.
func probeStatus(t *testing.T, cfg config.Config, path string) lifecycleStatus {
	t.Helper()
	m, stop := serveMetrics(t, cfg)
	defer stop()
	c := &http.Client{Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	var out lifecycleStatus
	for i, step := range []func(){func() {}, m.Ready.Polling, m.Ready.Stopping} {
		step()
		resp, err := c.Get("http://" + m.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out[i] = resp.StatusCode
	}
	return out
}

// listensOnEveryInterface reports whether a host:port listen address is
// reachable from other containers or pods.
func listensOnEveryInterface(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	return err == nil && (host == "" || host == "0.0.0.0" || host == "::")
}

// ---- docker-compose.yml ----

// composeWorkerConfig is the configuration a worker replica of the compose
// file runs with.
func composeWorkerConfig(t *testing.T, f composeFile) config.Config {
	t.Helper()
	return loadConfig(t, f.Services["worker"].Environment)
}

// dependsOn returns the services s waits for, with the condition.
func dependsOn(t *testing.T, s service) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch s.DependsOn.Kind {
	case 0:
	case yaml.SequenceNode:
		var names []string
		if err := s.DependsOn.Decode(&names); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			out[n] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := s.DependsOn.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for n, c := range m {
			out[n] = cmp.Or(c.Condition, "service_started")
		}
	default:
		t.Fatalf("depends_on: unexpected %v", s.DependsOn.Kind)
	}
	return out
}

// script is the shell script a one-shot service runs (entrypoint sh -c,
// the script as the command), as the shell sees it ($$ is compose's $).
func script(t *testing.T, name string, s service) string {
	t.Helper()
	if len(s.Entrypoint) != 2 || s.Entrypoint[1] != "-c" || !strings.HasSuffix(s.Entrypoint[0], "sh") || len(s.Command) != 1 {
		t.Fatalf("%s: want entrypoint [/bin/sh, -c] and the script as its one command, got %v %v", name, s.Entrypoint, s.Command)
	}
	return strings.ReplaceAll(s.Command[0], "$$", "$")
}

// lines are a script's commands, one a line, with their spaces normalised.
func lines(sc string) []string {
	var out []string
	for _, l := range strings.Split(sc, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func TestCompose_NoServiceUsesTheDeprecatedAutoSetupImage(t *testing.T) {
	for name, s := range load(t).Services {
		if strings.Contains(s.Image, "temporalio/auto-setup") {
			t.Errorf("%s uses %s: auto-setup is deprecated and no longer built; set the schema up with admin-tools", name, s.Image)
		}
	}
}

func TestCompose_EveryDependencyIsAServiceAndTheyStartInOrder(t *testing.T) {
	f := load(t)
	deps := map[string]map[string]string{}
	for name, s := range f.Services {
		deps[name] = dependsOn(t, s)
		for d := range deps[name] {
			if _, ok := f.Services[d]; !ok {
				t.Errorf("%s depends on %s, which is no service", name, d)
			}
		}
	}
	// No cycle: compose would refuse to start.
	state := map[string]int{}
	var visit func(string, []string)
	visit = func(n string, stack []string) {
		switch state[n] {
		case 1:
			t.Fatalf("depends_on cycle: %s", strings.Join(append(stack, n), " → "))
		case 2:
			return
		}
		state[n] = 1
		for d := range deps[n] {
			visit(d, append(stack, n))
		}
		state[n] = 2
	}
	for n := range deps {
		visit(n, nil)
	}
	// The chain: PostgreSQL healthy → schema job exits 0 → server healthy
	// → namespace job exits 0 → workers.
	for _, w := range []struct{ service, on, condition string }{
		{"temporal-schema", "postgresql", "service_healthy"},
		{"temporal", "temporal-schema", "service_completed_successfully"},
		{"temporal-create-namespace", "temporal", "service_healthy"},
		{"temporal-ui", "temporal", "service_healthy"},
		{"worker", "temporal-create-namespace", "service_completed_successfully"},
		{"worker", "postgresql", "service_healthy"},
	} {
		if got := deps[w.service][w.on]; got != w.condition {
			t.Errorf("%s waits for %s with %q, want %q", w.service, w.on, got, w.condition)
		}
	}
}

// TestCompose_SchemaJobSetsUpWhatTheServerUses: the one-shot creates and
// migrates, with the schemas of its image, the two databases the server's
// configuration template names, on the PostgreSQL and with the
// credentials the server uses, before the server starts.
func TestCompose_SchemaJobSetsUpWhatTheServerUses(t *testing.T) {
	f := load(t)
	job, srv, pg := f.Services["temporal-schema"], f.Services["temporal"].Environment, f.Services["postgresql"].Environment
	env := job.Environment
	for _, c := range []struct{ what, job, server string }{
		{"plugin", env["SQL_PLUGIN"], srv["DB"]},
		{"host", env["SQL_HOST"], srv["POSTGRES_SEEDS"]},
		{"port", env["SQL_PORT"], srv["DB_PORT"]},
		{"user", env["SQL_USER"], srv["POSTGRES_USER"]},
		{"password", env["SQL_PASSWORD"], srv["POSTGRES_PWD"]},
	} {
		if c.job == "" || c.job != c.server {
			t.Errorf("schema job's %s %q, server's %q", c.what, c.job, c.server)
		}
	}
	if srv["DB"] != "postgres12" {
		t.Errorf("server DB %q: the schema job applies %s", srv["DB"], temporalSchemaDir)
	}
	if _, ok := f.Services[srv["POSTGRES_SEEDS"]]; !ok {
		t.Errorf("server POSTGRES_SEEDS %q is no service", srv["POSTGRES_SEEDS"])
	}
	if srv["POSTGRES_USER"] != pg["POSTGRES_USER"] || srv["POSTGRES_PWD"] != pg["POSTGRES_PASSWORD"] {
		t.Errorf("server credentials %s/%s are not the postgresql service's", srv["POSTGRES_USER"], srv["POSTGRES_PWD"])
	}
	if srv["BIND_ON_IP"] != "0.0.0.0" {
		t.Errorf("server BIND_ON_IP %q: the other containers and its health check reach it on every interface", srv["BIND_ON_IP"])
	}
	got := lines(script(t, "temporal-schema", job))
	if !slices.Contains(got, "set -eu") {
		t.Errorf("schema job does not stop at the first failure (set -eu): %q", got)
	}
	// The server's databases: its template's defaults unless set.
	dbs := map[string]string{cmp.Or(srv["DBNAME"], "temporal"): "temporal", cmp.Or(srv["VISIBILITY_DBNAME"], "temporal_visibility"): "visibility"}
	for db, schema := range dbs {
		want := []string{
			"temporal-sql-tool --db " + db + " create",
			"temporal-sql-tool --db " + db + " setup-schema -v 0.0",
			"temporal-sql-tool --db " + db + " update-schema -d " + temporalSchemaDir + "/" + schema + "/versioned",
		}
		last := -1
		for _, w := range want {
			i := slices.Index(got, w)
			if i < 0 {
				t.Errorf("schema job does not run %q", w)
				continue
			}
			if i < last {
				t.Errorf("schema job runs %q out of order", w)
			}
			last = i
		}
	}
}

// TestCompose_NamespaceJobMakesWhatTheWorkersNeed: the namespace the
// workers use exists, on the server they call, with the search
// attributes the workflows set, before a worker starts (a worker checks the
// namespace at start and exits without it).
func TestCompose_NamespaceJobMakesWhatTheWorkersNeed(t *testing.T) {
	f := load(t)
	cfg := composeWorkerConfig(t, f)
	job := f.Services["temporal-create-namespace"]
	if job.Environment["TEMPORAL_ADDRESS"] != cfg.Temporal.Address {
		t.Errorf("namespace job calls %q, the workers %q", job.Environment["TEMPORAL_ADDRESS"], cfg.Temporal.Address)
	}
	sc := script(t, "temporal-create-namespace", job)
	if !strings.Contains(sc, "temporal operator namespace create --namespace "+cfg.Temporal.Namespace+"\n") {
		t.Errorf("namespace job does not create the workers' namespace %q:\n%s", cfg.Temporal.Namespace, sc)
	}
	if !strings.Contains(sc, "temporal operator cluster health") {
		t.Errorf("namespace job does not wait for the server to serve")
	}
	made := map[string]string{}
	for _, l := range lines(sc) {
		if !strings.HasPrefix(l, "temporal operator search-attribute create") {
			continue
		}
		if !strings.Contains(l, "--namespace "+cfg.Temporal.Namespace+" ") {
			t.Errorf("search attributes made in another namespace: %s", l)
		}
		fs := strings.Fields(l)
		var name string
		for i := 0; i+1 < len(fs); i++ {
			switch fs[i] {
			case "--name":
				name = fs[i+1]
			case "--type":
				made[name] = fs[i+1]
			}
		}
	}
	want := map[string]string{}
	for name, typ := range app.SearchAttributes {
		want[name] = typ.String()
	}
	if !reflect.DeepEqual(made, want) {
		t.Errorf("namespace job makes search attributes %v, the workflows set %v", made, want)
	}
}

func TestCompose_WorkerStopsWithinItsGracePeriod(t *testing.T) {
	f := load(t)
	a := workerApp(t, composeWorkerConfig(t, f))
	grace, err := time.ParseDuration(f.Services["worker"].StopGracePeriod)
	if err != nil {
		t.Fatalf("worker stop_grace_period: %v (Docker's default, 10 s, is shorter than the worker's stop)", err)
	}
	if grace < a.StopTimeout() {
		t.Errorf("worker stop_grace_period %s is shorter than the worker's stop bound %s (worker.graceful_stop + 10 s): Docker would kill running activities", grace, a.StopTimeout())
	}
}

// promConfig is the part of a Prometheus configuration checked here.
type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// prometheusFiles returns, for the compose file's prometheus service, the
// path of its configuration in the container, and the repository file
// mounted at each path in the container.
func prometheusFiles(t *testing.T, f composeFile) (string, map[string]string) {
	t.Helper()
	p := f.Services["prometheus"]
	if !strings.HasPrefix(p.Image, "prom/prometheus:v") {
		t.Errorf("prometheus image %q: want a pinned prom/prometheus:vX.Y.Z", p.Image)
	}
	cfgPath := "/etc/prometheus/prometheus.yml"
	for _, a := range p.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			cfgPath = v
		}
	}
	mounts := map[string]string{}
	for _, v := range p.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], ".") {
			continue // a named volume
		}
		mounts[path.Clean(parts[1])] = filepath.ToSlash(filepath.Clean(parts[0]))
	}
	if _, ok := mounts[cfgPath]; !ok {
		t.Fatalf("prometheus reads %s, which no volume mounts from the repository (volumes %v)", cfgPath, p.Volumes)
	}
	return cfgPath, mounts
}

func loadPromConfig(t *testing.T, file string) promConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	var c promConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

// TestCompose_PrometheusScrapesEveryWorkerReplica: Prometheus finds the
// replicas by the worker service's name (one A record each, however many
// `--scale worker=N` runs), on the port and path the worker serves its
// metrics on, which it binds on every interface.
func TestCompose_PrometheusScrapesEveryWorkerReplica(t *testing.T) {
	f := load(t)
	cfg := composeWorkerConfig(t, f)
	if !listensOnEveryInterface(cfg.Metrics.Listen) {
		t.Fatalf("worker metrics.listen %q (TETHER_METRICS_LISTEN): Prometheus's container cannot reach a loopback address", cfg.Metrics.Listen)
	}
	_, port, _ := net.SplitHostPort(cfg.Metrics.Listen)
	cfgPath, mounts := prometheusFiles(t, f)
	prom := loadPromConfig(t, mounts[cfgPath])
	found := false
	for _, sc := range prom.ScrapeConfigs {
		for _, sd := range sc.DNSSDConfigs {
			if !slices.Contains(sd.Names, "worker") {
				continue
			}
			found = true
			if strings.ToUpper(cmp.Or(sd.Type, "SRV")) != "A" || strconv.Itoa(sd.Port) != port {
				t.Errorf("job %s: dns_sd %v type %q port %d, want type A and the worker's metrics port %s", sc.JobName, sd.Names, sd.Type, sd.Port, port)
			}
			if p := cmp.Or(sc.MetricsPath, "/metrics"); metricsStatus(t, cfg, p) != http.StatusOK {
				t.Errorf("job %s scrapes %s, which the worker does not serve", sc.JobName, p)
			}
			if cmp.Or(sc.Scheme, "http") != "http" || cfg.Metrics.TLS.Cert != "" {
				t.Errorf("job %s scheme %q, worker TLS %+v", sc.JobName, sc.Scheme, cfg.Metrics.TLS)
			}
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				if strings.HasPrefix(tg, "worker") {
					t.Errorf("job %s has a static target %s: replicas have no fixed names", sc.JobName, tg)
				}
			}
		}
	}
	if !found {
		t.Errorf("%s: no dns_sd_configs job scrapes the worker service's replicas", mounts[cfgPath])
	}
	if s, ok := f.Services["worker"]; !ok || s.ContainerName != "" {
		t.Errorf("worker service: the name Prometheus resolves must be the service's")
	}
}

// TestCompose_PrometheusLoadsTheRepositorysAlertRules: every rule file
// Prometheus loads is mounted from the repository, and the alert rules of
// workers/prometheus are among them (mounted, not copied).
func TestCompose_PrometheusLoadsTheRepositorysAlertRules(t *testing.T) {
	f := load(t)
	cfgPath, mounts := prometheusFiles(t, f)
	prom := loadPromConfig(t, mounts[cfgPath])
	var loaded []string
	for _, rf := range prom.RuleFiles {
		if path.IsAbs(rf) {
			t.Errorf("rule file %s: give it relative to the configuration (%s), so promtool can check it here", rf, path.Dir(cfgPath))
		}
		inContainer := path.Join(path.Dir(cfgPath), rf)
		src, ok := mounts[inContainer]
		if !ok {
			t.Errorf("rule file %s (%s in the container) is not mounted", rf, inContainer)
			continue
		}
		loaded = append(loaded, src)
	}
	if !slices.Contains(loaded, alertRules) {
		t.Errorf("prometheus loads rule files %v, not %s", loaded, alertRules)
	}
}

// TestCompose_PromtoolChecksThePrometheusConfig: promtool accepts the
// configuration, laid out as the container sees it, and finds every rule
// of the alert rules file in it.
func TestCompose_PromtoolChecksThePrometheusConfig(t *testing.T) {
	bin := tooltest.Promtool(t)
	f := load(t)
	cfgPath, mounts := prometheusFiles(t, f)
	dir := t.TempDir()
	for inContainer, src := range mounts {
		rel, err := filepath.Rel(path.Dir(cfgPath), inContainer)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.CommandContext(t.Context(), bin, "check", "config", filepath.Join(dir, path.Base(cfgPath))).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	var rules struct {
		Groups []struct {
			Rules []yaml.Node `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile(filepath.Join(root, alertRules))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Groups {
		n += len(g.Rules)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", n); n == 0 || !strings.Contains(string(out), want) {
		t.Errorf("promtool check config does not say %q:\n%s", want, out)
	}
}

// ---- Kubernetes (docs/deploy/) ----

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node         `yaml:"spec"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot bool   `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name string `yaml:"name"`
	} `yaml:"volumes"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type container struct {
	Name    string `yaml:"name"`
	Image   string `yaml:"image"`
	EnvFrom []struct {
		Prefix       string  `yaml:"prefix"`
		ConfigMapRef *keyRef `yaml:"configMapRef"`
		SecretRef    *keyRef `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
			ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports          []portSpec `yaml:"ports"`
	StartupProbe   *probe     `yaml:"startupProbe"`
	LivenessProbe  *probe     `yaml:"livenessProbe"`
	ReadinessProbe *probe     `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int64 `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []volumeMount `yaml:"volumeMounts"`
}

type portSpec struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
}

type probe struct {
	HTTPGet *struct {
		Path   string    `yaml:"path"`
		Port   yaml.Node `yaml:"port"`
		Scheme string    `yaml:"scheme"`
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port yaml.Node `yaml:"port"`
	} `yaml:"tcpSocket"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

// loadObjects reads the objects of a multi-document manifest.
func loadObjects(t *testing.T, file string) []k8sObject {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	var objs []k8sObject
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s does not parse: %v", file, err)
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
	return objs
}

func object(t *testing.T, objs []k8sObject, kind, name string) (k8sObject, bool) {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && (name == "" || o.Metadata.Name == name) {
			return o, true
		}
	}
	return k8sObject{}, false
}

// k8sWorkerDeployment is the worker's Deployment, its container, the
// environment Kubernetes gives the container, and the configuration the
// worker loads from it (absolute paths, which must be in a volume mount,
// taken to empty directories of a temporary root).
type k8sDeployment struct {
	spec deploymentSpec
	c    container
	env  map[string]string
	cfg  config.Config
}

func loadK8sWorker(t *testing.T) k8sDeployment {
	t.Helper()
	objs := loadObjects(t, k8sWorker)
	o, ok := object(t, objs, "Deployment", "")
	if !ok {
		t.Fatalf("%s has no Deployment", k8sWorker)
	}
	var d k8sDeployment
	if err := o.Spec.Decode(&d.spec); err != nil {
		t.Fatal(err)
	}
	cs := d.spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want the worker's one container, got %d", len(cs))
	}
	d.c = cs[0]
	d.env = map[string]string{}
	data := func(kind, name string, optional bool) map[string]string {
		o, ok := object(t, objs, kind, name)
		if !ok {
			if !optional {
				t.Errorf("%s %q is referred to but not in %s", kind, name, k8sWorker)
			}
			return nil
		}
		out := map[string]string{}
		for k, v := range o.Data {
			if kind == "Secret" {
				b, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					t.Errorf("Secret %s data %s is not base64", name, k)
				}
				v = string(b)
			}
			out[k] = v
		}
		for k, v := range o.StringData {
			out[k] = v
		}
		return out
	}
	for _, ef := range d.c.EnvFrom {
		var m map[string]string
		switch {
		case ef.ConfigMapRef != nil:
			m = data("ConfigMap", ef.ConfigMapRef.Name, ef.ConfigMapRef.Optional)
		case ef.SecretRef != nil:
			m = data("Secret", ef.SecretRef.Name, ef.SecretRef.Optional)
		}
		for k, v := range m {
			d.env[ef.Prefix+k] = v
		}
	}
	for _, e := range d.c.Env {
		switch {
		case e.ValueFrom == nil:
			d.env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			if v, ok := data("Secret", r.Name, r.Optional)[r.Key]; ok {
				d.env[e.Name] = v
			} else if !r.Optional {
				t.Errorf("env %s: Secret %s has no key %s", e.Name, r.Name, r.Key)
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			if v, ok := data("ConfigMap", r.Name, r.Optional)[r.Key]; ok {
				d.env[e.Name] = v
			} else if !r.Optional {
				t.Errorf("env %s: ConfigMap %s has no key %s", e.Name, r.Name, r.Key)
			}
		}
	}
	local := map[string]string{}
	tmp := t.TempDir()
	for k, v := range d.env {
		if !strings.HasPrefix(v, "/") {
			local[k] = v
			continue
		}
		mounted := slices.ContainsFunc(d.c.VolumeMounts, func(m volumeMount) bool {
			return v == m.MountPath || strings.HasPrefix(v, strings.TrimSuffix(m.MountPath, "/")+"/")
		})
		if !mounted {
			t.Errorf("env %s=%s: the path is in no volume mount (the image holds only the worker)", k, v)
		}
		local[k] = filepath.Join(tmp, v)
		if err := os.MkdirAll(local[k], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d.cfg = loadConfig(t, local)
	return d
}

// containerPort resolves a probe's port (a number, or a port's name).
func (d k8sDeployment) containerPort(t *testing.T, n yaml.Node) int {
	t.Helper()
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p
	}
	for _, p := range d.c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort
		}
	}
	t.Errorf("port %q is no port of the container", n.Value)
	return 0
}

func (d k8sDeployment) metricsPort(t *testing.T) int {
	t.Helper()
	_, port, err := net.SplitHostPort(d.cfg.Metrics.Listen)
	if err != nil {
		t.Fatalf("metrics.listen %q: %v", d.cfg.Metrics.Listen, err)
	}
	p, _ := strconv.Atoi(port)
	return p
}

// TestKubernetes_WorkerEnvironmentIsWhatTheWorkerReads: every variable the
// ConfigMap, the Secret and the container give (and every one the
// manifest's comments suggest adding) is one the worker reads, and the
// worker accepts the whole environment.
func TestKubernetes_WorkerEnvironmentIsWhatTheWorkerReads(t *testing.T) {
	d := loadK8sWorker(t)
	for k := range d.env {
		if !readsEnv(t, k) {
			t.Errorf("%s sets %s, which the worker does not read", k8sWorker, k)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, k8sWorker))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*#\s*([A-Z][A-Z0-9_]+):`).FindAllStringSubmatch(string(b), -1) {
		if !readsEnv(t, m[1]) {
			t.Errorf("%s suggests %s, which the worker does not read", k8sWorker, m[1])
		}
	}
	if host, _, _ := net.SplitHostPort(d.cfg.Temporal.Address); host == "127.0.0.1" || host == "localhost" {
		t.Errorf("TEMPORAL_ADDRESS %s: a pod's loopback has no Temporal", d.cfg.Temporal.Address)
	}
	if !listensOnEveryInterface(d.cfg.Metrics.Listen) {
		t.Errorf("metrics.listen %q (TETHER_METRICS_LISTEN): the kubelet's probes and Prometheus cannot reach a loopback address", d.cfg.Metrics.Listen)
	}
	if d.spec.Replicas < 2 {
		t.Errorf("replicas %d: the example runs several", d.spec.Replicas)
	}
	for k, v := range d.spec.Selector.MatchLabels {
		if d.spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not select the pod template", k, v)
		}
	}
	var volumes []string
	for _, v := range d.spec.Template.Spec.Volumes {
		volumes = append(volumes, v.Name)
	}
	for _, m := range d.c.VolumeMounts {
		if !slices.Contains(volumes, m.Name) {
			t.Errorf("volume mount %s: no volume %s", m.MountPath, m.Name)
		}
	}
}

// TestKubernetes_ProbesUseTheWorkersHealthEndpoints: the liveness probe
// GETs /healthz and the start-up and readiness probes /readyz, on the
// worker's metrics port, and the worker's real metrics server answers them
// so: /healthz 200 whatever the worker does, /readyz 503 until the worker
// polls, 200 while it polls and 503 once its stop begins, with and
// without metrics.token (a probe sends no token). The start-up probe waits
// as long as the worker's start may take, and every probe waits longer
// than /readyz may take.
func TestKubernetes_ProbesUseTheWorkersHealthEndpoints(t *testing.T) {
	d := loadK8sWorker(t)
	port := d.metricsPort(t)
	found := slices.ContainsFunc(d.c.Ports, func(p portSpec) bool {
		return p.ContainerPort == port
	})
	if !found {
		t.Errorf("the container declares no port %d (metrics.listen %s)", port, d.cfg.Metrics.Listen)
	}
	// What the worker answers on each path, as it starts, polls and stops.
	liveness := lifecycleStatus{http.StatusOK, http.StatusOK, http.StatusOK}
	readiness := lifecycleStatus{http.StatusServiceUnavailable, http.StatusOK, http.StatusServiceUnavailable}
	for _, c := range []struct {
		name string
		p    *probe
		path string
		want lifecycleStatus
	}{
		{"startupProbe", d.c.StartupProbe, "/readyz", readiness},
		{"livenessProbe", d.c.LivenessProbe, "/healthz", liveness},
		{"readinessProbe", d.c.ReadinessProbe, "/readyz", readiness},
	} {
		if c.p == nil {
			t.Errorf("no %s", c.name)
			continue
		}
		if c.p.HTTPGet == nil {
			t.Errorf("%s: want httpGet %s on port %d", c.name, c.path, port)
			continue
		}
		if c.p.HTTPGet.Path != c.path {
			t.Errorf("%s GET %s, want %s", c.name, c.p.HTTPGet.Path, c.path)
		}
		if got := d.containerPort(t, c.p.HTTPGet.Port); got != port {
			t.Errorf("%s on port %d, the worker serves /healthz and /readyz on its metrics port %d", c.name, got, port)
		}
		if cmp.Or(c.p.HTTPGet.Scheme, "HTTP") != "HTTP" {
			t.Errorf("%s scheme %s, the worker's metrics port is plain HTTP here", c.name, c.p.HTTPGet.Scheme)
		}
		for _, token := range []string{d.cfg.Metrics.Token, "a-metrics-token"} {
			cfg := d.cfg
			cfg.Metrics.Token = token
			if got := probeStatus(t, cfg, c.p.HTTPGet.Path); got != c.want {
				t.Errorf("%s GET %s (metrics.token %q): the worker answers %v as it starts, polls and stops; want %v", c.name, c.p.HTTPGet.Path, token, got, c.want)
			}
		}
		// /readyz pings PostgreSQL for at most app.ReadyCheckTimeout.
		if timeout := time.Duration(cmp.Or(c.p.TimeoutSeconds, 1)) * time.Second; timeout <= app.ReadyCheckTimeout {
			t.Errorf("%s timeoutSeconds %d: /readyz may take %s when the database does not answer", c.name, c.p.TimeoutSeconds, app.ReadyCheckTimeout)
		}
	}
	if p := d.c.StartupProbe; p != nil {
		budget := time.Duration(p.InitialDelaySeconds+cmp.Or(p.PeriodSeconds, 10)*cmp.Or(p.FailureThreshold, 3)) * time.Second
		if start := workerApp(t, d.cfg).StartTimeout(); budget < start {
			t.Errorf("startupProbe gives the worker %s, its start may take %s", budget, start)
		}
	}
}

// TestKubernetes_GracePeriodCoversTheWorkersStop: Kubernetes waits for
// the preStop hook and then the worker's whole stop (worker.graceful_stop
// for running activities, and the rest) before SIGKILL.
func TestKubernetes_GracePeriodCoversTheWorkersStop(t *testing.T) {
	d := loadK8sWorker(t)
	grace := 30 * time.Second // Kubernetes' default
	if g := d.spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	var preStop time.Duration
	if ps := d.c.Lifecycle.PreStop; ps != nil && ps.Sleep != nil {
		preStop = time.Duration(ps.Sleep.Seconds) * time.Second
	}
	stop := workerApp(t, d.cfg).StopTimeout()
	if grace < preStop+stop {
		t.Errorf("terminationGracePeriodSeconds %s < preStop %s + the worker's stop bound %s (worker.graceful_stop %s + 10 s)", grace, preStop, stop, d.cfg.Worker.GracefulStop)
	}
	if d.cfg.Worker.GracefulStop <= 0 {
		t.Errorf("worker.graceful_stop %s: running activities would be cut at once", d.cfg.Worker.GracefulStop)
	}
}

// TestKubernetes_RunsAsTheImagesUser: the pod runs as the distroless
// image's nonroot user (65532).
func TestKubernetes_RunsAsTheImagesUser(t *testing.T) {
	d := loadK8sWorker(t)
	b, err := os.ReadFile(filepath.Join(root, workerDocker))
	if err != nil {
		t.Fatal(err)
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(b), -1)
	if len(froms) == 0 || !strings.Contains(froms[len(froms)-1][1], "distroless") || !strings.HasSuffix(froms[len(froms)-1][1], ":nonroot") {
		t.Skipf("%s no longer ends on a distroless nonroot image", workerDocker)
	}
	sc := d.spec.Template.Spec.SecurityContext
	if !sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and runAsUser 65532 (distroless nonroot)", sc)
	}
}

// TestKubernetes_PrometheusFindsEveryPod: the scrape annotations and the
// PodMonitor name the worker's metrics port and a path it serves, and the
// PodMonitor selects the Deployment's pods.
func TestKubernetes_PrometheusFindsEveryPod(t *testing.T) {
	d := loadK8sWorker(t)
	port := d.metricsPort(t)
	ann := d.spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) {
		t.Errorf("pod annotations %v: want prometheus.io/scrape \"true\" and prometheus.io/port %d", ann, port)
	}
	if p := cmp.Or(ann["prometheus.io/path"], "/metrics"); metricsStatus(t, d.cfg, p) != http.StatusOK {
		t.Errorf("prometheus.io/path %s is not served", p)
	}
	pm, ok := object(t, loadObjects(t, k8sPodMonitor), "PodMonitor", "")
	if !ok {
		t.Fatalf("%s has no PodMonitor", k8sPodMonitor)
	}
	var spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	}
	if err := pm.Spec.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Selector.MatchLabels) == 0 {
		t.Errorf("PodMonitor selects no labels")
	}
	for k, v := range spec.Selector.MatchLabels {
		if d.spec.Template.Metadata.Labels[k] != v {
			t.Errorf("PodMonitor selector %s=%s does not select the worker's pods", k, v)
		}
	}
	if len(spec.Endpoints) == 0 {
		t.Fatalf("PodMonitor has no podMetricsEndpoints")
	}
	for _, e := range spec.Endpoints {
		if got := d.containerPort(t, yaml.Node{Kind: yaml.ScalarNode, Value: e.Port}); got != port {
			t.Errorf("PodMonitor port %q is %d, the worker serves metrics on %d", e.Port, got, port)
		}
		if p := cmp.Or(e.Path, "/metrics"); metricsStatus(t, d.cfg, p) != http.StatusOK {
			t.Errorf("PodMonitor path %s is not served", p)
		}
	}
}

// TestDeployDoc_NamesOnlyVariablesTheWorkerReads: every TETHER_* and
// TEMPORAL_* variable docs/deploy.md names (not counting patterns such as
// TETHER_CONNECTIONS_<NAME>_<KEY>) is one the worker reads, and the files
// it points at exist.
func TestDeployDoc_NamesOnlyVariablesTheWorkerReads(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, deployDoc))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	seen := map[string]bool{}
	re := regexp.MustCompile(`\b(?:TETHER|TEMPORAL)_[A-Z0-9_]*[A-Z0-9]`)
	for _, loc := range re.FindAllStringIndex(doc, -1) {
		name := doc[loc[0]:loc[1]]
		if rest := doc[loc[1]:]; strings.HasPrefix(rest, "_<") || strings.HasPrefix(rest, "_*") || strings.HasPrefix(rest, "*") {
			continue
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		if !readsEnv(t, name) {
			t.Errorf("%s names %s, which the worker does not read", deployDoc, name)
		}
	}
	if len(seen) < 5 {
		t.Errorf("only %d variables found in %s", len(seen), deployDoc)
	}
	for _, m := range regexp.MustCompile(`\]\(((?:\.\./|deploy/)[^)#]+)`).FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(filepath.Join(root, "docs", m[1])); err != nil {
			t.Errorf("%s links %s: %v", deployDoc, m[1], err)
		}
	}
}
