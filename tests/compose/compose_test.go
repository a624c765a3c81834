// Package compose checks docker-compose.yml against the code: nothing here
// can run Docker, so the file must at least parse and agree with what the
// binaries read and serve.
package compose

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/datasync"
)

type composeFile struct {
	Services map[string]service `yaml:"services"`
}

type service struct {
	Image           string            `yaml:"image"`
	Build           *build            `yaml:"build"`
	Entrypoint      []string          `yaml:"entrypoint"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	ContainerName   string            `yaml:"container_name"`
	DependsOn       yaml.Node         `yaml:"depends_on"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func load(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(false)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	return f
}

func TestCompose_Services(t *testing.T) {
	f := load(t)
	var names []string
	for n := range f.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"postgresql", "prometheus", "sandbox", "temporal", "temporal-create-namespace", "temporal-schema", "temporal-ui", "worker"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
}

func TestCompose_ImagesMatchThePinnedTemporal(t *testing.T) {
	f := load(t)
	if got, want := f.Services["temporal"].Image, "temporalio/server:"+devstack.TemporalServerVersion; got != want {
		t.Errorf("temporal image %q, want %q (the server the pinned CLI runs in dev)", got, want)
	}
	// The admin-tools image's schema (/etc/temporal/schema) and CLI are
	// those of its server version: the same as the server's. Its tags are
	// <server>-tctl-<tctl>-cli-<cli>, as Temporal's compose files pin them.
	for _, name := range []string{"temporal-schema", "temporal-create-namespace"} {
		img := f.Services[name].Image
		if !strings.HasPrefix(img, "temporalio/admin-tools:"+devstack.TemporalServerVersion+"-") {
			t.Errorf("%s image %q, want temporalio/admin-tools:%s-… (the server's version)", name, img, devstack.TemporalServerVersion)
		}
	}
	if got, want := f.Services["temporal-ui"].Image, "temporalio/ui:"+devstack.TemporalUIVersion; got != want {
		t.Errorf("temporal-ui image %q, want %q", got, want)
	}
	if !strings.HasPrefix(f.Services["postgresql"].Image, "postgres:") {
		t.Errorf("postgresql image %q", f.Services["postgresql"].Image)
	}
}

func TestCompose_BuiltImagesBuildOurBinaries(t *testing.T) {
	f := load(t)
	for name, pkg := range map[string]string{"worker": "./workers/cmd/worker", "sandbox": "./starters/cmd/sandbox"} {
		s := f.Services[name]
		if s.Build == nil || s.Build.Context != "." {
			t.Errorf("%s: want build context . , got %+v", name, s.Build)
			continue
		}
		df, err := os.ReadFile(filepath.Join("../..", s.Build.Dockerfile))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !strings.Contains(string(df), "go build") || !strings.Contains(string(df), pkg) {
			t.Errorf("%s: %s does not build %s", name, s.Build.Dockerfile, pkg)
		}
		if _, err := os.Stat(filepath.Join("../..", pkg, "main.go")); err != nil {
			t.Errorf("%s: package %s: %v", name, pkg, err)
		}
	}
}

func TestCompose_WorkerEnvironmentIsWhatTheWorkerReads(t *testing.T) {
	f := load(t)
	w := f.Services["worker"]
	if len(w.Ports) != 0 || w.ContainerName != "" {
		t.Errorf("worker has host ports %v or a container_name %q: `--scale worker=3` would fail", w.Ports, w.ContainerName)
	}
	for k, v := range w.Environment {
		if !config.ReadsEnv(k) {
			t.Errorf("worker environment %s is not read by the worker (known: %v and TETHER_CONNECTIONS_<NAME>_<KEY>)", k, config.EnvNames())
		}
		t.Setenv(k, v)
	}
	cfg, err := config.Load("")
	if err != nil {
		t.Fatalf("the worker would refuse this environment: %v", err)
	}
	if cfg.Temporal.TaskQueue != datasync.DefaultTaskQueue {
		t.Errorf("task queue %q, want the default %q the README's commands use", cfg.Temporal.TaskQueue, datasync.DefaultTaskQueue)
	}
	host, port, _ := net.SplitHostPort(cfg.Temporal.Address)
	if _, ok := f.Services[host]; !ok || port != "7233" {
		t.Errorf("TEMPORAL_ADDRESS %q does not name the temporal service's 7233", cfg.Temporal.Address)
	}
	u, err := url.Parse(cfg.Connections["crm"].BaseURL)
	if err != nil || u.Hostname() != "sandbox" {
		t.Fatalf("CRM base URL %q does not name the sandbox service", cfg.Connections["crm"].BaseURL)
	}
	sb := f.Services["sandbox"]
	addr := sb.Command[slices.Index(sb.Command, "--addr")+1]
	if _, p, _ := net.SplitHostPort(addr); p != u.Port() {
		t.Errorf("worker calls the sandbox on port %s, sandbox listens on %s", u.Port(), addr)
	}
	if !slices.Contains(sb.Ports, u.Port()+":"+u.Port()) {
		t.Errorf("sandbox ports %v do not publish %s", sb.Ports, u.Port())
	}
	db, err := url.Parse(cfg.Database.URL)
	if err != nil {
		t.Fatal(err)
	}
	pg := f.Services["postgresql"].Environment
	pw, _ := db.User.Password()
	if db.Hostname() != "postgresql" || db.User.Username() != pg["POSTGRES_USER"] || pw != pg["POSTGRES_PASSWORD"] || strings.TrimPrefix(db.Path, "/") != pg["POSTGRES_DB"] {
		t.Errorf("DATABASE_URL %s does not match the postgresql service %v", config.Database{URL: cfg.Database.URL}.Redacted(), pg)
	}
}

func TestCompose_WebUIReachesTemporal(t *testing.T) {
	f := load(t)
	ui := f.Services["temporal-ui"]
	if ui.Environment["TEMPORAL_ADDRESS"] != "temporal:7233" {
		t.Errorf("temporal-ui TEMPORAL_ADDRESS %q", ui.Environment["TEMPORAL_ADDRESS"])
	}
	if !slices.Contains(ui.Ports, "8233:8080") {
		t.Errorf("temporal-ui ports %v: want the Web UI on 8233 as with the dev server", ui.Ports)
	}
	if !slices.Contains(f.Services["temporal"].Ports, "7233:7233") {
		t.Errorf("temporal ports %v", f.Services["temporal"].Ports)
	}
}
