package schedules

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/integration"
)

// Result lists schedule ids by what Apply did to them, each list sorted.
type Result struct {
	Created   []string
	Updated   []string
	Unchanged []string
	Deleted   []string
}

// IDs are the ids of the schedules Apply keeps: created, updated or
// unchanged.
func (r Result) IDs() []string {
	return slices.Concat(r.Created, r.Updated, r.Unchanged)
}

// Changed reports whether Apply created, updated or deleted a schedule.
func (r Result) Changed() bool {
	return len(r.Created)+len(r.Updated)+len(r.Deleted) > 0
}

// Apply makes the server's schedules of opts.Owner those defs declare:
// it creates the missing ones, updates those whose declaration changed,
// leaves the others untouched (no update at all), and deletes the
// schedules of opts.Owner no definition declares any more. Schedules of
// another owner, or not created by tether, are never changed.
//
// Nothing is touched when a definition is invalid. Otherwise every
// schedule is handled on its own: the error, when not nil, joins a line
// for each schedule that could not be handled (the others were), and the
// Result says what was done.
//
// Several workers may apply the same declarations at once: a schedule
// another worker created or updated a moment ago is seen as such (created
// once, no second update), and one already deleted is not an error.
func Apply(ctx context.Context, c client.Client, opts Options, defs []integration.Definition) (Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Result{}, err
	}
	want, err := Build(opts, defs)
	if err != nil {
		return Result{}, err
	}
	a := &applier{sc: c.ScheduleClient(), opts: opts}
	var errs []error
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w.ID] = true
		if err := a.apply(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	// Listing is eventually consistent: a schedule created a moment ago
	// may be missing, and is deleted by the next Apply.
	listed, err := List(ctx, c)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range listed {
		if l.Stamp.Owner != opts.Owner || wanted[l.ID] {
			continue
		}
		if err := a.delete(ctx, l.ID); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ids := range []*[]string{&a.res.Created, &a.res.Updated, &a.res.Unchanged, &a.res.Deleted} {
		slices.Sort(*ids)
	}
	return a.res, errors.Join(errs...)
}

// applier applies one set of declarations.
type applier struct {
	sc   client.ScheduleClient
	opts Options
	res  Result
}

// errSkipForeign stops an update of a schedule that is not ours.
var errSkipForeign = errors.New("not this owner's schedule")

// apply makes the declared schedule w so on the server.
func (a *applier) apply(ctx context.Context, w Desired) error {
	h := a.sc.GetHandle(ctx, w.ID)
	desc, err := h.Describe(ctx)
	if isNotFound(err) {
		created, err := a.create(ctx, w)
		if err != nil || created {
			return err
		}
		// Another worker created it a moment ago: compare with that.
		desc, err = h.Describe(ctx)
		if err != nil {
			return fmt.Errorf("schedule %s: describe: %w", w.ID, err)
		}
	} else if err != nil {
		return fmt.Errorf("schedule %s: describe: %w", w.ID, err)
	}
	cur := CurrentOf(desc)
	switch Decide(a.opts.Owner, w, cur) {
	case Foreign:
		return a.foreign(w, cur.Owner)
	case Unchanged:
		a.unchanged(w)
		return nil
	}
	return a.update(ctx, h, w)
}

// create creates w; it reports false, without an error, when the
// schedule exists already.
func (a *applier) create(ctx context.Context, w Desired) (bool, error) {
	_, err := a.sc.Create(ctx, w.Options)
	switch {
	case isAlreadyExists(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("schedule %s: create: %w", w.ID, err)
	}
	a.res.Created = append(a.res.Created, w.ID)
	a.opts.Logger.Info("schedule created", a.attrs(w)...)
	return true, nil
}

// update replaces the schedule's spec, policies and action with w's. The
// SDK describes the schedule again just before it updates it: a schedule
// another worker updated meanwhile is left alone.
func (a *applier) update(ctx context.Context, h client.ScheduleHandle, w Desired) error {
	var cur Current
	verdict := Update
	err := h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		cur = CurrentOf(&in.Description)
		switch verdict = Decide(a.opts.Owner, w, cur); verdict {
		case Foreign:
			return nil, errSkipForeign
		case Unchanged:
			return nil, temporal.ErrSkipScheduleUpdate
		}
		return Updated(w, in.Description), nil
	}})
	switch {
	case isNotFound(err):
		// Deleted meanwhile (by a worker that no longer declares it).
		created, err := a.create(ctx, w)
		if err == nil && !created {
			err = fmt.Errorf("schedule %s: deleted and created again by another worker while this one updated it; apply again", w.ID)
		}
		return err
	case errors.Is(err, errSkipForeign):
		return a.foreign(w, cur.Owner)
	case err != nil:
		return fmt.Errorf("schedule %s: update: %w", w.ID, err)
	case verdict == Unchanged:
		a.unchanged(w)
		return nil
	}
	a.res.Updated = append(a.res.Updated, w.ID)
	a.opts.Logger.Info("schedule updated", a.attrs(w)...)
	return nil
}

