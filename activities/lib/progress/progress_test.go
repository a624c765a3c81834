package progress

import (
	"reflect"
	"testing"
)

// TestCounts_AddSub: Sub undoes Add field by field, every field included
// (a field left out of either would make a reset run's counts drift).
func TestCounts_AddSub(t *testing.T) {
	var a, b Counts
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := 0; i < va.NumField(); i++ {
		va.Field(i).SetInt(int64(100 + i))
		vb.Field(i).SetInt(int64(1 + i))
	}
	sum := a.Add(b)
	vs := reflect.ValueOf(sum)
	for i := 0; i < vs.NumField(); i++ {
		if got, want := vs.Field(i).Int(), int64(101+2*i); got != want {
			t.Errorf("Add: %s = %d, want %d", vs.Type().Field(i).Name, got, want)
		}
	}
	if got := sum.Sub(b); got != a {
		t.Errorf("Sub(Add(a, b), b) = %+v, want %+v", got, a)
	}
}
