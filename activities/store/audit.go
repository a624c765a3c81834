package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Audit actions.
const (
	AuditStart          = "start"
	AuditReset          = "reset"
	AuditReplay         = "replay"
	AuditCancel         = "cancel"
	AuditErase          = "erase"
	AuditResolve        = "conflict.resolve"
	AuditScheduleCreate = "schedule.create"
	AuditScheduleUpdate = "schedule.update"
	AuditScheduleDelete = "schedule.delete"
	// AuditDeliver is an event applied, by who delivered it: listed from
	// the deliveries log with AuditFilter.Deliveries.
	AuditDeliver = "deliver"
)

// AuditEntry is one act: who (Actor, the Temporal identity of the caller
// or the CLI's configured identity) did what (Action) to which run or
// schedule (Target, TargetRun), how (Via), and when.
type AuditEntry struct {
	ID          int64          `json:"id"`
	At          time.Time      `json:"at"`
	Actor       string         `json:"actor"`
	Via         string         `json:"via,omitempty"`
	Action      string         `json:"action"`
	Integration string         `json:"integration,omitempty"`
	Target      string         `json:"target,omitempty"`
	TargetRun   string         `json:"targetRun,omitempty"`
	Details     map[string]any `json:"details,omitempty"`
}

// UnknownActor is the actor of an act whose caller's identity is unknown
// (a reset made through Temporal: the server keeps none).
const UnknownActor = "unknown"

// RecordAudit keeps e once: an act already recorded for the same action,
// target and run (a retried step) is not recorded again, except that one
// recorded with an unknown actor takes e's actor. e.At is when it
// happened; now when zero.
func (s *Store) RecordAudit(ctx context.Context, e AuditEntry) error {
	details, err := json.Marshal(e.Details)
	if err != nil || e.Details == nil {
		details = []byte("{}")
	}
	if e.Actor == "" {
		e.Actor = UnknownActor
	}
	at := sql.NullTime{Time: e.At, Valid: !e.At.IsZero()}
	_, err = s.DB.ExecContext(ctx, `
INSERT INTO tether_audit (at, actor, via, action, integration, target, target_run, details)
VALUES (COALESCE($8, now()), $1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (action, target, target_run) DO UPDATE SET actor = EXCLUDED.actor, via = EXCLUDED.via
    WHERE tether_audit.actor = '`+UnknownActor+`' AND EXCLUDED.actor <> '`+UnknownActor+`'`, e.Actor, e.Via, e.Action, e.Integration, e.Target, e.TargetRun, string(details), at)
	return postgres.Classify(err, "record audit entry "+e.Action+" "+e.Target)
}

// AuditFilter selects audit entries; zero fields select all.
type AuditFilter struct {
	Integration string
	Actor       string
	Since       time.Time
	Limit       int
	// Deliveries lists the applied events too, each as a "deliver" act by
	// its authenticated sender.
	Deliveries bool
}

// ListAudit returns entries, newest first.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var w conditions
	if f.Integration != "" {
		w.add("integration = $%d", f.Integration)
	}
	if f.Actor != "" {
		w.add("actor = $%d", f.Actor)
	}
	if !f.Since.IsZero() {
		w.add("at >= $%d", f.Since)
	}
	q := `SELECT id, at, actor, via, action, integration, target, target_run, details FROM tether_audit`
	if f.Deliveries {
		q = `SELECT * FROM (` + q + ` UNION ALL
SELECT 0, applied_at, CASE sender WHEN '' THEN source ELSE sender END, 'webhook', '` + AuditDeliver + `', integration,
       source || '/' || delivery_id, '', jsonb_build_object('key', entity_key)
FROM tether_event_deliveries) AS acts`
	}
	q += w.sql() + " ORDER BY at DESC, id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.DB.QueryContext(ctx, q, w.args...)
	if err != nil {
		return nil, postgres.Classify(err, "list audit entries")
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var details []byte
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Via, &e.Action, &e.Integration, &e.Target, &e.TargetRun, &details); err != nil {
			return nil, postgres.Classify(err, "list audit entries")
		}
		_ = json.Unmarshal(details, &e.Details)
		out = append(out, e)
	}
	return out, postgres.Classify(rows.Err(), "list audit entries")
}

// RecordScheduleChanges keeps who created, updated and deleted which
// schedules (ids "<integration>/<kind>") in one apply.
func (s *Store) RecordScheduleChanges(ctx context.Context, actor, via string, created, updated, deleted []string) error {
	stamp := fmt.Sprint(time.Now().UnixNano()) // each apply is its own act
	for _, c := range []struct {
		action string
		ids    []string
	}{{AuditScheduleCreate, created}, {AuditScheduleUpdate, updated}, {AuditScheduleDelete, deleted}} {
		for _, id := range c.ids {
			integration, _, _ := strings.Cut(id, "/")
			if err := s.RecordAudit(ctx, AuditEntry{Actor: actor, Via: via, Action: c.action, Integration: integration,
				Target: id, TargetRun: stamp}); err != nil {
				return err
			}
		}
	}
	return nil
}
