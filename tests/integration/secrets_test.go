package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/webhook"
	"github.com/tetherflow/tether/workflows/datasync"
	"github.com/tetherflow/tether/workflows/events"
)

// TestSecrets_NeverInLogsHistoriesOrOutputs: a worker process given known
// secret values (the source's API token, a password in DATABASE_URL, the
// webhook secret, the metrics token) runs a full sync, a failing sync, a
// webhook and a replay of the quarantine; none of the values is in the
// worker's log, in any of those runs' histories, in their results and
// failures, or in what the CLI prints about them.
func TestSecrets_NeverInLogsHistoriesOrOutputs(t *testing.T) {
	secrets := map[string]string{
		"source token":    uniqueName("tok-s3cret"),
		"database pass":   uniqueName("pw-s3cret"),
		"webhook secret":  hookSecret,
		"metrics token":   uniqueName("mt-s3cret"),
		"hook delivery":   "", // filled below: not a secret, a check that the search finds what is there
		"webhook payload": "",
	}
	s := newStack(t, stackOptions{noWorker: true, sandbox: sandbox.Options{Seed: 51, Contacts: 400,
		Auth: sandbox.Auth{Mode: sandbox.AuthBearer, Token: secrets["source token"]}, Faults: sandbox.Faults{InvalidRate: 0.02}}})
	dsn, err := url.Parse(s.schema.DSN)
	if err != nil {
		t.Fatal(err)
	}
	dsn.User = url.UserPassword(dsn.User.Username(), secrets["database pass"]) // trust auth: any password works
	name := uniqueName("secret-hook")
	dir := t.TempDir()
	writeIntegrationFile(t, dir, name, "events:\n  shards: 1\n")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w := s.startWorkerProcess("secrets", t.TempDir(), s.workerEnv(
		"DATABASE_URL="+dsn.String(), "TETHER_CONNECTIONS_CRM_AUTH=bearer", "TETHER_CONNECTIONS_CRM_TOKEN="+secrets["source token"],
		"TETHER_CONFIG="+webhookConfig(t, listen, name, "TEST_CRM_HOOK_SECRET"), "TETHER_INTEGRATIONS_DIR="+dir,
		"TETHER_SCHEDULES_OWNER="+name, "TEST_CRM_HOOK_SECRET="+hookSecret, "TETHER_METRICS_TOKEN="+secrets["metrics token"],
		"TETHER_LOG_LEVEL=debug"), workerBinary(t))
	waitPolling(t, w)
	ctx := context.Background()
	var outputs bytes.Buffer
	var ids []string

	// A full sync (2% invalid: quarantined), then its quarantine replayed.
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	res, err := s.wait(run)
	if err != nil || res.Status != progress.StatusCompleted || res.Counts.Invalid == 0 {
		t.Fatalf("full sync: %+v %v", res, err)
	}
	ids = append(ids, run.GetID())
	replay := s.start(datasync.Input{Integration: "crm-contacts", Replay: true})
	if _, err := s.wait(replay); err != nil {
		t.Logf("replay ended with %v (still searched)", err)
	}
	ids = append(ids, replay.GetID())

	// A failing sync: the source answers 404 on the first page.
	s.sandbox.SetFaults(sandbox.Faults{FailNext: 1, FailStatus: 404})
	failing := s.start(datasync.Input{Integration: "crm-contacts", Full: true})
	_, ferr := s.wait(failing)
	if ferr == nil {
		t.Fatalf("the failing sync completed")
	}
	ids = append(ids, failing.GetID())
	var re *cli.RunError
	if _, werr := cli.Watch(ctx, s.client, &outputs, failing.GetID(), 0); errors.As(werr, &re) {
		outputs.WriteString(re.Full())
	}
	outputs.WriteString(ferr.Error())

	// A webhook, applied.
	secrets["hook delivery"] = uniqueName("delivery")
	secrets["webhook payload"] = uniqueName("payload") + "@example.com"
	body := webhookEvent(77, secrets["webhook payload"])
	h := &hooks{s: s, url: "http://" + listen, source: webhook.Source{Name: "crm"}, shards: 1}
	h.mustAccept(secrets["hook delivery"], body)
	eventually(t, 60*time.Second, "the webhook applied", func() bool {
		return s.count(`SELECT count(*) FROM tether_event_deliveries WHERE integration = $1`, name) == 1
	})
	ids = append(ids, events.WorkflowID(name, 0))

	// What the CLI prints about the runs.
	for _, args := range [][]string{{"runs", "--database-url", dsn.String()}} {
		cli.Run(ctx, args, &outputs, &outputs)
	}
	for _, r := range []datasync.Result{res} {
		b, _ := json.Marshal(r)
		outputs.Write(b)
	}

	var histories bytes.Buffer
	for _, id := range ids {
		iter := s.client.GetWorkflowHistory(ctx, id, "", false, 0)
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				t.Fatalf("history of %s: %v", id, err)
			}
			b, _ := ev.Marshal() // payloads verbatim (no encryption here)
			histories.Write(b)
		}
	}
	_ = w.Stop(10 * time.Second)
	logged, _ := os.ReadFile(w.logFile)

	// The searches find what is there: the webhook's payload is in the
	// events workflow's history, its delivery id in the log.
	if !bytes.Contains(histories.Bytes(), []byte(secrets["webhook payload"])) {
		t.Fatalf("the webhook's payload is not in the histories searched (%d bytes): the search proves nothing", histories.Len())
	}
	if !bytes.Contains(logged, []byte(secrets["hook delivery"])) {
		t.Fatalf("the delivery id is not in the worker's log (%d bytes): the search proves nothing", len(logged))
	}
	for what, v := range secrets {
		if what == "hook delivery" || what == "webhook payload" {
			continue
		}
		for where, b := range map[string][]byte{"the worker's log": logged, "the histories": histories.Bytes(), "the outputs": outputs.Bytes()} {
			if bytes.Contains(b, []byte(v)) {
				i := bytes.Index(b, []byte(v))
				t.Errorf("the %s is in %s: …%s…", what, where, strings.ToValidUTF8(string(b[max(0, i-120):min(len(b), i+len(v)+40)]), "?"))
			}
		}
	}
}
