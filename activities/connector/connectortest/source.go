package connectortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/cursor"
)

// integration is the name the suite opens connectors under.
const integration = "acceptance"

// DefaultPageSize is the Request.Limit the suite reads with when the
// driver names none.
const DefaultPageSize = 5

// SourceDriver is what a source connector's test hands to Source: how to
// make a data set and open the connector on it, and how to read its
// records.
type SourceDriver struct {
	// Open creates a fresh data set of known records (a table, an API
	// server) for one case, and says how to open the source over it. It
	// is called once per case; clean up with t.Cleanup.
	Open func(t *testing.T) SourceFixture
	// KeyField and CursorField name the record members holding the key
	// and, for incremental sources, the cursor (as an integration's
	// key_field and cursor_field do).
	KeyField, CursorField string
	// PageSize is the Request.Limit the suite reads with (default
	// DefaultPageSize). A data set holds more than two pages of records.
	PageSize int
	// BadConfigs are configurations the factory must refuse. At least one
	// is required.
	BadConfigs []BadConfig
}

// SourceFixture is one fresh data set and how to open the source on it.
type SourceFixture struct {
	// Factory opens the source, as the connector's Register line does.
	Factory connector.SourceFactory
	// Config is a valid configuration of the source over the data set.
	Config any
	// Keys are the data set's record keys, in the order a read from the
	// first page returns them.
	Keys []string
	// Change changes some records and adds some, moving their cursors
	// past every existing one, and returns their keys. Required when the
	// source's Capabilities say Incremental.
	Change func(t *testing.T) []string
	// Breaks make the source's next answer unreadable. At least one is
	// required: every source meets bad payloads.
	Breaks []Break
}

// Break is a way the data behind a source goes bad, and the classified
// error a Fetch must then return.
type Break struct {
	// Name names the case ("malformed JSON", "table dropped").
	Name string
	// Do breaks the data set (injects a fault, drops a table).
	Do func(t *testing.T)
	// Type is the failure type the error must have (failure.TypeSourceMalformed).
	Type string
	// Transient is set when the error must be retryable; it is permanent
	// otherwise.
	Transient bool
}

// BadConfig is a configuration a factory must refuse with a permanent
// failure.TypeConfig error naming Field.
type BadConfig struct {
	// Name names the case.
	Name string
	// Config is the bad configuration, of the connector's own type.
	Config any
	// Field is what the error must name ("base_url", "columns[1].type").
	Field string
}

// Source runs the acceptance suite of a source connector, each case as a
// subtest on a fresh data set:
//
//   - OrderedPagesResume: pages from the first one return every record once,
//     in the driver's order; reading again from any page's position returns
//     the same remaining records in the same order.
//   - RepeatableRead: a page read twice (a run that crashed between the read
//     and the apply) returns the same records, position and end.
//   - IncrementalResume (Capabilities().Incremental): after a (cursor, key)
//     checkpoint and changes to the data, a read as the pipeline does it
//     returns every record after the checkpoint exactly once, in its
//     current version, and filters on the source's side.
//   - BadPayload: each Break gives a classified error of its type.
//   - BadConfig: each BadConfig, and another connector's configuration, is
//     refused by the factory with a permanent failure.TypeConfig error.
//
// Cases the source's Capabilities rule out are skipped with the reason;
// the others are required.
func Source(t *testing.T, d SourceDriver) {
	t.Helper()
	if d.Open == nil || d.KeyField == "" {
		t.Fatal("connectortest: a SourceDriver needs Open and KeyField")
	}
	if d.PageSize <= 0 {
		d.PageSize = DefaultPageSize
	}
	t.Run("OrderedPagesResume", func(t *testing.T) { sourceOrderedPagesResume(t, d) })
	t.Run("RepeatableRead", func(t *testing.T) { sourceRepeatableRead(t, d) })
	t.Run("IncrementalResume", func(t *testing.T) { sourceIncrementalResume(t, d) })
	t.Run("BadPayload", func(t *testing.T) { sourceBadPayload(t, d) })
	t.Run("BadConfig", func(t *testing.T) { sourceBadConfig(t, d) })
}

// openSource creates a data set and opens the source over it.
func openSource(t *testing.T, d SourceDriver) (SourceFixture, connector.Source) {
	t.Helper()
	fx := d.Open(t)
	return fx, openFixture(t, d, fx)
}

