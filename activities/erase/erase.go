// Package erase holds the erasure step: a subject (an integration's
// record key) is deleted from every destination of the integration and
// from tether's own state, and the act is audited.
package erase

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/tetherflow/tether/activities/catalog"
	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/activities/lib/record"
	"github.com/tetherflow/tether/activities/run"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
)

// Activities erase subjects.
type Activities struct {
	Catalog *catalog.Catalog
	Store   *store.Store
	DB      *sql.DB
	// History, when set, names who asked for the erasure in the audit.
	History run.History
}

// Register puts the steps on a worker.
func Register(r worker.ActivityRegistry, a *Activities) {
	r.RegisterActivityWithOptions(a.EraseRelated, activity.RegisterOptions{Name: syncstep.EraseRelated.Name()})
	r.RegisterActivityWithOptions(a.EraseDestinations, activity.RegisterOptions{Name: syncstep.EraseDestinations.Name()})
	r.RegisterActivityWithOptions(a.EraseState, activity.RegisterOptions{Name: syncstep.EraseState.Name()})
}

// EraseRelated lists the other integrations that hold the subject: those
// that read the same source (the same API resource, table or connector
// configuration, so the same record keys) and have run, by name.
func (a *Activities) EraseRelated(ctx context.Context, in syncstep.EraseInput) ([]string, error) {
	c, err := a.Catalog.Get(in.Integration, "")
	if err != nil {
		return nil, err
	}
	same := sourceOf(c.Def)
	var out []string
	for _, name := range a.Catalog.Names() {
		if name == in.Integration {
			continue
		}
		o, err := a.Catalog.Get(name, "")
		if err != nil || sourceOf(o.Def) != same || o.Def.KeyField != c.Def.KeyField {
			continue
		}
		runs, err := a.Store.ListRuns(ctx, name, 1)
		if err != nil {
			return nil, err
		}
		if len(runs) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// sourceOf names what a definition reads, so that two definitions reading
// the same records compare equal.
func sourceOf(d integration.Definition) string {
	kind, cfg := d.Source.Spec()
	switch s := cfg.(type) {
	case httpsource.Config:
		return kind + " " + strings.TrimRight(s.BaseURL, "/") + "/" + strings.TrimLeft(s.Path, "/")
	case pgsource.Config:
		return fmt.Sprintf("%s %s|%s|%s.%s", kind, s.DSN, s.DSNEnv, s.Schema, s.Table)
	}
	b, _ := json.Marshal(cfg)
	return kind + " " + string(b)
}

// EraseDestinations deletes the subject's row from every PostgreSQL
// destination of the integration (with its before-images), each in its
// own transaction, and the subject's record from every HTTP destination
// that holds one (by its id in the identity map, with the destination's
// delete endpoint); a destination that cannot delete it (a notify
// destination, a composite key) is reported with what to do. Deleting again deletes nothing: a retry is
// safe.
func (a *Activities) EraseDestinations(ctx context.Context, in syncstep.EraseInput) ([]syncstep.Erased, error) {
	c, err := a.Catalog.Get(in.Integration, "")
	if err != nil {
		return nil, err
	}
	var out []syncstep.Erased
	// HTTP destinations first: their deletes need the identity map,
	// which EraseState empties.
	for _, st := range c.Steps {
		place := "destination " + st.Dest.Name
		var n int
		var err error
		switch sink := st.Sink.(type) {
		case *pgsink.Sink:
			n, err = eraseIn(ctx, a.DB, sink, in.Key)
			if sink.Writer().Table().OnErase == pgsink.EraseAnonymise {
				place += " (anonymised)"
			}
		case *httpsink.Sink:
			n, err = sink.Erase(ctx, in.Key)
		default:
			out = append(out, syncstep.Erased{Place: place,
				Note: fmt.Sprintf("not erased: destination %q cannot delete by key; delete record %q there by hand", st.Dest.Name, in.Key)})
			continue
		}
		switch {
		case failure.IsPermanent(err):
			out = append(out, syncstep.Erased{Place: place, Note: "not erased: " + err.Error()})
		case err != nil:
			return nil, fmt.Errorf("destination %q: %w", st.Dest.Name, err) // retried
		default:
			out = append(out, syncstep.Erased{Place: place, Deleted: n})
		}
	}
	return out, nil
}

func eraseIn(ctx context.Context, db *sql.DB, sink *pgsink.Sink, key string) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, postgres.Classify(err, "begin erasure")
	}
	defer func() { _ = tx.Rollback() }()
	n, err := sink.Erase(ctx, postgres.Joined(tx), key)
	if err != nil {
		return 0, err
	}
	return n, postgres.Classify(tx.Commit(), "commit erasure")
}

// EraseState deletes the subject from tether's own state (quarantine,
// staged pages, event deliveries, the identity maps of the integration's
// destinations, reconciliation rows) and records the erasure, with who
// asked for it, in the audit.
func (a *Activities) EraseState(ctx context.Context, in syncstep.EraseInput) ([]syncstep.Erased, error) {
	c, err := a.Catalog.Get(in.Integration, "")
	if err != nil {
		return nil, err
	}
	var namespaces []string
	for _, st := range c.Steps {
		if st.Dest.Identity != "" {
			namespaces = append(namespaces, st.Dest.Identity)
		}
		for _, f := range st.IDs {
			namespaces = append(namespaces, f.Namespace)
		}
	}
	hasKey := func(raw json.RawMessage) bool {
		rec, ok := record.Object(raw)
		if !ok {
			return false
		}
		k, ok := record.Scalar(record.Lookup(rec, c.KeyPath))
		return ok && k == in.Key
	}
	counts, err := a.Store.EraseState(ctx, in.Integration, in.Key, namespaces, hasKey)
	if err != nil {
		return nil, err
	}
	places := make([]string, 0, len(counts))
	for p := range counts {
		places = append(places, p)
	}
	sort.Strings(places)
	out := make([]syncstep.Erased, 0, len(places))
	for _, p := range places {
		out = append(out, syncstep.Erased{Place: p, Deleted: counts[p]})
	}
	return out, a.audit(ctx, in, out)
}

// audit records the erasure once, by the identity that started it.
func (a *Activities) audit(ctx context.Context, in syncstep.EraseInput, done []syncstep.Erased) error {
	info := activity.GetInfo(ctx)
	actor := ""
	if a.History != nil {
		acts, err := run.ReadActs(ctx, a.History)
		if err != nil {
			return err
		}
		actor = acts.StartedBy
	}
	details := map[string]any{"key": in.Key, "reason": in.Reason}
	targetRun := info.WorkflowExecution.RunID
	if in.Of != "" { // one erasure, audited per integration
		details["of"], targetRun = in.Of, targetRun+"/"+in.Integration
	}
	for _, d := range done {
		details[d.Place] = d.Deleted
	}
	return a.Store.RecordAudit(ctx, store.AuditEntry{Actor: actor, Action: store.AuditErase, Integration: in.Integration,
		Target: info.WorkflowExecution.ID, TargetRun: targetRun, Details: details})
}
