package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	"github.com/tetherflow/tether/activities/twoway"
	"github.com/tetherflow/tether/starters/devstack"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

// TestWebUI_ResolvesAConflictWithAnUpdate checks in a real browser what
// docs/two-way.md says of the Web UI: a person opens the two-way
// workflow's page, chooses More Actions, Send an Update, picks the
// resolve Update and gives the same JSON input as the Temporal CLI.
// A choice the validator refuses (an unknown conflict) shows the
// validator's message in the dialog, and nothing changes; a valid choice
// writes the chosen side's record to both sides, settles the conflict in
// tether_conflicts and the audit, and the conflicts query no longer lists
// it. The Web UI of the pinned CLI (2.42.1) sends the Update with no
// identity, so the resolver is the one the input names ("by"), recorded
// as named.
func TestWebUI_ResolvesAConflictWithAnUpdate(t *testing.T) {
	browser := chromium(t)
	// The shared dev server is headless: this test runs one with the UI.
	srv, err := devstack.StartDevServer(context.Background(), devstack.DevServerOptions{CLI: temporalCLI,
		LogFile: filepath.Join(t.TempDir(), "temporal.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(10 * time.Second) })

	p := newManualPairOn(t, dialWith(t, srv.Address, client.Options{}))
	mustExec(t, p.stack, `INSERT INTO accounts (id, email, name, plan) VALUES ('acc-1', 'eve@example.com', 'Eve', 'free')`)
	p.start()
	p.editApp("eve@example.com", "name = 'Eve A'")
	p.patchBilling("eve@example.com", map[string]any{"name": "Eve B", "plan": "pro"})
	if c := p.cycle(); c.Parked != 1 {
		t.Fatalf("cycle: %+v, want eve's record parked", c)
	}
	parked := p.conflicts()
	if len(parked) != 1 {
		t.Fatalf("the conflicts query lists %+v, want eve's conflict", parked)
	}
	id := parked[0].ID
	unchanged := func(when string) {
		t.Helper()
		if a, b := p.app()["eve@example.com"], p.billing()["eve@example.com"]; a != "Eve A/free" || b != "Eve B/pro" {
			t.Errorf("%s: app %s, billing %s; want them as they were (Eve A/free, Eve B/pro)", when, a, b)
		}
		if list, err := p.store.ListConflicts(context.Background(), store.ConflictFilter{Integration: p.name, ID: id}); err != nil ||
			len(list) != 1 || list[0].Status != store.ConflictParked || list[0].ResolvedBy != "" {
			t.Errorf("%s: conflict %d is %+v (%v), want still parked", when, id, list, err)
		}
		if got := p.conflicts(); len(got) != 1 || got[0].ID != id {
			t.Errorf("%s: the conflicts query lists %+v, want conflict %d", when, got, id)
		}
		if n := len(p.updatesAccepted()); n != 0 {
			t.Errorf("%s: %d Updates accepted in the history", when, n)
		}
	}
	unchanged("before the Web UI")

	ui := openWebUI(t, browser, fmt.Sprintf("%s/namespaces/default/workflows/%s/%s/history",
		srv.UIURL, url.PathEscape(p.run.GetID()), p.run.GetRunID()), p.run.GetID())

	// An unknown conflict: the validator refuses it, the dialog shows its
	// message, and nothing changes.
	_, refused, ok := ui.sendUpdate(twowaywf.UpdateResolve, `{"conflict":999999,"choose":"a"}`)
	want := fmt.Sprintf("conflict 999999 is not waiting for a person in %s (the conflicts query lists those that are)", p.name)
	if ok || !strings.Contains(refused, want) {
		t.Errorf("an unknown conflict sent from the Web UI: accepted %v, the dialog shows %q; want it refused with %q", ok, refused, want)
	}
	unchanged("after the refused Update")

	// Billing's record, as a person picks it in the Web UI.
	updateID, msg, ok := ui.sendUpdate(twowaywf.UpdateResolve, fmt.Sprintf(`{"conflict":%d,"choose":"b","by":"ana@example.com"}`, id))
	if !ok {
		t.Fatalf("the resolve Update sent from the Web UI failed: %s", msg)
	}
	// The Web UI says it succeeded; its outcome, as any client reads it
	// (the UI may report success once the Update is accepted).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res syncstep.ResolveResult
	if err := p.client.GetWorkflowUpdateHandle(client.GetWorkflowUpdateHandleOptions{WorkflowID: p.run.GetID(), RunID: p.run.GetRunID(),
		UpdateID: updateID}).Get(ctx, &res); err != nil {
		t.Fatalf("the outcome of Update %s: %v", updateID, err)
	}
	if a, b := p.app()["eve@example.com"], p.billing()["eve@example.com"]; a != "Eve B/pro" || b != "Eve B/pro" {
		t.Errorf("after the resolution: app %s, billing %s; want Eve B/pro on both", a, b)
	}
	// The Web UI sends the Update without an identity: the history's
	// accepted event has none, so the resolver is the one the input names,
	// marked as named (without "by" it would be unknown).
	accepted := p.updatesAccepted()
	if len(accepted) != 1 {
		t.Fatalf("%d Updates accepted in the history, want 1", len(accepted))
	}
	if accepted[0] != "" {
		t.Errorf("the Web UI's Update carries the identity %q; the test expects none (Web UI 2.42.1): check what the docs say", accepted[0])
	}
	resolver := syncstep.NamedBy("ana@example.com")
	if res.Conflict != id || res.Resolution != "manual: b" || res.ResolvedBy != resolver {
		t.Errorf("the Update's result: %+v; want conflict %d, manual: b, by %q", res, id, resolver)
	}
	list, err := p.store.ListConflicts(context.Background(), store.ConflictFilter{Integration: p.name, ID: id})
	if err != nil || len(list) != 1 || list[0].Status != store.ConflictResolved || list[0].Resolution != "manual: b" || list[0].ResolvedBy != resolver {
		t.Errorf("conflict %d after the resolution: %+v, %v; want resolved, manual: b, by %q", id, list, err, resolver)
	}
	entries, err := p.store.ListAudit(context.Background(), store.AuditFilter{Integration: p.name})
	if err != nil || len(entries) != 1 || entries[0].Action != store.AuditResolve || entries[0].Actor != resolver || entries[0].Via != "update" {
		t.Errorf("the audit after the resolution: %+v, %v; want one %s by %q via update", entries, err, store.AuditResolve, resolver)
	}
	if got := p.conflicts(); len(got) != 0 {
		t.Errorf("the conflicts query still lists %+v", got)
	}
	if c := p.cycle(); c.WritesA+c.WritesB != 0 || c.Parked != 0 {
		t.Errorf("the cycle after the resolution: %+v, want nothing written or parked", c)
	}
}

// newManualPairOn is newTwoWayPair with the manual policy, its worker and
// client on the Temporal server that c dials.
func newManualPairOn(t *testing.T, c client.Client) *twoWayPair {
	t.Helper()
	name := uniqueName("accounts-billing")
	fields := map[string]string{"email": "email", "name": "name", "plan": "plan"}
	s := newStack(t, stackOptions{noWorker: true, twoWay: func(url string) []twoway.Definition {
		return []twoway.Definition{{
			Name: name,
			A: twoway.SideSpec{Name: "app", Postgres: &twoway.PostgresSide{Table: "accounts", Key: "id", UpdatedAt: "updated_at", DeletedAt: "deleted_at",
				Fields: fields}},
			B:      twoway.SideSpec{Name: "billing", HTTP: &twoway.HTTPSide{BaseURL: url, Path: "/v1/customers", Fields: fields}},
			Match:  []string{"email"},
			Policy: twoway.Policy{Kind: twoway.Manual},
			Every:  time.Hour, // the test drives the cycles with sync-now
		}}
	}})
	s.client = c
	mustExec(t, s, `CREATE TABLE accounts (id text PRIMARY KEY, email text NOT NULL, name text, plan text,
		updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz)`)
	s.startWorker()
	return &twoWayPair{stack: s, name: name}
}

// conflicts is what the workflow's conflicts query lists.
func (p *twoWayPair) conflicts() []syncstep.ParkedConflict {
	p.t.Helper()
	v, err := p.client.QueryWorkflow(context.Background(), p.run.GetID(), "", twowaywf.QueryConflicts)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []syncstep.ParkedConflict
	if err := v.Get(&out); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// updatesAccepted are the identities of the Updates accepted in the
// workflow's history, in order.
func (p *twoWayPair) updatesAccepted() []string {
	p.t.Helper()
	var out []string
	iter := p.client.GetWorkflowHistory(context.Background(), p.run.GetID(), p.run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			p.t.Fatal(err)
		}
		if at := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); at != nil {
			out = append(out, at.GetAcceptedRequest().GetMeta().GetIdentity())
		}
	}
	return out
}

// webUI is a headless Chromium showing one page of the Temporal Web UI.
type webUI struct {
	t          *testing.T
	ctx        context.Context
	page       string
	workflowID string
}

// uiStep bounds each step in the browser: generous, for a busy machine.
const uiStep = 90 * time.Second

func openWebUI(t *testing.T, browser, page, workflowID string) *webUI {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("start %s: %v", browser, err)
	}
	return &webUI{t: t, ctx: ctx, page: page, workflowID: workflowID}
}

// shown selects the first element matching css that is shown (rendered,
// not hidden, not transparent) with text in it, once no CSS transition
// runs in the page: the UI renders some controls twice (one for each
// layout), keeps closed menus in the page, invisible, and animates menus
// and dialogs as they open.
func shown(css, text string) chromedp.JSPath {
	return chromedp.JSPath(fmt.Sprintf(`document.getAnimations().some(a => a instanceof CSSTransition) ? null : `+
		`[...document.querySelectorAll(%q)].find(e => e.checkVisibility({opacityProperty: true, visibilityProperty: true}) && `+
		`e.textContent.includes(%q)) ?? null`, css, text))
}

// do runs steps within uiStep; on failure it saves a screenshot and the
// page's text to the test's artifacts (go test -artifacts) and fails.
func (u *webUI) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, uiStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		u.fail(what, err)
	}
}