// openFixture opens the source over the fixture's data set, as a worker
// opens it, and checks what holds for every source.
func openFixture(t *testing.T, d SourceDriver, fx SourceFixture) connector.Source {
	t.Helper()
	if fx.Factory == nil {
		t.Fatal("connectortest: the SourceFixture has no Factory")
	}
	src, err := fx.Factory(connector.SourceSpec{Integration: integration, Config: fx.Config})
	if err != nil {
		t.Fatalf("open the source with the fixture's configuration: %v", err)
	}
	if src == nil {
		t.Fatal("the factory returned neither a source nor an error")
	}
	if c, ok := src.(io.Closer); ok {
		t.Cleanup(func() { _ = c.Close() })
	}
	if src.Capabilities().Kind == "" {
		t.Error("Capabilities().Kind is empty: a source names its registered kind")
	}
	if minimum := 2*d.PageSize + 1; len(fx.Keys) < minimum {
		t.Fatalf("connectortest: the data set has %d records; the suite needs at least %d (three pages of %d)", len(fx.Keys), minimum, d.PageSize)
	}
	return src
}

// read is one page as fetched.
type read struct {
	req  connector.Request
	page connector.Page
	keys []string
}

// fetch reads one page and checks what holds for every page.
func fetch(t *testing.T, d SourceDriver, src connector.Source, req connector.Request) read {
	t.Helper()
	page, err := src.Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("Fetch(%+v): %v", req, err)
	}
	if page.NotModified {
		t.Fatalf("Fetch(%+v) answered NotModified without a page memo", req)
	}
	if page.RecordCount != len(page.Records) {
		t.Errorf("Fetch(%+v): RecordCount %d, %d records", req, page.RecordCount, len(page.Records))
	}
	r := read{req: req, page: page}
	for _, rec := range page.Records {
		r.keys = append(r.keys, member(t, rec, d.KeyField))
	}
	return r
}

// readToEnd reads page after page from req until the last one.
func readToEnd(t *testing.T, d SourceDriver, src connector.Source, req connector.Request, maxPages int) []read {
	t.Helper()
	var pages []read
	for {
		if len(pages) == maxPages {
			t.Fatalf("no last page after %d pages from %+v", maxPages, req.Position)
		}
		r := fetch(t, d, src, req)
		pages = append(pages, r)
		if r.page.Done {
			return pages
		}
		if r.page.Next == req.Position {
			t.Fatalf("page at %+v is not the last, and its Next repeats its position: the read would never end", req.Position)
		}
		req.Position = r.page.Next
	}
}

// maxPages bounds a read of n records, so a source that never ends fails.
func (d SourceDriver) maxPages(n int) int { return 2*(n/d.PageSize) + 4 }

func keysOf(pages []read) []string {
	var keys []string
	for _, p := range pages {
		keys = append(keys, p.keys...)
	}
	return keys
}

func recordsOf(pages []read) []json.RawMessage {
	var recs []json.RawMessage
	for _, p := range pages {
		recs = append(recs, p.page.Records...)
	}
	return recs
}

func sourceOrderedPagesResume(t *testing.T, d SourceDriver) {
	fx, src := openSource(t, d)
	first := connector.Request{Integration: integration, Limit: d.PageSize}
	pages := readToEnd(t, d, src, first, d.maxPages(len(fx.Keys)))
	if err := diffKeys(fx.Keys, keysOf(pages)); err != nil {
		t.Fatalf("a read from the first page: %v", err)
	}
	if len(pages) < 3 {
		t.Fatalf("%d records came in %d pages of at most %d: pages are not limited by Request.Limit", len(fx.Keys), len(pages), d.PageSize)
	}
	for i, p := range pages {
		if len(p.page.Records) > d.PageSize {
			t.Errorf("page %d holds %d records, more than Request.Limit %d", i+1, len(p.page.Records), d.PageSize)
		}
	}
	// A run resumes from the position it last committed: every page
	// boundary is one.
	for i := 1; i < len(pages); i++ {
		req := first
		req.Position = pages[i-1].page.Next
		rest := readToEnd(t, d, src, req, d.maxPages(len(fx.Keys)))
		if err := diffKeys(keysOf(pages[i:]), keysOf(rest)); err != nil {
			t.Errorf("resuming at page %d (%+v): %v", i+1, req.Position, err)
			continue
		}
		if err := sameRecords(recordsOf(pages[i:]), recordsOf(rest)); err != nil {
			t.Errorf("resuming at page %d (%+v): %v", i+1, req.Position, err)
		}
	}
}

