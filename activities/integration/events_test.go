package integration

import (
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
)

func TestValidate_EventsPolicy(t *testing.T) {
	pgSource := func(d *Definition) {
		d.Source = Source{Postgres: &pgsource.Config{DSN: "postgres://u@h/db", Table: "contacts", Key: []string{"id"}}}
	}
	tests := []struct {
		name string
		edit func(*Definition)
		want []string // substrings of the error; none = valid
	}{
		{"zero value", func(*Definition) {}, nil},
		{"tombstone with its column", func(d *Definition) { d.Events = Events{Deletes: DeletesTombstone, TombstoneColumn: "deleted_at"} }, nil},
		{"ignore deletes", func(d *Definition) { d.Events.Deletes = DeletesIgnore }, nil},
		{"unknown policy", func(d *Definition) { d.Events.Deletes = "purge" }, []string{`events.deletes: "purge" is not`}},
		{"tombstone without column", func(d *Definition) { d.Events.Deletes = DeletesTombstone }, []string{"events.tombstone_column: required with deletes: tombstone"}},
		{"column without tombstone", func(d *Definition) { d.Events.TombstoneColumn = "deleted_at" }, []string{"events.tombstone_column: is only used with deletes: tombstone"}},
		{"tombstone column not timestamptz", func(d *Definition) { d.Events = Events{Deletes: DeletesTombstone, TombstoneColumn: "email"} },
			[]string{`events.tombstone_column: destination "postgres": "email" is a text column`}},
		{"shards out of range", func(d *Definition) { d.Events.Shards = MaxEventShards + 1 }, []string{"events.shards: 1025 is out of range 1..1024"}},
		{"capture of an HTTP source", func(d *Definition) { d.Events.Capture = true }, []string{"events.capture: needs a PostgreSQL source"}},
		{"capture of a PostgreSQL source", func(d *Definition) { pgSource(d); d.Events.Capture = true }, nil},
		{"capture with where", func(d *Definition) { pgSource(d); d.Source.Postgres.Where = "x > 1"; d.Events.Capture = true },
			[]string{"events.capture: cannot be used with source.postgres.where"}},
		{"capture into an API", func(d *Definition) {
			pgSource(d)
			d.Events.Capture = true
			d.Destination = Destination{HTTP: &httpsink.Config{BaseURL: "https://api.example.com", Create: httpsink.Endpoint{Path: "/v1/x"}}}
		}, []string{`events.capture: destination "http" is http`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scheduled()
			tt.edit(&d)
			err := d.Normalize().Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if got := scheduled().EventShards(); got != DefaultEventShards {
		t.Errorf("default shards %d, want %d", got, DefaultEventShards)
	}
}
