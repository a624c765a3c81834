package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/failure"
)

func TestStore_StageLoadPage(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	tests := []struct {
		name string
		give []string
		want []string // nil: same as give
	}{
		{"empty page", nil, nil},
		{"one record", []string{`{"id":1}`}, nil},
		{"odd JSON", []string{
			`{"name":"Zoë 😀 日本","esc":"\u00e9\"\\/\n"}`,
			`{"a":{"b":[1,[2,{"c":null}],{"d":{"e":[true,false]}}]}}`,
			`{"n":1.5e300,"m":-2E-10,"big":123456789012345678901234567890,"z":-0.0}`,
			`[1, 2 , 3]`,
			`"a bare string, with ] and , inside"`,
			`12e3`,
			`{ "spaced" :  "kept" ,"dup":1,"dup":2 }`,
		}, nil},
		{"invalid UTF-8 and NUL kept as bytes", []string{"{\"a\":\"\xff\xfe\"}", "\"nul:\x00\"", `{"ok":"é"}`}, nil},
		{"empty record becomes null", []string{`{"id":1}`, ``, `{"id":3}`}, []string{`{"id":1}`, `null`, `{"id":3}`}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records := raw(tt.give)
			want := tt.want
			if want == nil {
				want = tt.give
			}
			if err := s.StagePage(ctx, "run-a", i, "", records); err != nil {
				t.Fatalf("StagePage: %v", err)
			}
			// Staging again (a retried FetchPage) is harmless.
			if err := s.StagePage(ctx, "run-a", i, "", records); err != nil {
				t.Fatalf("StagePage again: %v", err)
			}
			got, err := s.LoadPage(ctx, "run-a", i, "")
			if err != nil {
				t.Fatalf("LoadPage: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("LoadPage returned %d records, want %d", len(got), len(want))
			}
			for j := range got {
				if string(got[j]) != want[j] {
					t.Errorf("record %d = %q, want %q", j, got[j], want[j])
				}
			}
			if len(got) > 1 {
				// Appending to one record must not clobber the next.
				_ = append(got[0], "XXXX"...)
				if string(got[1]) != want[1] {
					t.Errorf("append to record 0 changed record 1 to %q", got[1])
				}
			}
		})
	}

	// Restaging a page replaces it.
	if err := s.StagePage(ctx, "run-a", 1, "", raw([]string{`{"id":2}`, `{"id":3}`})); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadPage(ctx, "run-a", 1, ""); err != nil || len(got) != 2 || string(got[1]) != `{"id":3}` {
		t.Errorf("LoadPage after restage = %q, %v", got, err)
	}

	if err := s.StagePage(ctx, "run-b", 1, "", raw([]string{`1`})); err != nil {
		t.Fatal(err)
	}
	if err := s.DropPages(ctx, "run-a"); err != nil {
		t.Fatalf("DropPages: %v", err)
	}
	missing := []struct {
		run  string
		page int
	}{{"run-a", 1}, {"run-a", 2}, {"never", 9}}
	for _, tt := range missing {
		_, err := s.LoadPage(ctx, tt.run, tt.page, "")
		if !failure.IsType(err, failure.TypeStagedPageMissing) || !failure.IsPermanent(err) {
			t.Errorf("LoadPage(%q, %d) after drop: %v; want a permanent %s", tt.run, tt.page, err, failure.TypeStagedPageMissing)
		}
		if err != nil && (!strings.Contains(err.Error(), tt.run) || !strings.Contains(err.Error(), fmt.Sprintf("page %d", tt.page))) {
			t.Errorf("LoadPage error %q does not name run %q and page %d", err, tt.run, tt.page)
		}
	}
	if _, err := s.LoadPage(ctx, "run-b", 1, ""); err != nil {
		t.Errorf("DropPages of run-a dropped run-b's page: %v", err)
	}
}

