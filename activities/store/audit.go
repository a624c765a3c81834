package store

import (
	"context"
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
	AuditScheduleCreate = "schedule.create"
	AuditScheduleUpdate = "schedule.update"
	AuditScheduleDelete = "schedule.delete"
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

// RecordAudit keeps e once: an act already recorded for the same action,
// target and run (a retried step) is not recorded again.
func (s *Store) RecordAudit(ctx context.Context, e AuditEntry) error {
	details, err := json.Marshal(e.Details)
	if err != nil || e.Details == nil {
		details = []byte("{}")
	}
	if e.Actor == "" {
		e.Actor = "unknown"
	}
	_, err = s.DB.ExecContext(ctx, `
INSERT INTO tether_audit (actor, via, action, integration, target, target_run, details)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (action, target, target_run) DO NOTHING`, e.Actor, e.Via, e.Action, e.Integration, e.Target, e.TargetRun, string(details))
	return postgres.Classify(err, "record audit entry "+e.Action+" "+e.Target)
}

// AuditFilter selects audit entries; zero fields select all.
type AuditFilter struct {
	Integration string
	Actor       string
	Since       time.Time
	Limit       int
}

// ListAudit returns entries, newest first.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Integration != "" {
		add("integration = $%d", f.Integration)
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if !f.Since.IsZero() {
		add("at >= $%d", f.Since)
	}
	q := `SELECT id, at, actor, via, action, integration, target, target_run, details FROM tether_audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY at DESC, id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.DB.QueryContext(ctx, q, args...)
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
