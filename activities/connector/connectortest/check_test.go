package connectortest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
)

// The suite's checks must fail on a broken connector: each is shown
// catching what it is there for.

func TestDiffKeys_SaysWhatDiffers(t *testing.T) {
	tests := []struct {
		name      string
		want, got []string
		wantErr   string // "" = no difference
	}{
		{name: "same", want: []string{"1", "2", "3"}, got: []string{"1", "2", "3"}},
		{name: "lost", want: []string{"1", "2", "3"}, got: []string{"1", "3"}, wantErr: "lost 2"},
		{name: "duplicated", want: []string{"1", "2"}, got: []string{"1", "2", "2"}, wantErr: "duplicated 2 (2 times)"},
		{name: "unexpected", want: []string{"1"}, got: []string{"1", "9"}, wantErr: "unexpected 9"},
		{name: "reordered", want: []string{"1", "2", "3"}, got: []string{"1", "3", "2"}, wantErr: "out of order from record 1"},
		{name: "short", want: []string{"1", "1"}, got: []string{"1"}, wantErr: "short 1 (1 of 2 times)"},
		{name: "lost one, duplicated another", want: []string{"1", "2"}, got: []string{"1", "1"}, wantErr: "lost 2; duplicated 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, diffKeys(tt.want, tt.got), tt.wantErr)
		})
	}
}

func TestDiffRows_ComparesByMeaning(t *testing.T) {
	row := func(id string, qty any) connector.Row { return connector.Row{"id": json.Number(id), "qty": qty} }
	tests := []struct {
		name      string
		want, got map[string]connector.Row
		wantErr   string
	}{
		{name: "same meaning, other Go types", want: map[string]connector.Row{"1": row("1", 10)}, got: map[string]connector.Row{"1": {"qty": json.Number("10"), "id": float64(1)}}},
		{name: "missing", want: map[string]connector.Row{"1": row("1", 10), "2": row("2", 10)}, got: map[string]connector.Row{"1": row("1", 10)}, wantErr: "key 2: missing"},
		{name: "unexpected", want: map[string]connector.Row{}, got: map[string]connector.Row{"1": row("1", 10)}, wantErr: `key 1: unexpected row {"id":1,"qty":10}`},
		{name: "different", want: map[string]connector.Row{"1": row("1", 10)}, got: map[string]connector.Row{"1": row("1", 11)}, wantErr: `key 1: holds {"id":1,"qty":11}, want {"id":1,"qty":10}`},
		{name: "a member more", want: map[string]connector.Row{"1": row("1", 10)}, got: map[string]connector.Row{"1": {"id": 1, "qty": 10, "x": nil}}, wantErr: "key 1: holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, diffRows(tt.want, tt.got), tt.wantErr)
		})
	}
}

func TestByKey_DuplicateObjects(t *testing.T) {
	_, err := byKey([]StoredRow{{Key: "1"}, {Key: "2"}, {Key: "1"}})
	checkErr(t, err, "more than one object for key 1")
	got, err := byKey([]StoredRow{{Key: "1", Row: connector.Row{"a": 1}}, {Key: "2"}})
	checkErr(t, err, "")
	if len(got) != 2 || got["1"]["a"] != 1 {
		t.Errorf("byKey() = %v", got)
	}
}

func TestCheckCounted_EveryRowOnce(t *testing.T) {
	tests := []struct {
		name    string
		give    connector.Result
		n       int
		wantErr string
	}{
		{name: "every row once", give: connector.Result{Inserted: 2, Unchanged: 1, Refused: []connector.Refusal{{Index: 3}}}, n: 4},
		{name: "a row dropped", give: connector.Result{Inserted: 2}, n: 3, wantErr: "counts 2 rows, the batch has 3"},
		{name: "a row counted twice", give: connector.Result{Inserted: 2, Updated: 1}, n: 2, wantErr: "counts 3 rows"},
		{name: "refusal of no row", give: connector.Result{Inserted: 1, Refused: []connector.Refusal{{Index: 5}}}, n: 2, wantErr: "names row 5"},
		{name: "row refused twice", give: connector.Result{Refused: []connector.Refusal{{Index: 0}, {Index: 0}}}, n: 2, wantErr: "row 0 is refused twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, checkCounted(tt.give, tt.n), tt.wantErr)
		})
	}
}

func TestCheckConfigError_PermanentTypedNamed(t *testing.T) {
	bad := errors.New("table: is required")
	tests := []struct {
		name    string
		give    error
		wantErr string
	}{
		{name: "permanent, typed, naming the field", give: failure.Permanent(failure.TypeConfig, bad)},
		{name: "accepted", give: nil, wantErr: "was accepted"},
		{name: "not classified", give: bad, wantErr: "not a failure-classified application error"},
		{name: "classified below a wrap", give: fmt.Errorf("open: %w", failure.Permanent(failure.TypeConfig, bad)), wantErr: "not a failure-classified application error"},
		{name: "another type", give: failure.Permanent(failure.TypeSinkSQL, bad), wantErr: "has type SinkSQLError, want ConfigError"},
		{name: "retryable", give: failure.Transient(failure.TypeConfig, bad), wantErr: "is not permanent"},
		{name: "field not named", give: failure.Permanent(failure.TypeConfig, errors.New("something is wrong")), wantErr: `does not name "table"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, checkConfigError(tt.give, "table"), tt.wantErr)
		})
	}
}

func TestCheckClassified_Transient(t *testing.T) {
	err := failure.Transient(failure.TypeSourceUnavailable, errors.New("503"))
	checkErr(t, checkClassified(err, failure.TypeSourceUnavailable, true), "")
	checkErr(t, checkClassified(err, failure.TypeSourceUnavailable, false), "is not permanent")
	checkErr(t, checkClassified(failure.Permanent(failure.TypeSourceUnavailable, errors.New("x")), failure.TypeSourceUnavailable, true), "is not retryable")
}

// checkErr asserts err is nil when want is empty, else that it says want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("error %q, want none", err)
	case want != "" && err == nil:
		t.Errorf("no error, want one saying %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q does not say %q", err, want)
	}
}
