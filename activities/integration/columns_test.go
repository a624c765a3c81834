package integration

import (
	"slices"
	"testing"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/lib/mapping"
)

// fields is a mapping of to: from pairs.
func fields(pairs ...string) mapping.Mapping {
	var m mapping.Mapping
	for i := 0; i < len(pairs); i += 2 {
		m.Fields = append(m.Fields, mapping.Field{To: pairs[i], From: pairs[i+1]})
	}
	return m
}

// linkTable is a PostgreSQL step keeping an id and the billing id.
func linkTable() *pgsink.Table {
	return &pgsink.Table{Name: "links", Key: []string{"id"}, Columns: []pgsink.Column{
		{Name: "id", Type: pgsink.TypeBigint, NotNull: true},
		{Name: "billing_id", Type: pgsink.TypeText, NotNull: true},
	}}
}

// billingStep is an HTTP step: it takes whole rows.
func billingStep() Destination {
	return Destination{Name: "billing", Mode: ModeUpsert, HTTP: &httpsink.Config{
		BaseURL: "https://billing.example.com",
		Create:  httpsink.Endpoint{Method: "POST", Path: "/v1/customers"},
		Update:  httpsink.Endpoint{Method: "PATCH", Path: "/v1/customers/{{.external_id}}"},
	}}
}

func TestDefinition_Validate_RefusesDroppedValues(t *testing.T) {
	tests := []struct {
		name string
		edit func(d *Definition)
		want string
	}{
		{
			name: "a mapping target the table does not declare",
			edit: func(d *Definition) { d.Mapping = fields("id", "id", "full_name", "name") },
			want: `mapping[1].to: "full_name" is stored by no destination (it is not a column of table crm_contacts (columns: id, email, updated_at, deleted_at)), so its value would be dropped from every row`,
		},
		{
			name: "a not_null column nothing maps",
			edit: func(d *Definition) {
				d.Destination.Postgres.Columns[1].NotNull = true
			},
			want: `destination.postgres.columns[1]: column "email" is not_null but nothing maps a value to it, so every row would be refused`,
		},
		{
			name: "a key column nothing maps",
			edit: func(d *Definition) { d.Mapping = fields("email", "email") },
			want: `destination.postgres.columns[0]: column "id" is in the key but nothing maps a value to it`,
		},
		{
			name: "a step's own mapping writes an undeclared column",
			edit: func(d *Definition) {
				d.Destination.Mapping = fields("id", "id", "emial", "email")
			},
			want: `destination.mapping[1].to: "emial" is not a column of the destination table crm_contacts (did you mean "email"?), so its value would be dropped from every row; write to a declared column, or add it to destination.postgres.columns`,
		},
		{
			name: "an id filled into an undeclared column",
			edit: func(d *Definition) {
				d.Destination = Destination{}
				link := linkTable()
				link.Columns[1].NotNull = false
				d.Destinations = []Destination{billingStep(), {Name: "link", Postgres: link, IDs: map[string]string{"billing_ref": "billing"}}}
			},
			want: `destinations[1].ids.billing_ref: "billing_ref" is not a column of the destination table links`,
		},
		{
			name: "a field no step keeps, beside a step with its own mapping",
			edit: func(d *Definition) {
				d.Mapping = fields("id", "id", "email", "email")
				d.Destination = Destination{}
				d.Destinations = []Destination{
					{Name: "link", Postgres: linkTable(), IDs: map[string]string{"billing_id": "link"}},
				}
				d.Destinations[0].IDs = nil
				d.Destinations[0].Mapping = fields("id", "id", "billing_id", "id")
			},
			want: `mapping[1].to: "email" is stored by no destination (step "link"'s mapping does not read it)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scheduled()
			tt.edit(&d)
			refusedOnce(t, d, tt.want)
		})
	}
}

func TestDefinition_Validate_AcceptsKeptValues(t *testing.T) {
	tests := []struct {
		name string
		edit func(d *Definition)
	}{
		{name: "every target a column", edit: func(d *Definition) {
			d.Mapping = fields("id", "id", "email", "email", "updated_at", "updated_at")
		}},
		{
			// The HTTP step takes the whole row, the link table the fields
			// it declares and the id the billing step gave.
			name: "a saga whose table keeps part of the row",
			edit: func(d *Definition) {
				d.Mapping = fields("id", "id", "name", "full_name", "email", "email")
				d.Destination = Destination{}
				d.Destinations = []Destination{billingStep(), {Name: "link", Postgres: linkTable(), IDs: map[string]string{"billing_id": "billing"}}}
			},
		},
		{
			name: "a step mapping reads what the table lacks",
			edit: func(d *Definition) {
				d.Mapping = fields("contact_id", "id", "address", "email")
				d.Destination.Mapping = fields("id", "contact_id", "email", "address")
			},
		},
		{
			// A Go Transform shapes the rows: only a run can see them.
			name: "a Go transform after the mapping",
			edit: func(d *Definition) {
				d.Mapping = fields("id", "id", "full_name", "name")
				d.Transform = func(r mapping.Record) (mapping.Record, error) { return r, nil }
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scheduled()
			tt.edit(&d)
			if err := d.Normalize().Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func TestDefinition_Drops(t *testing.T) {
	identity := func(r mapping.Record) (mapping.Record, error) { return r, nil }
	d := scheduled()
	if d.Drops() != nil {
		t.Error("a mapping alone: Drops is not nil, though the mapping's fields are checked when the integration is")
	}
	d.Transform = identity
	drops := d.Drops()
	if drops == nil {
		t.Fatal("a Go transform into a table: Drops is nil")
	}
	got := drops(map[string]any{"id": 1, "score": 2, "email": "a@example.com", "debug": true})
	if want := []string{"debug", "score"}; !slices.Equal(got, want) {
		t.Errorf("Drops(row) = %v, want %v", got, want)
	}
	d.Destination = Destination{}
	d.Destinations = []Destination{billingStep(), {Name: "link", Postgres: linkTable(), IDs: map[string]string{"billing_id": "billing"}}}
	if d.Drops() != nil {
		t.Error("with a step taking whole rows: Drops is not nil")
	}
}
