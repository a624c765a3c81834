package integration

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/telemetry"
	"github.com/tetherflow/tether/workflows/datasync"
)

// otlpReceiver is an OTLP/HTTP trace receiver on loopback: what a
// collector would get from a worker.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		var msg coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &msg)
		}
		if req.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, "want an OTLP protobuf export at /v1/traces", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// trace returns the spans received of one trace.
func (r *otlpReceiver) trace(id string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if hex.EncodeToString(s.GetTraceId()) == id {
			out = append(out, s)
		}
	}
	return out
}

// isHTTPSpan: an HTTP client call's span (otelhttp).
func isHTTPSpan(s *tracepb.Span) bool {
	_, ok := spanAttr(s, "http.request.method")
	return s.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && ok
}

func spanAttr(s *tracepb.Span, key string) (*commonpb.AnyValue, bool) {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue(), true
		}
	}
	return nil, false
}

// TestTelemetry_OneTraceFromStartThroughEveryStepAndCall: a sync started
// by a traced client (spans to an in-memory exporter) is run by a worker
// process exporting over OTLP/HTTP because its OTEL_* variables say so;
// the start, the workflow, every step and the steps' HTTP and SQL calls
// are one trace, and the steps and calls carry the integration, the run
// and the page. The worker's JSON log lines of workflows and steps all
// carry integration, WorkflowID, RunID and step.
func TestTelemetry_OneTraceFromStartThroughEveryStepAndCall(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 5, Contacts: 250}, noWorker: true})
	rcv := newOTLPReceiver(t)
	w := s.startWorkerProcess("traced", t.TempDir(), s.workerEnv(
		"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL,
		"OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=worker-under-test", "TETHER_LOG_FORMAT=json", "TETHER_LOG_LEVEL=debug",
	), workerBinary(t))
	waitPolling(t, w)

	ctx := context.Background()
	mem := tracetest.NewInMemoryExporter()
	stop, err := telemetry.StartTracingWith(ctx, "starter-under-test", sdktrace.WithSyncer(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop(ctx) }()
	syncThrough(t, dialWith(t, devServer.FrontendHostPort(), client.Options{Interceptors: telemetry.ClientInterceptors()}), s.taskQueue)
	var traceID string
	for _, sp := range mem.GetSpans() {
		if sp.Name == "StartWorkflow:"+datasync.WorkflowType {
			traceID = sp.SpanContext.TraceID().String()
		}
	}
	if traceID == "" {
		t.Fatalf("the starter recorded no StartWorkflow span; it has %d spans", len(mem.GetSpans()))
	}

	want := map[string]bool{"RunWorkflow:" + datasync.WorkflowType: false, "RunActivity:FetchPage": false, "RunActivity:ApplyBatch": false, "http": false, "sql": false}
	var spans []*tracepb.Span
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		spans = rcv.trace(traceID)
		for k := range want {
			want[k] = false
		}
		for _, sp := range spans {
			name := sp.GetName()
			switch {
			case want[name] == false && (strings.HasPrefix(name, "RunWorkflow:") || strings.HasPrefix(name, "RunActivity:")):
				if _, ok := want[name]; ok {
					want[name] = true
				}
			case isHTTPSpan(sp):
				want["http"] = true
			case strings.HasPrefix(name, "sql."):
				want["sql"] = true
			}
		}
		all := true
		for _, ok := range want {
			all = all && ok
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			names := map[string]int{}
			for _, sp := range spans {
				names[sp.GetKind().String()+" "+sp.GetName()]++
			}
			t.Fatalf("the worker's spans of trace %s lack some of %v (got %d spans: %v)", traceID, want, len(spans), names)
		}
	}
	// Every step and every call inside one names the integration and run;
	// the page's steps and calls their page.
	checked := map[string]int{}
	for _, sp := range spans {
		name := sp.GetName()
		inStep := strings.HasPrefix(name, "RunActivity:") || isHTTPSpan(sp) || strings.HasPrefix(name, "sql.")
		if !inStep {
			continue
		}
		v, ok := spanAttr(sp, telemetry.AttrIntegration)
		if strings.HasPrefix(name, "sql.") && !ok {
			continue // the worker's own queries outside a step (leases by the schedule, the state read)
		}
		if !ok || v.GetStringValue() != "crm-contacts" {
			t.Errorf("span %s has integration %v, want crm-contacts", name, v)
		}
		if r, ok := spanAttr(sp, telemetry.AttrSyncRun); !ok || r.GetStringValue() == "" {
			if name != "RunActivity:StartRun" {
				t.Errorf("span %s has no %s", name, telemetry.AttrSyncRun)
			}
		}
		if name == "RunActivity:FetchPage" || isHTTPSpan(sp) {
			if p, ok := spanAttr(sp, telemetry.AttrPage); !ok || p.GetIntValue() < 1 {
				t.Errorf("span %s has page %v", name, p)
			}
		}
		checked[strings.SplitN(name, " ", 2)[0]]++
	}
	t.Logf("spans checked in trace %s: %v", traceID, checked)

	checkLogLines(t, w.logFile, "crm-contacts")
}

// checkLogLines reads a worker's JSON log: every line of a workflow or a
// step (it has a WorkflowID) names the integration, the run and the step;
// some come from workflows and some from steps.
func checkLogLines(t *testing.T, file, integration string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps, workflows := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["WorkflowID"] == nil {
			continue
		}
		for _, k := range []string{"integration", "RunID", "step"} {
			if v, _ := line[k].(string); v == "" {
				t.Errorf("log line without %s: %s", k, sc.Text())
			}
		}
		if line["integration"] != integration {
			continue
		}
		if line["ActivityType"] != nil {
			steps++
		} else {
			workflows++
		}
	}
	t.Logf("log lines of %s: %d from steps, %d from workflows", integration, steps, workflows)
	if steps == 0 || workflows == 0 {
		t.Errorf("the worker's log has %d step lines and %d workflow lines of %s; want some of each", steps, workflows, integration)
	}
}
