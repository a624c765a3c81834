package store

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/failure"
)

func TestStore_AppliedBatches(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	type result struct {
		Inserted int `json:"inserted"`
	}

	if _, ok, err := s.BatchApplied(ctx, nil, "r1", 1); err != nil || ok {
		t.Fatalf("BatchApplied before any mark = %v, %v", ok, err)
	}
	// Marked in a transaction that rolls back: not applied.
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkBatchApplied(ctx, tx, "r1", 1, result{Inserted: 5}); err != nil {
		t.Fatalf("MarkBatchApplied: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.BatchApplied(ctx, nil, "r1", 1); err != nil || ok {
		t.Fatalf("BatchApplied after rollback = %v, %v; want not applied", ok, err)
	}

	// Two attempts at the same batch at once: the second waits for the
	// first and fails instead of committing the batch twice.
	tx1, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkBatchApplied(ctx, tx1, "r1", 1, result{Inserted: 5}); err != nil {
		t.Fatalf("MarkBatchApplied: %v", err)
	}
	second := make(chan error, 1)
	go func() {
		tx2, err := s.DB.BeginTx(ctx, nil)
		if err != nil {
			second <- err
			return
		}
		defer func() { _ = tx2.Rollback() }()
		second <- s.MarkBatchApplied(ctx, tx2, "r1", 1, result{Inserted: 5})
	}()
	select {
	case err := <-second:
		t.Fatalf("second attempt did not wait for the first: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := tx1.Commit(); err != nil {
		t.Fatal(err)
	}
	err = <-second
	if err == nil || !strings.Contains(err.Error(), ErrBatchAlreadyApplied.Error()) || failure.IsPermanent(err) {
		t.Errorf("second attempt: %v; want a retryable error saying the batch was already applied", err)
	}

	got, ok, err := s.BatchApplied(ctx, nil, "r1", 1)
	if err != nil || !ok || string(got) != `{"inserted": 5}` {
		t.Errorf("BatchApplied = %s, %v, %v; want the recorded result", got, ok, err)
	}
	if err := s.MarkBatchApplied(ctx, nil, "r1", 2, nil); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.BatchApplied(ctx, nil, "r1", 2); err != nil || !ok || string(got) != "null" {
		t.Errorf("BatchApplied of a nil result = %s, %v, %v", got, ok, err)
	}

	// Once the run ends its markers and staged pages go; other runs' stay.
	if err := s.StagePage(ctx, "r1", 1, "", raw([]string{`1`})); err != nil {
		t.Fatal(err)
	}
	if err := s.StagePage(ctx, "r2", 1, "", raw([]string{`2`})); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkBatchApplied(ctx, nil, "r2", 1, result{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetRun(ctx, "r1"); err != nil {
		t.Fatalf("ForgetRun: %v", err)
	}
	if _, ok, err := s.BatchApplied(ctx, nil, "r1", 1); err != nil || ok {
		t.Errorf("r1 batch 1 still marked after ForgetRun: %v, %v", ok, err)
	}
	if _, err := s.LoadPage(ctx, "r1", 1, ""); !failure.IsType(err, failure.TypeStagedPageMissing) {
		t.Errorf("r1 page 1 after ForgetRun: %v; want %s", err, failure.TypeStagedPageMissing)
	}
	if _, ok, err := s.BatchApplied(ctx, nil, "r2", 1); err != nil || !ok {
		t.Errorf("ForgetRun(r1) removed r2's marker: %v, %v", ok, err)
	}
	if _, err := s.LoadPage(ctx, "r2", 1, ""); err != nil {
		t.Errorf("ForgetRun(r1) removed r2's page: %v", err)
	}
}
