package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tetherflow/tether/starters/sandbox"
)

// check compares the world's destination with the sandbox row by row, and
// its pending quarantine with the sandbox's invalid contacts.
func (w *world) check(ctx context.Context) (Check, error) {
	type row struct {
		n              int
		email          string
		oldest, newest time.Time
	}
	got := map[int64]row{}
	rows, err := w.e.Admin.QueryContext(ctx, fmt.Sprintf(
		`SELECT id, count(*), max(email), min(updated_at), max(updated_at) FROM %s.%s GROUP BY id`, w.schema, table))
	if err != nil {
		return Check{}, err
	}
	for rows.Next() {
		var id int64
		var r row
		if err := rows.Scan(&id, &r.n, &r.email, &r.oldest, &r.newest); err != nil {
			rows.Close()
			return Check{}, err
		}
		got[id] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Check{}, err
	}

	invalid := map[int64]bool{}
	for _, id := range w.sb.InvalidContactIDs() {
		invalid[id] = true
	}
	var c Check
	seen := map[int64]bool{}
	for _, s := range w.sb.Contacts() {
		if invalid[s.ID] {
			continue
		}
		c.Expected++
		seen[s.ID] = true
		r, ok := got[s.ID]
		if !ok {
			c.Lost++
			continue
		}
		c.Dup += r.n - 1
		want, err := time.Parse(time.RFC3339Nano, s.UpdatedAt)
		switch {
		case err != nil:
			return c, fmt.Errorf("source contact %d: updated_at %q: %w", s.ID, s.UpdatedAt, err)
		case r.oldest.Before(want):
			c.Older++
		case !r.newest.Equal(want) || r.email != strings.ToLower(strings.TrimSpace(s.Email)):
			c.Differing++
		}
	}
	for id, r := range got {
		if !seen[id] {
			// An invalid record applied, or a key the source never had.
			c.Differing += r.n
		}
	}
	var want []string
	for _, s := range w.sb.Contacts() {
		switch {
		case !invalid[s.ID]:
		case s.Defect == sandbox.DefectMissingID:
			// Served without its id: quarantined without a key.
			want = append(want, "uuid:"+s.UUID)
		default:
			want = append(want, strconv.FormatInt(s.ID, 10))
		}
	}
	ok, desc, err := w.checkQuarantine(ctx, want)
	c.QuarantineOK, c.Quarantine = ok, desc
	return c, err
}

// checkQuarantine compares the integration's pending quarantine with the
// records that must be there, each once, and nothing else: by record key,
// or for a record without one by "uuid:" and its payload's uuid.
func (w *world) checkQuarantine(ctx context.Context, want []string) (bool, string, error) {
	rows, err := w.e.Admin.QueryContext(ctx, fmt.Sprintf(
		`SELECT CASE WHEN record_key <> '' THEN record_key ELSE 'uuid:' || coalesce(payload->>'uuid', '') END, count(*)
		FROM %s.tether_quarantine WHERE integration = $1 AND replayed_at IS NULL GROUP BY 1`, w.schema), w.integ)
	if err != nil {
		return false, "", err
	}
	defer rows.Close()
	wanted := map[string]bool{}
	for _, k := range want {
		wanted[k] = true
	}
	var found, twice, extra int
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return false, "", err
		}
		if !wanted[k] {
			extra += n
			continue
		}
		found++
		twice += n - 1
	}
	if err := rows.Err(); err != nil {
		return false, "", err
	}
	desc := fmt.Sprintf("%d of %d", found, len(want))
	if twice > 0 {
		desc += fmt.Sprintf(", %d twice", twice)
	}
	if extra > 0 {
		desc += fmt.Sprintf(", %d others", extra)
	}
	return found == len(want) && twice == 0 && extra == 0, desc, nil
}
