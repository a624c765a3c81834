package integration

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/schemas"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workers/integrations"
	"github.com/tetherflow/tether/workflows/datasync"
)

// lenientContacts is a "fixed" schema: it only asks for an integer id.
const lenientContacts = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id"],
  "properties": {"id": {"type": "integer", "minimum": 1}}
}`

func withLenientSchema(t *testing.T) fs.FS {
	t.Helper()
	return withSchemaFiles(t, fstest.MapFS{"contacts-lenient.schema.json": {Data: []byte(lenientContacts)}})
}

// withSchemaFiles returns the shipped schema files plus m's.
func withSchemaFiles(t *testing.T, m fstest.MapFS) fs.FS {
	t.Helper()
	err := fs.WalkDir(schemas.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(schemas.FS(), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReplay_QuarantinedRecordsAreAppliedAfterTheSchemaIsFixed(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 31, Contacts: 3000, Faults: sandbox.Faults{InvalidRate: 0.04}}})
	first := s.mustSync(datasync.Input{Integration: "crm-contacts"})
	invalid := len(s.sandbox.InvalidContactIDs())
	if first.Counts.Invalid != invalid || invalid == 0 {
		t.Fatalf("first run quarantined %d, want %d", first.Counts.Invalid, invalid)
	}
	rowsBefore := s.count(`SELECT count(*) FROM crm_contacts`)
	cpBefore, _, _ := s.store.LoadCheckpoint(context.Background(), s.schema.DB, "crm-contacts")

	// Deploy the fix: a lenient schema for contacts.
	fixed := func(crm config.Connection) []integration.Definition {
		d := integrations.CRMContacts(crm)
		d.Schema = "contacts-lenient.schema.json"
		return []integration.Definition{d, integrations.CRMCompanies(crm)}
	}
	s.restartWorker(fixed(config.Connection{BaseURL: s.url, Auth: "none"}), withLenientSchema(t))

	res := s.mustSync(datasync.Input{Integration: "crm-contacts", Replay: true})
	if res.Status != progress.StatusCompleted || res.Counts.Fetched != invalid {
		t.Fatalf("replay: status %s, fetched %d, want %d (counts %+v)", res.Status, res.Counts.Fetched, invalid, res.Counts)
	}
	applied := s.count(`SELECT count(*) FROM crm_contacts`) - rowsBefore
	if applied == 0 || applied != res.Counts.Inserted {
		t.Errorf("replay inserted %d rows, counted %d", applied, res.Counts.Inserted)
	}
	// Nothing lost: each replayed record is now applied and marked replayed,
	// or still invalid (missing id, an email the mapping requires, a score
	// that is no number) and still pending, once, with the new errors.
	st := store.New(s.schema.DB)
	pending, _ := st.ListQuarantine(context.Background(), store.QuarantineFilter{Integration: "crm-contacts", PendingOnly: true})
	if applied+len(pending) != invalid {
		t.Errorf("replayed %d: %d applied + %d still pending != %d", invalid, applied, len(pending), invalid)
	}
	if len(pending) == 0 {
		t.Error("want some records that even the lenient schema and the mapping refuse")
	}
	// Still-invalid records keep their one entry (now pointing at the
	// replay run that met them last): the replay added none.
	if n, _ := st.CountQuarantine(context.Background(), store.QuarantineFilter{Integration: "crm-contacts"}); n != invalid {
		t.Errorf("%d quarantine entries after the replay, want the first run's %d", n, invalid)
	}
	again := len(pending)
	// The replay did not move the sync's checkpoint.
	cpAfter, _, _ := s.store.LoadCheckpoint(context.Background(), s.schema.DB, "crm-contacts")
	if cpAfter.Checkpoint != cpBefore.Checkpoint {
		t.Errorf("replay moved the checkpoint from %+v to %+v", cpBefore.Checkpoint, cpAfter.Checkpoint)
	}
	// A second replay finds only the records quarantined again, and no longer
	// the replayed ones.
	res2 := s.mustSync(datasync.Input{Integration: "crm-contacts", Replay: true})
	if res2.Counts.Fetched != again || res2.Counts.Applied() != 0 {
		t.Errorf("second replay fetched %d (want %d) and applied %d (want 0)", res2.Counts.Fetched, again, res2.Counts.Applied())
	}
}
