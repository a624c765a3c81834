package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tetherflow/tether/activities/lib/cursor"
	"github.com/tetherflow/tether/activities/lib/postgres"
)

// CheckpointState is where an integration's next run starts.
type CheckpointState struct {
	// Checkpoint is the (cursor, key) of the last committed record.
	Checkpoint cursor.Checkpoint
	// Position is the next page to read when the last run did not finish;
	// zero when it finished (start from the first page, after Checkpoint).
	Position cursor.Position
	// RunID and Seq name the run and batch that committed it.
	RunID string
	Seq   int
	// UpdatedAt is when it was saved (set by the store).
	UpdatedAt time.Time
}

// LoadCheckpoint returns an integration's checkpoint state, and false when
// none was ever saved.
func (s *Store) LoadCheckpoint(ctx context.Context, q Querier, integration string) (CheckpointState, bool, error) {
	what := fmt.Sprintf("load checkpoint of %q", integration)
	var (
		st      CheckpointState
		cp, pos []byte
	)
	err := s.on(q).QueryRowContext(ctx, `
SELECT checkpoint, position, run_id, seq, updated_at FROM tether_checkpoints WHERE integration = $1`,
		integration).Scan(&cp, &pos, &st.RunID, &st.Seq, &st.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return CheckpointState{}, false, nil
	}
	if err != nil {
		return CheckpointState{}, false, postgres.Classify(err, what)
	}
	if err := decodeJSON(cp, &st.Checkpoint, what+": checkpoint"); err != nil {
		return CheckpointState{}, false, err
	}
	if err := decodeJSON(pos, &st.Position, what+": position"); err != nil {
		return CheckpointState{}, false, err
	}
	return st, true, nil
}

// SaveCheckpoint records an integration's checkpoint state. Call it in the
// transaction that commits the batch, so the checkpoint moves exactly when
// the destination does. Within one run it never moves back: a save carrying
// a lower Seq than the one recorded for the same run is ignored.
func (s *Store) SaveCheckpoint(ctx context.Context, q Querier, integration string, st CheckpointState) error {
	return s.writeCheckpoint(ctx, q, integration, st,
		"WHERE c.run_id <> EXCLUDED.run_id OR c.seq <= EXCLUDED.seq", fmt.Sprintf("save checkpoint of %q", integration))
}

// writeCheckpoint upserts the checkpoint row, under guard (a WHERE clause
// on the conflict update, or "" to overwrite).
func (s *Store) writeCheckpoint(ctx context.Context, q Querier, integration string, st CheckpointState, guard, what string) error {
	cp, err := checkpointJSON(st.Checkpoint)
	if err != nil {
		return err
	}
	pos, err := positionJSON(st.Position)
	if err != nil {
		return err
	}
	_, err = s.on(q).ExecContext(ctx, `
INSERT INTO tether_checkpoints AS c (integration, checkpoint, position, run_id, seq, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (integration) DO UPDATE SET
	checkpoint = EXCLUDED.checkpoint,
	position = EXCLUDED.position,
	run_id = EXCLUDED.run_id,
	seq = EXCLUDED.seq,
	updated_at = now()
`+guard,
		integration, cp, pos, st.RunID, st.Seq)
	return postgres.Classify(err, what)
}

// ClearPosition records that an integration's run finished: the next run
// starts from the checkpoint, not in the middle of a pagination.
func (s *Store) ClearPosition(ctx context.Context, integration string) error {
	_, err := s.DB.ExecContext(ctx,
		`UPDATE tether_checkpoints SET position = NULL, updated_at = now() WHERE integration = $1 AND position IS NOT NULL`,
		integration)
	return postgres.Classify(err, fmt.Sprintf("clear position of %q", integration))
}

// RestoreCheckpoint puts an integration's checkpoint back to st
// unconditionally, e.g. where a compensated run found it.
func (s *Store) RestoreCheckpoint(ctx context.Context, q Querier, integration string, st CheckpointState) error {
	return s.writeCheckpoint(ctx, q, integration, st, "", fmt.Sprintf("restore checkpoint of %q", integration))
}
