package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// logged returns the JSON lines a logger made with NewHandler wrote.
func logged(t *testing.T, f func(*slog.Logger)) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	f(slog.New(NewHandler(slog.NewJSONHandler(&buf, nil))))
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHandler_AddsTheStepScopeOnce(t *testing.T) {
	s := Scope{Integration: "crm", Step: "FetchPage", WorkflowID: "wf-1", RunID: "run-1", SyncRun: "r1", Page: 3}
	ctx := With(context.Background(), s, nil)
	lines := logged(t, func(l *slog.Logger) {
		l.InfoContext(ctx, "a")
		l.InfoContext(ctx, "b", "integration", "explicit")
		l.With("step", "bound").InfoContext(ctx, "c")
		l.Info("d") // no step context
		l.WithGroup("g").InfoContext(ctx, "e")
	})
	want := map[string]any{"integration": "crm", "step": "FetchPage", "WorkflowID": "wf-1", "RunID": "run-1", "page": float64(3)}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("line a: %s = %v, want %v", k, lines[0][k], v)
		}
	}
	if lines[1]["integration"] != "explicit" {
		t.Errorf("line b: integration %v, want the line's own", lines[1]["integration"])
	}
	if lines[2]["step"] != "bound" || lines[2]["integration"] != "crm" {
		t.Errorf("line c: %v, want the logger's step and the context's integration", lines[2])
	}
	if _, ok := lines[3]["integration"]; ok {
		t.Errorf("line d has an integration without a step context: %v", lines[3])
	}
	if _, ok := lines[4]["integration"]; ok {
		t.Errorf("line e (grouped) got the scope: %v", lines[4])
	}
}

func TestHandler_SDKLinesGetTheirWorkflowsIntegration(t *testing.T) {
	Remember("wf-sdk", "billing")
	lines := logged(t, func(l *slog.Logger) {
		l.With("WorkflowID", "wf-sdk", "RunID", "r", "ActivityType", "ApplyBatch").Warn("Activity error.")
		l.Info("workflow line", "WorkflowID", "wf-sdk", "WorkflowType", "SyncWorkflow")
		l.Info("unknown workflow", "WorkflowID", "wf-other")
	})
	if lines[0]["integration"] != "billing" || lines[0]["step"] != "ApplyBatch" {
		t.Errorf("activity line %v, want integration billing, step ApplyBatch", lines[0])
	}
	if lines[1]["integration"] != "billing" || lines[1]["step"] != "SyncWorkflow" {
		t.Errorf("workflow line %v, want integration billing, step SyncWorkflow", lines[1])
	}
	if _, ok := lines[2]["integration"]; ok {
		t.Errorf("a workflow never remembered got an integration: %v", lines[2])
	}
}

func TestRemember_IsBounded(t *testing.T) {
	for i := range rememberedMax + 10 {
		Remember("wf-"+time.Duration(i).String(), "x")
	}
	remembered.Lock()
	n := len(remembered.names)
	remembered.Unlock()
	if n > rememberedMax || n == 0 {
		t.Errorf("remembered %d workflows, want at most %d", n, rememberedMax)
	}
}

type recorder map[string]time.Duration

func (r recorder) ThrottleWait(integration string, d time.Duration) { r[integration] += d }

func TestThrottleWait_GoesToTheStepsRecorder(t *testing.T) {
	rec := recorder{}
	ctx := With(context.Background(), Scope{Integration: "crm"}, rec)
	ThrottleWait(ctx, 2*time.Second)
	ThrottleWait(ctx, time.Second)
	ThrottleWait(context.Background(), time.Hour) // outside a step: nowhere
	if rec["crm"] != 3*time.Second || len(rec) != 1 {
		t.Errorf("recorded %v, want crm 3s", rec)
	}
}
