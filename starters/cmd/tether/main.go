// Command tether is the starter CLI: `tether up` runs the development stack
// and a demo sync; `tether start INTEGRATION --watch` starts a sync and shows
// its progress bar. Run `tether help` for every command.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/workers/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// With the OTEL_* environment set, a start is the root of the run's
	// trace (telemetry.StartTracing).
	_, flush, err := telemetry.StartTracing(ctx, "tether-cli")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tether: %v\n", err)
		os.Exit(1)
	}
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = flush(fctx)
	cancel()
	os.Exit(code)
}
