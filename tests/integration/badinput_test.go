package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/datasync"
)

func TestBadInput_SourceAnswersFailTheRunWithTheirCause(t *testing.T) {
	tests := []struct {
		name     string
		faults   sandbox.Faults
		auth     sandbox.Auth
		crm      config.Connection
		wantType string
		wantText string
	}{
		{name: "malformed JSON page", faults: sandbox.Faults{MalformedRate: 1}, wantType: failure.TypeSourceMalformed, wantText: "JSON"},
		{name: "HTML instead of JSON", faults: sandbox.Faults{NonJSONNext: 100}, wantType: failure.TypeSourceMalformed, wantText: "text/html"},
		{name: "401 wrong token", auth: sandbox.Auth{Mode: "bearer", Token: "right"}, crm: config.Connection{Auth: "bearer", Token: "wrong"}, wantType: failure.TypeSourceAuth, wantText: "401"},
		{name: "403 forbidden key", auth: sandbox.Auth{Mode: "api_key", APIKey: "right", ForbiddenAPIKey: "readonly"}, crm: config.Connection{Auth: "api_key", APIKey: "readonly"}, wantType: failure.TypeSourceAuth, wantText: "403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 21, Contacts: 500, Faults: tt.faults, Auth: tt.auth}, crm: tt.crm})
			_, err := s.sync(datasync.Input{Integration: "crm-contacts"})
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != tt.wantType {
				t.Fatalf("want a %s failure, got %v", tt.wantType, err)
			}
			if !strings.Contains(err.Error(), "FetchPage failed on page 1") || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("failure does not name the step, page and cause (%q): %v", tt.wantText, err)
			}
			if n := s.count(`SELECT count(*) FROM tether_runs WHERE status = 'Failed' AND error_type = $1`, tt.wantType); n != 1 {
				t.Errorf("runs table: %d failed runs of type %s, want 1", n, tt.wantType)
			}
		})
	}
}

func TestBadInput_TransientSourceErrorsAreRetried(t *testing.T) {
	tests := []struct {
		name   string
		faults sandbox.Faults
		status int
	}{
		{name: "500s", faults: sandbox.Faults{FailNext: 3, FailStatus: 500}, status: 500},
		{name: "429 with Retry-After", faults: sandbox.Faults{FailNext: 2, FailStatus: 429, FailRetryAfter: 1}, status: 429},
		{name: "503 with Retry-After", faults: sandbox.Faults{FailNext: 2, FailStatus: 503, FailRetryAfter: 1}, status: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 22, Contacts: 2500, Faults: tt.faults}})
			res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
			if res.Counts.Inserted != 2500 {
				t.Errorf("inserted %d, want 2500", res.Counts.Inserted)
			}
			if got := s.sandbox.Stats().ByStatus[tt.status]; got < 2 {
				t.Errorf("the sandbox answered %d only %d times: the fault was not exercised", tt.status, got)
			}
			checkContacts(t, s)
		})
	}
}

// TestBadInput_MalformedPagesAreAskedAgain: a page that comes back
// truncated (or as an error page with status 200) now and then is asked
// again a second later; the run completes, every row exact. (A page that
// stays malformed fails the run: TestBadInput_SourceAnswersFailTheRunWithTheirCause.)
func TestBadInput_MalformedPagesAreAskedAgain(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 24, Contacts: 5000, Faults: sandbox.Faults{MalformedRate: 0.3, NonJSONNext: 1}}})
	res := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	if res.Counts.Inserted != 5000 {
		t.Errorf("inserted %d, want 5000 (counts %+v)", res.Counts.Inserted, res.Counts)
	}
	if asked := s.sandbox.Stats().Total; asked <= res.Counts.Pages {
		t.Errorf("the sandbox answered %d requests for %d pages: no malformed page was asked again", asked, res.Counts.Pages)
	}
	checkContacts(t, s)
}

func TestBadInput_RecordsWithoutKeyOrWithWrongTypesAreQuarantinedWithReasons(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 23, Contacts: 4000, Faults: sandbox.Faults{InvalidRate: 0.04}}})
	s.mustSync(datasync.Input{Integration: "crm-contacts"})
	rows, err := s.schema.DB.Query(`SELECT step, coalesce(record_key,''), errors::text FROM tether_quarantine`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	steps := map[string]int{}
	var sawType, sawKey, sawRequired bool
	for rows.Next() {
		var step, key, errs string
		if err := rows.Scan(&step, &key, &errs); err != nil {
			t.Fatal(err)
		}
		steps[step]++
		if step == "key" && key == "" && strings.Contains(errs, `no key`) {
			sawKey = true
		}
		if strings.Contains(errs, `"keyword": "type"`) || strings.Contains(errs, `"keyword":"type"`) {
			sawType = true
		}
		if strings.Contains(errs, "required") {
			sawRequired = true
		}
	}
	if !sawKey || !sawType || !sawRequired {
		t.Errorf("quarantine reasons: key-less=%v wrong-type=%v missing-required=%v (by step %v)", sawKey, sawType, sawRequired, steps)
	}
}

func TestBadInput_WorkerRefusesBadConfig(t *testing.T) {
	bin := workerBinary(t)
	dir := t.TempDir()
	tests := []struct {
		name     string
		file     string
		env      []string
		wantText []string
	}{
		{name: "unknown key", file: "temporal:\n  adress: x:1\n", wantText: []string{"adress"}},
		{name: "bad values", file: "log:\n  level: loud\nworker:\n  max_concurrent_activities: 0\n", wantText: []string{"log.level", "worker.max_concurrent_activities"}},
		{name: "not YAML", file: "temporal: [unclosed\n", wantText: []string{"config file"}},
		{name: "missing file", wantText: []string{"no such file"}},
		{name: "bad DATABASE_URL", env: []string{"DATABASE_URL=mysql://x"}, wantText: []string{"database.url (DATABASE_URL)"}},
		{name: "unreachable PostgreSQL", env: []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/x?sslmode=disable"}, wantText: []string{"127.0.0.1:1", "unreachable"}},
		{name: "unreachable Temporal", env: []string{"TEMPORAL_ADDRESS=127.0.0.1:1", "TETHER_TEMPORAL_CONNECT_TIMEOUT=2s"}, wantText: []string{"temporal at 127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{}
			if tt.file != "" {
				p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
				if err := os.WriteFile(p, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", p)
			} else if tt.name == "missing file" {
				args = append(args, "--config", filepath.Join(dir, "nope.yaml"))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(os.Environ(), "DATABASE_URL="+pgDSN(), "TEMPORAL_ADDRESS="+devServer.FrontendHostPort())
			cmd.Env = append(cmd.Env, tt.env...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("want exit status 1, got %v\n%s", err, out)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(string(out), w) {
					t.Errorf("message does not mention %q:\n%s", w, out)
				}
			}
			if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); lines > 6 {
				t.Errorf("want a short message, got %d lines:\n%s", lines+1, out)
			}
		})
	}
}
