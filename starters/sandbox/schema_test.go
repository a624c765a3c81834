package sandbox

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
)

// TestServer_ServedRecordsAgainstShippedSchemas checks the served records
// against the schemas the pipeline validates them with: exactly the
// contacts InvalidContactIDs names fail, every defect kind fails, and every
// company passes.
func TestServer_ServedRecordsAgainstShippedSchemas(t *testing.T) {
	reg, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		t.Fatalf("schemas: %v", err)
	}
	tests := []struct {
		resource string
		schema   string
	}{
		{resource: ResourceContacts, schema: "contacts.schema.json"},
		{resource: ResourceCompanies, schema: "companies.schema.json"},
	}
	s := mustNew(t, Options{Seed: 21, Contacts: 3000, Faults: Faults{InvalidRate: 0.1}})
	s.Touch(ResourceContacts, 100)
	s.Add(ResourceContacts, 50)
	s.Touch(ResourceCompanies, 10)
	s.Add(ResourceCompanies, 5)
	defectOf := map[string]Defect{}
	for _, c := range s.Contacts() {
		defectOf[c.UUID] = c.Defect
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			v, err := reg.Get(tt.schema)
			if err != nil {
				t.Fatal(err)
			}
			var invalid []int64
			failedKinds := map[Defect]bool{}
			for _, raw := range allRecords(t, s, tt.resource) {
				rec, err := schema.Decode(raw)
				if err != nil {
					t.Fatalf("decode %s: %v", raw, err)
				}
				problems := v.Validate(rec)
				var key struct {
					ID   int64  `json:"id"`
					UUID string `json:"uuid"`
				}
				_ = json.Unmarshal(raw, &key)
				d := defectOf[key.UUID]
				if (len(problems) > 0) != (d != DefectNone) {
					t.Fatalf("record %s: schema problems %v, defect %q", raw, problems, d)
				}
				if len(problems) > 0 {
					failedKinds[d] = true
					invalid = append(invalid, key.ID)
				}
			}
			if tt.resource == ResourceCompanies {
				if len(invalid) != 0 {
					t.Fatalf("%d companies fail their schema", len(invalid))
				}
				return
			}
			if want := s.InvalidContactIDs(); len(invalid) != len(want) || len(want) != 305 {
				t.Fatalf("%d contacts fail the schema, InvalidContactIDs has %d, want round(3050*0.1)=305", len(invalid), len(want))
			}
			for _, d := range defects() {
				if !failedKinds[d] {
					t.Errorf("defect %s never failed the schema", d)
				}
			}
			// The ones served with an id are exactly InvalidContactIDs minus
			// those whose defect is the missing id.
			var withID []int64
			for _, c := range s.Contacts() {
				if c.Defect != DefectNone && c.Defect != DefectMissingID {
					withID = append(withID, c.ID)
				}
			}
			invalid = slices.DeleteFunc(invalid, func(id int64) bool { return id == 0 })
			slices.Sort(invalid)
			if !slices.Equal(invalid, withID) {
				t.Fatalf("invalid ids served %v, want %v", invalid, withID)
			}
		})
	}
}
