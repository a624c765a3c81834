package connectortest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
)

// The checks below return what is wrong instead of failing a test, so the
// suite's own tests can show that each of them fails on a broken connector.

// diffKeys says how got differs from want, key by key: keys lost,
// duplicated or unexpected, or the first place the order differs.
func diffKeys(want, got []string) error {
	if slices.Equal(want, got) {
		return nil
	}
	wantN, gotN := counts(want), counts(got)
	var problems []string
	var lost, short, dup, extra []string
	for _, k := range sortedKeys(wantN) {
		switch g := gotN[k]; {
		case g == 0:
			lost = append(lost, k)
		case g < wantN[k]:
			short = append(short, fmt.Sprintf("%s (%d of %d times)", k, g, wantN[k]))
		}
	}
	for _, k := range sortedKeys(gotN) {
		switch {
		case wantN[k] == 0:
			extra = append(extra, k)
		case gotN[k] > wantN[k]:
			dup = append(dup, fmt.Sprintf("%s (%d times)", k, gotN[k]))
		}
	}
	if len(lost) > 0 {
		problems = append(problems, "lost "+strings.Join(lost, ", "))
	}
	if len(short) > 0 {
		problems = append(problems, "short "+strings.Join(short, ", "))
	}
	if len(dup) > 0 {
		problems = append(problems, "duplicated "+strings.Join(dup, ", "))
	}
	if len(extra) > 0 {
		problems = append(problems, "unexpected "+strings.Join(extra, ", "))
	}
	if len(problems) == 0 {
		for i := range want {
			if want[i] != got[i] {
				problems = append(problems, fmt.Sprintf("out of order from record %d: key %s where %s was expected", i, got[i], want[i]))
				break
			}
		}
	}
	return fmt.Errorf("read %d records, want %d: %s", len(got), len(want), strings.Join(problems, "; "))
}

func counts(keys []string) map[string]int {
	n := make(map[string]int, len(keys))
	for _, k := range keys {
		n[k]++
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// canonical renders a row (or any JSON value) with object members sorted
// and numbers as written, so rows built in Go and rows read back from a
// destination compare by meaning.
func canonical(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %v: %w", v, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return "", fmt.Errorf("decode %s: %w", b, err)
	}
	b, err = json.Marshal(x)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", b, err)
	}
	return string(b), nil
}

// diffRows says how the destination's rows (got) differ from want, key by
// key.
func diffRows(want, got map[string]connector.Row) error {
	var problems []string
	for _, k := range sortedKeys(want) {
		g, ok := got[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("key %s: missing", k))
			continue
		}
		w, err := canonical(want[k])
		if err != nil {
			return err
		}
		gs, err := canonical(g)
		if err != nil {
			return err
		}
		if w != gs {
			problems = append(problems, fmt.Sprintf("key %s: holds %s, want %s", k, gs, w))
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			gs, _ := canonical(got[k])
			problems = append(problems, fmt.Sprintf("key %s: unexpected row %s", k, gs))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("the destination holds %d rows, want %d: %s", len(got), len(want), strings.Join(problems, "; "))
}

// byKey indexes stored rows by key; a key held twice is a duplicate object.
func byKey(rows []StoredRow) (map[string]connector.Row, error) {
	out := make(map[string]connector.Row, len(rows))
	var dup []string
	for _, r := range rows {
		if _, ok := out[r.Key]; ok {
			dup = append(dup, r.Key)
		}
		out[r.Key] = r.Row
	}
	if len(dup) > 0 {
		sort.Strings(dup)
		return out, fmt.Errorf("the destination holds more than one object for key %s", strings.Join(slices.Compact(dup), ", "))
	}
	return out, nil
}

// tally is what a Result counts, for comparing.
type tally struct {
	Inserted, Updated, Unchanged, Stale, Duplicates, Refused int
}

func tallyOf(r connector.Result) tally {
	return tally{r.Inserted, r.Updated, r.Unchanged, r.Stale, r.Duplicates, len(r.Refused)}
}

func (c tally) total() int {
	return c.Inserted + c.Updated + c.Unchanged + c.Stale + c.Duplicates + c.Refused
}

// checkCounted says whether every one of n rows is counted once in r.
func checkCounted(r connector.Result, n int) error {
	c := tallyOf(r)
	if c.total() != n {
		return fmt.Errorf("result %+v counts %d rows, the batch has %d: every row must be counted once", c, c.total(), n)
	}
	seen := map[int]bool{}
	for _, rf := range r.Refused {
		if rf.Index < 0 || rf.Index >= n {
			return fmt.Errorf("refusal %+v names row %d of a batch of %d", rf, rf.Index, n)
		}
		if seen[rf.Index] {
			return fmt.Errorf("row %d is refused twice", rf.Index)
		}
		seen[rf.Index] = true
	}
	return nil
}

// checkConfigError says whether err is what a factory must answer a bad
// configuration with: a permanent failure.TypeConfig error naming field.
func checkConfigError(err error, field string) error {
	if err == nil {
		return errors.New("no error: the bad configuration was accepted")
	}
	if e := checkClassified(err, failure.TypeConfig, false); e != nil {
		return e
	}
	if !strings.Contains(err.Error(), field) {
		return fmt.Errorf("error %q does not name %q", err, field)
	}
	return nil
}

// checkClassified says whether err is an application error of type typ,
// permanent unless transient.
func checkClassified(err error, typ string, transient bool) error {
	if err == nil {
		return fmt.Errorf("no error, want a %s", typ)
	}
	// The SDK only sees an application error at the top of the chain: one
	// wrapped below fmt.Errorf is retried as a generic error.
	appErr, ok := err.(*temporal.ApplicationError)
	if !ok {
		return fmt.Errorf("error %q (%T) is not a failure-classified application error at the top of its chain: Temporal would retry it as a generic error", err, err)
	}
	if appErr.Type() != typ {
		return fmt.Errorf("error %q has type %s, want %s", err, appErr.Type(), typ)
	}
	if failure.IsPermanent(err) == transient {
		want := "permanent"
		if transient {
			want = "retryable"
		}
		return fmt.Errorf("error %q is not %s", err, want)
	}
	return nil
}