func sourceRepeatableRead(t *testing.T, d SourceDriver) {
	fx, src := openSource(t, d)
	first := connector.Request{Integration: integration, Limit: d.PageSize}
	pages := readToEnd(t, d, src, first, d.maxPages(len(fx.Keys)))
	// The pipeline reads a page again when the worker died after the read
	// and before the apply committed: it must get the same page.
	for _, i := range []int{0, len(pages) / 2, len(pages) - 1} {
		again := fetch(t, d, src, pages[i].req)
		if err := samePage(pages[i].page, again.page); err != nil {
			t.Errorf("page %d read again: %v", i+1, err)
		}
	}
}

// samePage says how a page read again differs from the first read.
func samePage(want, got connector.Page) error {
	if err := sameRecords(want.Records, got.Records); err != nil {
		return err
	}
	if want.Done != got.Done || (!want.Done && want.Next != got.Next) {
		return fmt.Errorf("Next %+v, Done %v; the first read said Next %+v, Done %v", got.Next, got.Done, want.Next, want.Done)
	}
	return nil
}

func sameRecords(want, got []json.RawMessage) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(want[i], got[i]) {
			return fmt.Errorf("record %d is %s, want %s", i, got[i], want[i])
		}
	}
	return nil
}

func sourceIncrementalResume(t *testing.T, d SourceDriver) {
	fx, src := openSource(t, d)
	if !src.Capabilities().Incremental {
		t.Skip("Capabilities().Incremental is false: the source does not filter by cursor")
	}
	if d.CursorField == "" || fx.Change == nil {
		t.Fatal("connectortest: an incremental source's driver needs CursorField and SourceFixture.Change")
	}
	full := connector.Request{Integration: integration, Limit: d.PageSize}
	before := readToEnd(t, d, src, full, d.maxPages(len(fx.Keys)))

	// The checkpoint a run committed half-way through the data.
	positions := make([]cursor.Checkpoint, 0, len(fx.Keys))
	for _, rec := range recordsOf(before) {
		positions = append(positions, d.position(t, rec))
	}
	slices.SortFunc(positions, cursor.Compare)
	cp := positions[len(positions)/2]

	changed := fx.Change(t)
	if len(changed) == 0 {
		t.Fatal("connectortest: Change changed no record")
	}
	after := readToEnd(t, d, src, full, d.maxPages(len(fx.Keys)+len(changed)))
	afterKeys := keysOf(after)
	all := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(fx.Keys), changed...))))
	if err := diffKeys(all, slices.Sorted(slices.Values(afterKeys))); err != nil {
		t.Fatalf("a read from the first page after Change: %v", err)
	}
	current := map[string]json.RawMessage{}
	var want []string
	for i, rec := range recordsOf(after) {
		key := afterKeys[i]
		current[key] = rec
		if cursor.Compare(d.position(t, rec), cp) > 0 {
			want = append(want, key)
		}
	}
	for _, k := range changed {
		if !slices.Contains(want, k) {
			t.Fatalf("connectortest: Change's record %s is not after the checkpoint %+v: Change must move cursors forward", k, cp)
		}
	}

	got, gotRecs := d.readIncremental(t, src, cp, len(current))
	slices.Sort(want)
	gotSorted := slices.Sorted(slices.Values(got))
	if err := diffKeys(want, gotSorted); err != nil {
		t.Fatalf("an incremental read after %+v: %v", cp, err)
	}
	for i, k := range got {
		if !bytes.Equal(gotRecs[i], current[k]) {
			t.Errorf("record %s read incrementally is %s, its current version is %s", k, gotRecs[i], current[k])
		}
	}
}