func (u *webUI) fail(what string, err error) {
	u.t.Helper()
	dir := u.t.ArtifactDir()
	if png, err := chromedp.Run(u.ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "webui.png"), png, 0o644)
	}
	text, _ := chromedp.Run(u.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	_ = os.WriteFile(filepath.Join(dir, "webui.txt"), []byte(text), 0o644)
	u.t.Fatalf("Web UI: %s: %v (screenshot and text in %s)", what, err, dir)
}

// run is do for an action with a value.
func run[T any](u *webUI, what string, a chromedp.Action[T]) T {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, uiStep)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		u.fail(what, err)
	}
	return v
}

// updateModal is the Send an Update dialog.
const updateModal = `[data-testid="update-confirmation-modal"]`

// sendUpdate loads the workflow's page and, as a person does, chooses More
// Actions, Send an Update, picks the Update's name, types data as its
// input and submits. ok says the Web UI reported success, and id is the
// Update ID the dialog filled in; otherwise msg is the error the dialog
// shows, and the dialog is cancelled.
func (u *webUI) sendUpdate(name, data string) (id, msg string, ok bool) {
	u.t.Helper()
	in := func(css string) string { return updateModal + " " + css }
	u.do("load the workflow's page", chromedp.Navigate(u.page), chromedp.WaitVisible(shown("h1", u.workflowID)))
	u.do("choose More Actions, Send an Update",
		chromedp.Click(shown(`button[aria-controls="workflow-actions"]:not([disabled])`, "More Actions")),
		chromedp.Click(shown(`[data-testid="update-button"][aria-disabled="false"]`, "Send an Update")),
		chromedp.WaitVisible(shown(updateModal, "Send an Update")))
	// The Name field lists the workflow's Updates, as its worker answers
	// the metadata query; without an answer it is a text field.
	list := run(u, "see the Name field", chromedp.Poll[string](fmt.Sprintf(`(() => {
		const m = [...document.querySelectorAll(%q)].find(e => e.open);
		if (!m) return null;
		if (m.querySelector('[data-testid="update-select-button"]')) return 'list';
		return m.querySelector('#update-name') ? 'text' : null;
	})()`, updateModal), chromedp.WithPollingTimeout(0)))
	if list == "list" {
		u.do("pick the Update "+name,
			chromedp.Click(shown(in(`[data-testid="update-select-button"]`), "")),
			chromedp.Click(shown(in(`li[role="option"]`), name)))
	} else {
		u.t.Logf("the Web UI lists no Updates of the workflow: typing the name %s", name)
		u.do("type the Update's name", chromedp.SendKeys(shown(in(`#update-name`), ""), name))
	}
	u.do("check the Update's name", chromedp.WaitVisible(chromedp.JSPath(fmt.Sprintf(
		`[...document.querySelectorAll(%q)].find(e => e.checkVisibility() && e.value === %q) ?? null`,
		in(`[data-testid="update-select"]`)+", "+in(`#update-name`), name))))
	id = run(u, "read the Update ID", chromedp.Value(shown(in(`[data-testid="update-id"]`), "")))
	// The editor formats the JSON when it loses focus, and the dialog
	// grows: a click on Submit while the editor has focus moves the button
	// between the mouse's press and release, and is lost. So the data is
	// typed, then the editor left, as a person would before submitting.
	u.do("type the data",
		chromedp.Click(shown(in(`.cm-content`), "")),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: data})
			return err
		}),
		chromedp.Blur(shown(in(`.cm-content`), "")),
		chromedp.WaitVisible(chromedp.JSPath(fmt.Sprintf(`[...document.querySelectorAll(%q)].find(e => {
			try { return e.innerText === JSON.stringify(JSON.parse(e.innerText), null, 2); } catch { return false; }
		}) ?? null`, in(`.cm-content`)))))
	if typed := run(u, "read the data", chromedp.Text(shown(in(`.cm-content`), ""))); compactJSON(typed) != compactJSON(data) {
		u.t.Fatalf("the Update's data in the dialog reads %q, want %s", typed, data)
	}
	u.do("submit", chromedp.Click(shown(in(`[data-testid="confirm-modal-button"]:not([disabled])`), "Submit")))
	// The outcome: a toast says it succeeded, or the dialog shows the
	// failure in an error alert (the Update's failure) or under its
	// buttons (an error of the request).
	msg = run(u, "see the outcome", chromedp.Poll[string](fmt.Sprintf(`(() => {
		if ([...document.querySelectorAll('body *')].some(e => e.childElementCount === 0 && e.checkVisibility() && e.textContent.trim() === 'Update successful')) {
			return 'Update successful';
		}
		const m = [...document.querySelectorAll(%q)].find(e => e.open);
		const alert = m && [...m.querySelectorAll('.alert.error, p[role="alert"]')].find(e => e.checkVisibility() && e.textContent.trim() !== '');
		return alert ? alert.textContent.trim() : null;
	})()`, updateModal), chromedp.WithPollingTimeout(0)))
	if msg == "Update successful" {
		return id, msg, true
	}
	u.do("cancel the dialog", chromedp.Click(shown(in(`button`), "Cancel")),
		chromedp.WaitNotPresent(chromedp.JSPath(fmt.Sprintf(`[...document.querySelectorAll(%q)].find(e => e.open) ?? null`, updateModal))))
	return id, msg, false
}

func compactJSON(s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return "invalid JSON: " + s
	}
	b, _ := json.Marshal(v)
	return string(b)
}
