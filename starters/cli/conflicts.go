package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/activities/syncstep"
	twowaywf "github.com/tetherflow/tether/workflows/twoway"
)

// cmdConflicts lists the conflicts of two-way integrations, shows one, or
// resolves a parked one with the workflow's resolve Update.
func cmdConflicts(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "resolve" {
		return cmdConflictsResolve(ctx, e, args[1:])
	}
	fs := e.flags("conflicts")
	var f store.ConflictFilter
	var all, asJSON bool
	fs.StringVar(&f.Integration, "integration", "", "only this integration's")
	fs.BoolVar(&all, "all", false, "every conflict, resolved ones too (default: those waiting for a person)")
	fs.IntVar(&f.Limit, "limit", 50, "at most this many")
	fs.BoolVar(&asJSON, "json", false, "one JSON object per line")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if !all {
		f.Status = store.ConflictParked
	}
	if len(pos) == 1 { // tether conflicts ID: one, whole
		if f.ID, err = strconv.ParseInt(pos[0], 10, 64); err != nil {
			return usageError{fmt.Errorf("%q is not a conflict id", pos[0])}
		}
		f.Status = ""
	}
	db, err := e.db(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := store.New(db).ListConflicts(ctx, f)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.out)
		for _, c := range list {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
		return nil
	}
	if f.ID != 0 {
		if len(list) == 0 {
			return fmt.Errorf("no conflict %d", f.ID)
		}
		return showConflict(e, list[0])
	}
	w := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tINTEGRATION\tA KEY\tB KEY\tFIELDS\tSTATUS\tDETECTED\tRESOLUTION")
	for _, c := range list {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Integration, c.AKey, c.BKey, strings.Join(c.Fields, ","), c.Status,
			c.DetectedAt.UTC().Format(time.RFC3339), c.Resolution)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(list) == 0 && !all {
		fmt.Fprintln(e.out, "no conflict waits for a person")
	}
	return nil
}

// showConflict prints a conflict field by field: the base and both sides.
func showConflict(e *env, c store.Conflict) error {
	fmt.Fprintf(e.out, "conflict %d of %s (pair %d: a %q, b %q), %s, detected %s, policy %s\n",
		c.ID, c.Integration, c.PairID, c.AKey, c.BKey, c.Status, c.DetectedAt.UTC().Format(time.RFC3339), c.Policy)
	if c.Resolution != "" {
		fmt.Fprintf(e.out, "resolution: %s", c.Resolution)
		if c.ResolvedBy != "" {
			fmt.Fprintf(e.out, " (by %s)", c.ResolvedBy)
		}
		fmt.Fprintln(e.out)
	}
	recs := make([]map[string]any, 3)
	for i, raw := range []json.RawMessage{c.Base, c.A, c.B} {
		if raw != nil {
			_ = json.Unmarshal(raw, &recs[i])
		}
	}
	fields := map[string]bool{}
	for _, r := range recs {
		for k := range r {
			fields[k] = true
		}
	}
	cell := func(r map[string]any, k string, deleted bool) string {
		switch {
		case deleted:
			return "(deleted)"
		case r == nil:
			return "-"
		}
		v, ok := r[k]
		if !ok {
			return "-"
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	w := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "FIELD\tBASE\tA\tB\t")
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		mark := ""
		if slices.Contains(c.Fields, k) {
			mark = "both changed"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k, cell(recs[0], k, false), cell(recs[1], k, c.ADeleted), cell(recs[2], k, c.BDeleted), mark)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if c.Status == store.ConflictParked {
		fmt.Fprintf(e.out, "resolve: tether conflicts resolve %d --choose a|b|merge --prefer a|b|values --set FIELD=JSON...\n", c.ID)
	}
	return nil
}

// cmdConflictsResolve sends the resolve Update for a parked conflict.
func cmdConflictsResolve(ctx context.Context, e *env, args []string) error {
	fs := e.flags("conflicts resolve")
	var in syncstep.ResolveInput
	var sets multiFlag
	fs.StringVar(&in.Choose, "choose", "", `"a" or "b" (keep that side's record, or its delete), "merge" (both sides' edits, --prefer deciding the fields both changed) or "values" (the record --set gives)`)
	fs.StringVar(&in.Prefer, "prefer", "", `with --choose merge: "a" or "b"`)
	fs.Var(&sets, "set", "with --choose values: FIELD=VALUE, VALUE as JSON (\"Ada\", 3, null) or plain text; repeat for each field")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("want one conflict id: tether conflicts resolve ID --choose a|b|merge|values")}
	}
	if in.Conflict, err = strconv.ParseInt(pos[0], 10, 64); err != nil {
		return usageError{fmt.Errorf("%q is not a conflict id", pos[0])}
	}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return usageError{fmt.Errorf("--set %q: want FIELD=VALUE", s)}
		}
		if in.Values == nil {
			in.Values = map[string]any{}
		}
		var val any
		if json.Unmarshal([]byte(v), &val) != nil {
			val = v
		}
		in.Values[k] = val
	}
	db, err := e.db(ctx)
	if err != nil {
		return err
	}
	list, err := store.New(db).ListConflicts(ctx, store.ConflictFilter{ID: in.Conflict})
	db.Close()
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return fmt.Errorf("no conflict %d", in.Conflict)
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: twowaywf.WorkflowID(list[0].Integration),
		UpdateName: twowaywf.UpdateResolve, Args: []any{in}, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		return fmt.Errorf("resolve conflict %d: %w", in.Conflict, err)
	}
	var res syncstep.ResolveResult
	if err := h.Get(ctx, &res); err != nil {
		return fmt.Errorf("resolve conflict %d: %w", in.Conflict, err)
	}
	b, _ := json.Marshal(res.Result)
	fmt.Fprintf(e.out, "conflict %d resolved (%s) by %s: %d writes; both sides now hold %s\n", res.Conflict, res.Resolution, res.ResolvedBy, res.Writes, b)
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
