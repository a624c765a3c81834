// Command tether is the starter CLI: `tether up` runs the development stack
// and a demo sync; `tether start INTEGRATION --watch` starts a sync and shows
// its progress bar. Run `tether help` for every command.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tetherflow/tether/starters/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
