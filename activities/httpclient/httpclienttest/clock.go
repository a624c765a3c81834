// Package httpclienttest helps test the HTTP connectors: a fake clock for
// their pacing, so a test sees how long a connector chose to wait instead
// of timing it, and a check that an error is classified.
package httpclienttest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Clock is a fake clock. Sleep advances it at once and records the wait.
// It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

// NewClock returns a Clock at a fixed instant in 2030.
func NewClock() *Clock {
	return &Clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Sleep advances the clock by d and records d, unless ctx is done.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.sleeps = append(c.sleeps, d)
	return nil
}

// Waits returns every duration slept so far, in order.
func (c *Clock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// AppError returns err's *temporal.ApplicationError or fails the test.
func AppError(t testing.TB, err error) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an ApplicationError", err, err)
	}
	return ae
}