// readIncremental reads after since as the pipeline does: it keeps the
// records after the request's checkpoint, and asks for the next page
// "since" the last record of a page that moved past it (from the first
// page), or at the page's Next position when it did not.
func (d SourceDriver) readIncremental(t *testing.T, src connector.Source, since cursor.Checkpoint, n int) ([]string, []json.RawMessage) {
	t.Helper()
	var keys []string
	var recs []json.RawMessage
	req := connector.Request{Integration: integration, Since: since, Limit: d.PageSize}
	unfiltered, unordered := 0, 0
	defer func() {
		// Once per read: a source that ignores Since would say it for
		// every record.
		if unfiltered > 0 {
			t.Errorf("%d records before the cursor of their request's Since: Capabilities().Incremental says the source filters by cursor", unfiltered)
		}
		if unordered > 0 {
			t.Errorf("%d records out of (cursor, key) order: an incremental read must come in the order checkpoints are compared in", unordered)
		}
	}()
	for pages := 0; ; pages++ {
		if pages == d.maxPages(n) {
			t.Fatalf("no last page after %d pages of an incremental read", pages)
		}
		r := fetch(t, d, src, req)
		last := req.Since
		for i, rec := range r.page.Records {
			p := d.position(t, rec)
			if cursor.CompareValues(p.Cursor, req.Since.Cursor, true) < 0 {
				if unfiltered++; unfiltered == 1 {
					t.Logf("a read since cursor %q returned record %s with cursor %q", req.Since.Cursor, r.keys[i], p.Cursor)
				}
			}
			if cursor.Compare(p, last) <= 0 && cursor.Compare(p, req.Since) > 0 {
				if unordered++; unordered == 1 {
					t.Logf("record %s %+v comes after %+v", r.keys[i], p, last)
				}
			}
			if cursor.Compare(p, req.Since) > 0 {
				keys, recs = append(keys, r.keys[i]), append(recs, rec)
				last = p
			}
		}
		if r.page.Done {
			return keys, recs
		}
		if cursor.Compare(last, req.Since) > 0 {
			req.Since, req.Position = last, cursor.Position{}
		} else {
			req.Position = r.page.Next
		}
	}
}

// position is a record's (cursor, key), rendered as the pipeline renders them.
func (d SourceDriver) position(t *testing.T, rec json.RawMessage) cursor.Checkpoint {
	t.Helper()
	return cursor.Checkpoint{Cursor: member(t, rec, d.CursorField), Key: member(t, rec, d.KeyField)}
}

// member renders a record's top-level member: a string as it is, a number
// as written.
func member(t *testing.T, rec json.RawMessage, name string) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(rec))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("record %s is not a JSON object: %v", rec, err)
	}
	switch v := m[name].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	t.Fatalf("record %s: member %q is %T, want a string or a number", rec, name, m[name])
	return ""
}

func sourceBadPayload(t *testing.T, d SourceDriver) {
	fx := d.Open(t)
	if len(fx.Breaks) == 0 {
		t.Fatal("connectortest: the SourceFixture has no Breaks: every source meets answers it cannot read")
	}
	for i, b := range fx.Breaks {
		t.Run(b.Name, func(t *testing.T) {
			fx := fx
			if i > 0 {
				// Each break on data of its own.
				fx = d.Open(t)
				if len(fx.Breaks) <= i {
					t.Fatalf("connectortest: the driver's fixtures differ in their Breaks (%d, then %d)", i+1, len(fx.Breaks))
				}
				b = fx.Breaks[i]
			}
			src := openFixture(t, d, fx)
			req := connector.Request{Integration: integration, Limit: d.PageSize}
			if _, err := src.Fetch(context.Background(), req); err != nil {
				t.Fatalf("Fetch before the break: %v", err)
			}
			b.Do(t)
			page, err := src.Fetch(context.Background(), req)
			if err := checkClassified(err, b.Type, b.Transient); err != nil {
				t.Fatalf("Fetch after %s: %v", b.Name, err)
			}
			if len(page.Records) > 0 {
				t.Errorf("Fetch after %s returned %d records with its error", b.Name, len(page.Records))
			}
		})
	}
}

func sourceBadConfig(t *testing.T, d SourceDriver) {
	if len(d.BadConfigs) == 0 {
		t.Fatal("connectortest: the SourceDriver has no BadConfigs")
	}
	fx := d.Open(t)
	for _, bc := range d.BadConfigs {
		t.Run(bc.Name, func(t *testing.T) {
			src, err := fx.Factory(connector.SourceSpec{Integration: integration, Config: bc.Config})
			if err := checkConfigError(err, bc.Field); err != nil {
				t.Error(err)
			}
			if src != nil {
				t.Errorf("the factory returned a source (%T) with its error", src)
			}
		})
	}
	t.Run("another connector's configuration", func(t *testing.T) {
		src, err := fx.Factory(connector.SourceSpec{Integration: integration, Config: otherConfig{}})
		if err := checkConfigError(err, "otherConfig"); err != nil {
			t.Error(err)
		}
		if src != nil {
			t.Errorf("the factory returned a source (%T) with its error", src)
		}
	})
}

// otherConfig is no connector's configuration.
type otherConfig struct{ Kind string }
