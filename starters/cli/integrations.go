package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
)

// cmdIntegrations lists the integrations a worker runs: the Go ones it is
// built with (the demo's, on a worker with a crm connection) and those of
// its integration files (--dir, default $TETHER_INTEGRATIONS_DIR), each
// marked where it is defined.
func cmdIntegrations(_ context.Context, e *env, args []string) error {
	fs := e.flags("integrations")
	dir := fs.String("dir", os.Getenv("TETHER_INTEGRATIONS_DIR"), "directory of integration files (TETHER_INTEGRATIONS_DIR)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCHEMA\tKEY\tCURSOR\tATOMIC\tDEFINED IN\tDESCRIPTION")
	// The demo's Go integrations run on a worker with a crm connection.
	for _, d := range integrations.All(config.Connection{BaseURL: "http://127.0.0.1:8081", Auth: "none"}) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\n", d.Name, d.Schema, d.KeyField, orDash(d.CursorField), d.Atomic,
			"go (connections."+integrations.CRM+")", d.Description)
	}
	var bad []*fileResult
	if *dir != "" {
		for _, r := range checkFiles([]string{*dir}, false, nil) {
			if len(r.problems) > 0 {
				bad = append(bad, r)
				continue
			}
			s := r.spec
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\n", s.Name, s.Schema, s.KeyField, orDash(s.CursorField), s.Atomic, "yaml: "+r.file, s.Description)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(bad) == 0 {
		return nil
	}
	for _, r := range bad {
		for _, p := range r.problems {
			fmt.Fprintln(e.errOut, p)
		}
	}
	return errors.New("some integration files have problems and are not listed (see `tether validate`)")
}
