package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/tetherflow/tether/activities/store"
)

// cmdAudit lists who did what to which run or schedule, newest first.
func cmdAudit(ctx context.Context, e *env, args []string) error {
	fs := e.flags("audit")
	var f store.AuditFilter
	var since time.Duration
	var asJSON bool
	fs.StringVar(&f.Integration, "integration", "", "only this integration's")
	fs.StringVar(&f.Actor, "actor", "", "only this actor's (a Temporal identity)")
	fs.DurationVar(&since, "since", 0, "only the last DURATION (e.g. 24h)")
	fs.IntVar(&f.Limit, "limit", 50, "at most this many")
	fs.BoolVar(&asJSON, "json", false, "one JSON object per line")
	fs.BoolVar(&f.Deliveries, "deliveries", false, "also every applied webhook event, by its authenticated sender")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if since > 0 {
		f.Since = time.Now().Add(-since)
	}
	db, err := e.db(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	entries, err := store.New(db).ListAudit(ctx, f)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.out)
		for _, en := range entries {
			if err := enc.Encode(en); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AT\tACTOR\tACTION\tINTEGRATION\tTARGET\tVIA\tREASON")
	for _, en := range entries {
		reason, _ := en.Details["reason"].(string)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", en.At.UTC().Format(time.RFC3339), en.Actor, en.Action, en.Integration, en.Target, en.Via, reason)
	}
	return w.Flush()
}