// delete deletes the schedule id of this owner.
func (a *applier) delete(ctx context.Context, id string) error {
	h := a.sc.GetHandle(ctx, id)
	desc, err := h.Describe(ctx)
	switch {
	case isNotFound(err):
		return nil // deleted already
	case err != nil:
		return fmt.Errorf("schedule %s: describe: %w", id, err)
	case CurrentOf(desc).Owner != a.opts.Owner:
		return nil // the list was stale: not ours
	}
	if err := h.Delete(ctx); err != nil && !isNotFound(err) {
		return fmt.Errorf("schedule %s: delete: %w", id, err)
	}
	a.res.Deleted = append(a.res.Deleted, id)
	a.opts.Logger.Info("schedule deleted: no integration declares it any more", "schedule", id, "owner", a.opts.Owner)
	return nil
}

func (a *applier) unchanged(w Desired) {
	a.res.Unchanged = append(a.res.Unchanged, w.ID)
	a.opts.Logger.Debug("schedule unchanged", "schedule", w.ID, "owner", a.opts.Owner)
}

// foreign is the error for a declared schedule whose id is taken by a
// schedule this owner did not create.
func (a *applier) foreign(w Desired, owner string) error {
	if owner == "" {
		return fmt.Errorf("schedule %s exists but was not created by tether, which never changes such a schedule: delete it (temporal schedule delete --schedule-id %s) or rename integration %q",
			w.ID, w.ID, w.Stamp.Integration)
	}
	return fmt.Errorf("schedule %s belongs to tether owner %q, not to this one (%q): two deployments declare integration %q; rename one, or give both the same schedules.owner if they are one deployment",
		w.ID, owner, a.opts.Owner, w.Stamp.Integration)
}

func (a *applier) attrs(w Desired) []any {
	return []any{"schedule", w.ID, "owner", a.opts.Owner, "spec", w.Stamp.Spec,
		"overlap", w.Options.Overlap.String(), "catchupWindow", w.Options.CatchupWindow,
		"pauseOnFailure", w.Options.PauseOnFailure, "paused", w.Options.Paused}
}

// Listed is a schedule tether manages, as the server lists it.
type Listed struct {
	ID string
	// Stamp is the schedule memo's: owner, integration and kind.
	Stamp Stamp
	Entry *client.ScheduleListEntry
}

// List returns the schedules tether manages in the client's namespace,
// every owner's, sorted by id. It is eventually consistent: a schedule
// created or deleted a moment ago may be missing or still there.
func List(ctx context.Context, c client.Client) ([]Listed, error) {
	iter, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 1000})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var out []Listed
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if s, ok := StampOf(e.Memo); ok {
			out = append(out, Listed{ID: e.ID, Stamp: s, Entry: e})
		}
	}
	slices.SortFunc(out, func(a, b Listed) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

func isAlreadyExists(err error) bool {
	var ae *serviceerror.AlreadyExists
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	return errors.Is(err, temporal.ErrScheduleAlreadyRunning) || errors.As(err, &ae) || errors.As(err, &started)
}
