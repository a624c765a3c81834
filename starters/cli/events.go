package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/tetherflow/tether/activities/connector/pgsource/capture"
	"github.com/tetherflow/tether/activities/syncstep"
	capturewf "github.com/tetherflow/tether/workflows/capture"
	"github.com/tetherflow/tether/workflows/events"
)

// cmdEvents shows how an integration's webhook events are being applied:
// every shard workflow's progress, and the totals.
func cmdEvents(ctx context.Context, e *env, args []string) error {
	fs := e.flags("events")
	file := fs.String("config", os.Getenv("TETHER_CONFIG"), "the worker's configuration file (TETHER_CONFIG)")
	dir := fs.String("dir", "", "directory of integration files (default integrations_dir, TETHER_INTEGRATIONS_DIR)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("want one integration: tether events INTEGRATION")}
	}
	_, reg, err := e.loadIntegrations(fs, *file, *dir)
	if err != nil {
		return err
	}
	def, err := reg.Get(pos[0])
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tWORKFLOW\tPENDING\tRECEIVED\tINSERTED\tUPDATED\tDELETED\tUNCHANGED\tSTALE\tSUPERSEDED\tDUPLICATES\tQUARANTINED\tLAST APPLIED\tLAST ERROR")
	var total events.Progress
	running := 0
	for shard := range def.EventShards() {
		id := events.WorkflowID(def.Name, shard)
		resp, err := c.QueryWorkflow(ctx, id, "", events.QueryProgress)
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			continue // never ran
		}
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		var p events.Progress
		if err := resp.Get(&p); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		running++
		k := p.Counts
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", shard, id, p.Pending, k.Received, k.Inserted,
			k.Updated, k.Deleted, k.Unchanged, k.Stale, k.Superseded, k.Duplicates+p.DroppedRedeliveries, k.Quarantined,
			stamp(p.LastAppliedAt), clipText(p.LastError, 80))
		total.Pending += p.Pending
		total.Counts = total.Counts.Add(p.Counts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "%s: %d of %d shards have run (counts since each shard's last start); %d events pending, %d received, %d stale skipped, %d quarantined\n",
		def.Name, running, def.EventShards(), total.Pending, total.Counts.Received, total.Counts.Stale, total.Counts.Quarantined)
	return nil
}

// cmdCapture shows an integration's change capture (its progress and
// lag), or prints the SQL that installs or removes it, for a DBA.
func cmdCapture(ctx context.Context, e *env, args []string) error {
	fs := e.flags("capture")
	file := fs.String("config", os.Getenv("TETHER_CONFIG"), "the worker's configuration file (TETHER_CONFIG)")
	dir := fs.String("dir", "", "directory of integration files (default integrations_dir, TETHER_INTEGRATIONS_DIR)")
	remove := fs.Bool("remove", false, "sql: print the SQL that removes the capture instead")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	sql := len(pos) == 2 && pos[0] == "sql"
	if !sql && len(pos) != 1 {
		return usageError{errors.New("want: tether capture INTEGRATION, or tether capture sql INTEGRATION [--remove]")}
	}
	_, reg, err := e.loadIntegrations(fs, *file, *dir)
	if err != nil {
		return err
	}
	def, err := reg.Get(pos[len(pos)-1])
	if err != nil {
		return err
	}
	if sql {
		if def.Source.Postgres == nil {
			return fmt.Errorf("integration %q has no PostgreSQL source to capture", def.Name)
		}
		t := capture.For(def.Name, *def.Source.Postgres)
		if t.Schema == "" {
			return fmt.Errorf("integration %q: source.postgres.schema is not set; name the table's schema to print its SQL (the worker uses the connection's current schema)", def.Name)
		}
		if *remove {
			fmt.Fprint(e.out, capture.RemoveSQL(t))
		} else {
			fmt.Fprint(e.out, capture.InstallSQL(t))
		}
		return nil
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	id := capturewf.WorkflowID(def.Name)
	resp, err := c.QueryWorkflow(ctx, id, "", capturewf.QueryProgress)
	if err != nil {
		return fmt.Errorf("%s: %w (is events.capture set and a worker running?)", id, err)
	}
	var p capturewf.Progress
	if err := resp.Get(&p); err != nil {
		return err
	}
	lag := "0s (outbox empty)"
	if !p.Oldest.IsZero() {
		lag = time.Since(p.Oldest).Truncate(time.Millisecond).String()
	}
	k := p.Counts
	fmt.Fprintf(e.out, "%s: %s (workflow %s, %d executions)\n", def.Name, p.Status, id, p.Executions)
	fmt.Fprintf(e.out, "  applied: %d batches, %d changes: %d inserted, %d updated, %d deleted, %d unchanged, %d stale, %d superseded, %d quarantined\n",
		p.Batches, k.Received, k.Inserted, k.Updated, k.Deleted, k.Unchanged, k.Stale, k.Superseded, k.Quarantined)
	fmt.Fprintf(e.out, "  outbox: %d changes waiting, lag %s; last applied %s\n", p.Pending, lag, stamp(p.LastAppliedAt))
	if p.LastError != "" {
		fmt.Fprintf(e.out, "  last error (retrying): %s\n", p.LastError)
	}
	fmt.Fprintln(e.out, "  (figures as of the capture's last minute; live: tether_capture_lag_seconds on the worker's /metrics)")
	if live, at, ok := liveCapture(ctx, c, id); ok {
		lag := "0s (outbox empty)"
		if !live.Oldest.IsZero() {
			lag = at.Sub(live.Oldest).Truncate(time.Millisecond).String()
		}
		fmt.Fprintf(e.out, "  now (heartbeat %s ago): %d batches, %d changes applied in this run; %d waiting, lag %s\n",
			time.Since(at).Truncate(time.Second), live.Batches, live.Counts.Received, live.Pending, lag)
	}
	return nil
}

// liveCapture reads the running CaptureChanges's last heartbeat: its
// figures so far and when it reported them.
func liveCapture(ctx context.Context, c client.Client, workflowID string) (syncstep.CaptureOutput, time.Time, bool) {
	d, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return syncstep.CaptureOutput{}, time.Time{}, false
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() != syncstep.CaptureChangesName || pa.GetHeartbeatDetails() == nil {
			continue
		}
		var out syncstep.CaptureOutput
		// A heartbeat taken while a batch is applied is only text: skip it.
		if err := converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &out); err != nil {
			return syncstep.CaptureOutput{}, time.Time{}, false
		}
		return out, pa.GetLastHeartbeatTime().AsTime(), true
	}
	return syncstep.CaptureOutput{}, time.Time{}, false
}

// stamp formats a time for a table, "-" when zero.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateTime + "Z")
}

// clipText shortens s to n runes.
func clipText(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