func TestDecodePage(t *testing.T) {
	t.Parallel()
	body, ends := encodePage(raw([]string{`{"a":"x,]"}`, ` 2`, `[3]`}))
	tests := []struct {
		name    string
		body    []byte
		ends    []byte
		count   int
		want    []string
		wantErr bool
	}{
		{"by offsets", body, ends, 3, []string{`{"a":"x,]"}`, ` 2`, `[3]`}, false},
		{"no offsets: parsed", body, nil, 3, []string{`{"a":"x,]"}`, `2`, `[3]`}, false},
		{"offsets out of range: parsed", body, []byte{5, 0, 0, 0, 99, 0, 0, 0, 100, 0, 0, 0}, 3, []string{`{"a":"x,]"}`, `2`, `[3]`}, false},
		{"count mismatch", body, nil, 4, nil, true},
		{"not an array", []byte(`{"a":1}`), nil, 1, nil, true},
		{"empty", []byte(`[]`), []byte{}, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodePage(tt.body, tt.ends, tt.count)
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodePage error = %v, wantErr %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("decodePage = %q, want %q", got, tt.want)
			}
			for i := range got {
				if string(got[i]) != tt.want[i] {
					t.Errorf("record %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func raw(ss []string) []json.RawMessage {
	if ss == nil {
		return nil
	}
	out := make([]json.RawMessage, len(ss))
	for i, s := range ss {
		out[i] = json.RawMessage(s)
	}
	return out
}

// benchPage is a page of n records of about 400 bytes each.
func benchPage(n int) []json.RawMessage {
	records := make([]json.RawMessage, n)
	for i := range records {
		rec := map[string]any{
			"id": i, "email": fmt.Sprintf("user%d@example.com", i), "name": "Zoë Example " + strings.Repeat("x", 40),
			"updated_at": "2026-05-01T10:00:00Z", "score": 1.5e3, "active": i%2 == 0,
			"address": map[string]any{"street": strings.Repeat("Main Street ", 8), "city": "Springfield", "zip": "12345"},
			"tags":    []string{"alpha", "beta", "gamma", "delta", "epsilon"},
		}
		b, _ := json.Marshal(rec)
		records[i] = b
	}
	return records
}

// BenchmarkStageLoadPage stages and loads a 1,000-record page through
// PostgreSQL; compare with BenchmarkMarshalOnly, the cost of merely
// re-encoding the same records.
func BenchmarkStageLoadPage(b *testing.B) {
	s := newStoreB(b)
	ctx := b.Context()
	records := benchPage(1000)
	size := 0
	for _, r := range records {
		size += len(r)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := s.StagePage(ctx, "bench", i, "", records); err != nil {
			b.Fatal(err)
		}
		got, err := s.LoadPage(ctx, "bench", i, "")
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != len(records) {
			b.Fatalf("loaded %d records, want %d", len(got), len(records))
		}
	}
}

// BenchmarkMarshalOnly is the baseline: json.Marshal of the page's records
// and json.Unmarshal back, without any database.
func BenchmarkMarshalOnly(b *testing.B) {
	records := benchPage(1000)
	size := 0
	for _, r := range records {
		size += len(r)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		body, err := json.Marshal(records)
		if err != nil {
			b.Fatal(err)
		}
		var got []json.RawMessage
		if err := json.Unmarshal(body, &got); err != nil {
			b.Fatal(err)
		}
		if len(got) != len(records) || !bytes.Equal(got[0], records[0]) {
			b.Fatal("round trip changed the page")
		}
	}
}

func TestStore_ForgetEarlierRuns(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	runs := []struct{ id, integration, status string }{
		{"failed", "crm", "Failed"},
		{"running", "crm", "Running"},
		{"done", "crm", "Completed"},
		{"other", "billing", "Failed"},
	}
	for _, r := range runs {
		if err := s.BeginRun(ctx, Run{RunID: r.id, Integration: r.integration, Kind: KindSync, Status: r.status}); err != nil {
			t.Fatal(err)
		}
		if err := s.StagePage(ctx, r.id, 1, "", raw([]string{`{"id":1}`})); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkBatchApplied(ctx, nil, r.id+"#exec-1", 1, map[string]int{"inserted": 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ForgetEarlierRuns(ctx, "crm", "done"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		run      string
		wantKept bool
	}{{"failed", false}, {"running", true}, {"done", true}, {"other", true}} {
		_, errLoad := s.LoadPage(ctx, tt.run, 1, "")
		_, marked, err := s.BatchApplied(ctx, nil, tt.run+"#exec-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if kept := errLoad == nil; kept != tt.wantKept || marked != tt.wantKept {
			t.Errorf("run %s: page kept %v, marker kept %v; want %v", tt.run, kept, marked, tt.wantKept)
		}
	}
}

// TestStore_StageTokens: two fetches of one page number (a retried fetch,
// a reset execution) keep their own staged copies.
func TestStore_StageTokens(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	if err := s.StagePage(ctx, "run", 1, "a", raw([]string{`{"id":1}`})); err != nil {
		t.Fatal(err)
	}
	if err := s.StagePage(ctx, "run", 1, "b", raw([]string{`{"id":2}`, `{"id":3}`})); err != nil {
		t.Fatal(err)
	}
	for stage, want := range map[string]int{"a": 1, "b": 2} {
		got, err := s.LoadPage(ctx, "run", 1, stage)
		if err != nil || len(got) != want {
			t.Errorf("LoadPage(stage %s) = %d records, %v; want %d", stage, len(got), err, want)
		}
	}
	if _, err := s.LoadPage(ctx, "run", 1, "c"); !failure.IsType(err, failure.TypeStagedPageMissing) {
		t.Errorf("LoadPage(unknown stage) = %v; want %s", err, failure.TypeStagedPageMissing)
	}
}
