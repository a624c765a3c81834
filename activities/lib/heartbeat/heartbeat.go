// Package heartbeat keeps a long activity visibly alive: it records a
// heartbeat now and every few seconds while the work goes on, so Temporal
// notices a lost worker by the heartbeat timeout and the Web UI shows what
// the activity is doing.
package heartbeat

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// Every is how often Keep records a heartbeat.
const Every = 2 * time.Second

// Keep records a heartbeat with detail now and every Every until stop is
// called or ctx ends. Outside an activity (a test calling a step) it does
// nothing.
func Keep(ctx context.Context, detail any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	activity.RecordHeartbeat(ctx, detail)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(Every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, detail)
			}
		}
	}()
	return func() { close(done) }
}
