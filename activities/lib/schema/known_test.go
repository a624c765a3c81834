package schema

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
)

func knownValidator(t *testing.T) *Validator {
	t.Helper()
	reg := NewEmptyRegistry()
	if err := reg.Add("ids.json", []byte(idSchema)); err != nil {
		t.Fatal(err)
	}
	v, err := reg.Get("ids.json")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// validateRaw decodes raw and runs ValidateRaw on it.
func validateRaw(t *testing.T, v *Validator, raw string) []FieldError {
	t.Helper()
	return v.ValidateRaw([]byte(raw), mustDecode(t, raw))
}

func TestValidator_ValidateRaw_RemembersValidRecordsByTheirBytes(t *testing.T) {
	v := knownValidator(t)
	valid, invalid := `{"id": 7}`, `{"id": "seven"}`

	if errs := validateRaw(t, v, valid); errs != nil {
		t.Fatalf("a valid record: %v", errs)
	}
	if errs := validateRaw(t, v, valid); errs != nil || v.KnownHits() != 1 {
		t.Fatalf("the same bytes again: %v, %d known hits, want none and 1", errs, v.KnownHits())
	}
	// The same record written otherwise is other bytes: validated again.
	if errs := validateRaw(t, v, `{"id":7}`); errs != nil || v.KnownHits() != 1 {
		t.Errorf("other bytes of the same record: %v, %d known hits, want none and still 1", errs, v.KnownHits())
	}
	// An invalid record is never remembered: every read reports its errors,
	// the same as Validate.
	want := v.Validate(mustDecode(t, invalid))
	for i := range 2 {
		if got := validateRaw(t, v, invalid); len(got) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("invalid record, read %d: %v, want %v", i+1, got, want)
		}
	}
	if v.KnownHits() != 1 {
		t.Errorf("%d known hits after the invalid reads, want 1", v.KnownHits())
	}
}

func TestSetKnownRecords_BoundsAndTurnsOffTheMemory(t *testing.T) {
	t.Cleanup(func() { SetKnownRecords(DefaultKnownRecords) })

	SetKnownRecords(0)
	v := knownValidator(t)
	for range 3 {
		if errs := validateRaw(t, v, `{"id": 1}`); errs != nil {
			t.Fatal(errs)
		}
	}
	if v.KnownHits() != 0 {
		t.Errorf("memory off: %d known hits, want 0", v.KnownHits())
	}

	// Bound 2: the first two records are remembered, the third is not.
	SetKnownRecords(2)
	v = knownValidator(t)
	for _, pass := range []string{"first", "second"} {
		for id := 1; id <= 3; id++ {
			if errs := validateRaw(t, v, fmt.Sprintf(`{"id": %d}`, id)); errs != nil {
				t.Fatalf("%s pass, record %d: %v", pass, id, errs)
			}
		}
	}
	if v.KnownHits() != 2 {
		t.Errorf("bound 2, 3 records read twice: %d known hits, want 2", v.KnownHits())
	}
}

func TestValidator_ValidateRaw_Concurrently(t *testing.T) {
	v := knownValidator(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				raw := fmt.Sprintf(`{"id": %d}`, i)
				if g%2 == 1 {
					raw = fmt.Sprintf(`{"id": "x%d"}`, i) // invalid
				}
				errs := validateRaw(t, v, raw)
				if (g%2 == 1) != (len(errs) > 0) {
					t.Errorf("goroutine %d, record %s: %v", g, raw, errs)
				}
			}
		})
	}
	wg.Wait()
	// Two goroutines read the same 200 valid records: at least the
	// second reader of each may take it as known, never more than 200.
	if h := v.KnownHits(); h > 200 {
		t.Errorf("%d known hits for 200 valid records read twice, want at most 200", h)
	}
}
