package integration

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/mapping"
	"github.com/tetherflow/tether/activities/store"
	"github.com/tetherflow/tether/workflows/datasync"
)

const peopleSchema = `{"type": "object", "required": ["id", "email", "updated_at"],
  "properties": {"id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"}, "updated_at": {"type": "string"}}}`

// peopleByEmail reads source_people into people_copy, detecting duplicate
// people by normalised email with the given policy.
func peopleByEmail(dsn, policy string) integration.Definition {
	return integration.Definition{
		Name:   "people-" + policy,
		Source: integration.Source{Postgres: &pgsource.Config{DSN: dsn, Table: "source_people", Key: []string{"id"}, CursorColumn: "updated_at"}},
		Schema: "people.schema.json", KeyField: "id", CursorField: "updated_at",
		Mapping: mapping.Mapping{Fields: []mapping.Field{
			{To: "id", From: "id", Cast: "int", Required: true},
			{To: "email", From: "email", Normalize: []string{"email"}},
			{To: "name", From: "name"},
			{To: "updated_at", From: "updated_at", Cast: "timestamp"},
		}},
		Match: &integration.Match{Fields: []string{"email"}, Policy: policy},
		Destination: integration.Destination{Postgres: &pgsink.Table{
			Name: "people_copy",
			Columns: []pgsink.Column{
				{Name: "id", Type: "bigint"}, {Name: "email", Type: "text"},
				{Name: "name", Type: "text"}, {Name: "updated_at", Type: "timestamptz"},
			},
			Key: []string{"id"}, VersionColumn: "updated_at",
		}},
		BatchSize:        50,
		InvalidThreshold: 0.2,
	}
}

func TestMatch_DuplicatesByEmailAreQuarantinedOrMerged(t *testing.T) {
	for _, policy := range []string{integration.MatchQuarantine, integration.MatchMerge} {
		t.Run(policy, func(t *testing.T) {
			s := newStack(t, stackOptions{noWorker: true})
			// 200 people; every tenth (10, 20, ...) reappears later under id
			// 1000+n with the same address spelt differently and a newer name.
			if _, err := s.schema.DB.Exec(`
CREATE TABLE source_people (id bigint PRIMARY KEY, email text, name text, updated_at timestamptz NOT NULL);
INSERT INTO source_people SELECT g, 'person' || g || '@example.com', 'Person ' || g, timestamptz '2026-01-01' + g * interval '1 minute'
FROM generate_series(1, 200) g;
INSERT INTO source_people SELECT 1000 + g, '  Person' || g || '@EXAMPLE.com ', 'Renamed ' || g, timestamptz '2026-02-01' + g * interval '1 minute'
FROM generate_series(10, 200, 10) g;`); err != nil {
				t.Fatal(err)
			}
			def := peopleByEmail(s.schema.DSN, policy)
			s.restartWorker([]integration.Definition{def}, withSchemaFiles(t, fstest.MapFS{"people.schema.json": {Data: []byte(peopleSchema)}}))
			res := s.mustSync(datasync.Input{Integration: def.Name})
			if res.Counts.Fetched != 220 {
				t.Fatalf("fetched %d, want 220", res.Counts.Fetched)
			}
			rows := s.tableRows("people_copy")
			if len(rows) != 200 {
				t.Errorf("people_copy holds %d rows, want 200 (one per person)", len(rows))
			}
			pending, err := s.store.ListQuarantine(context.Background(), store.QuarantineFilter{Integration: def.Name, PendingOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			for n := int64(10); n <= 200; n += 10 {
				row := rows[n]
				switch policy {
				case integration.MatchQuarantine:
					if row["name"] != "Person "+strconv.FormatInt(n, 10) {
						t.Errorf("person %d: %v, want the first record kept", n, row)
					}
				case integration.MatchMerge:
					if row["name"] != "Renamed "+strconv.FormatInt(n, 10) {
						t.Errorf("person %d: %v, want the duplicate merged into it", n, row)
					}
				}
				if _, extra := rows[1000+n]; extra {
					t.Errorf("duplicate %d was written as a person of its own", 1000+n)
				}
			}
			if policy == integration.MatchMerge {
				if len(pending) != 0 || res.Counts.Invalid != 0 {
					t.Errorf("merge quarantined %d records: %+v", len(pending), pending)
				}
				return
			}
			if len(pending) != 20 || res.Counts.Invalid != 20 {
				t.Fatalf("%d duplicates in quarantine (run counted %d), want 20", len(pending), res.Counts.Invalid)
			}
			for _, q := range pending {
				k, _ := strconv.ParseInt(q.Key, 10, 64)
				want := "duplicate of record " + strconv.FormatInt(k-1000, 10) + ": same email"
				if len(q.Errors) != 1 || q.Errors[0].Keyword != "duplicate" || !strings.HasPrefix(q.Errors[0].Message, want) {
					t.Errorf("quarantined %s: %+v, want %q", q.Key, q.Errors, want)
				}
			}
			// A second run writes nothing new: the duplicates stay duplicates.
			again := s.mustSync(datasync.Input{Integration: def.Name, Full: true})
			if again.Counts.Applied() != 0 {
				t.Errorf("rerun applied %d rows", again.Counts.Applied())
			}
		})
	}
}
