package declarative

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/sink/pgsink"
	"github.com/tetherflow/tether/activities/source/httpsource"
	"github.com/tetherflow/tether/activities/transform"
)

// The schema, the Spec types and the packages they describe must not
// drift apart: these tests fail when a connector gains a setting the file
// format cannot say, or the schema allows a name the code refuses.

// schemaAt returns the schema value at a JSON pointer.
func schemaAt(t *testing.T, pointer string) any {
	t.Helper()
	f, err := compiledFileSchema()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := lookup(f.doc, pointer)
	if !ok {
		t.Fatalf("no %s in the schema", pointer)
	}
	return v
}

// schemaEnum returns the enum at pointer, as strings.
func schemaEnum(t *testing.T, pointer string) []string {
	t.Helper()
	var out []string
	for _, v := range schemaAt(t, pointer+"/enum").([]any) {
		out = append(out, v.(string))
	}
	return out
}

// schemaKeys returns the property names of the object schema at pointer.
func schemaKeys(t *testing.T, pointer string) []string {
	t.Helper()
	props := schemaAt(t, pointer+"/properties").(map[string]any)
	var out []string
	for k := range props {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// tags returns the mapstructure keys of a struct type, sorted.
func tags(typ reflect.Type) []string {
	var out []string
	for i := 0; i < typ.NumField(); i++ {
		tag := strings.Split(typ.Field(i).Tag.Get("mapstructure"), ",")[0]
		if tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	slices.Sort(out)
	return out
}

var quoted = regexp.MustCompile(`"([^"]*)"`)

// wantList returns the quoted names in the "(want one of ...)" part of msg.
func wantList(t *testing.T, msg string) []string {
	t.Helper()
	i := strings.Index(msg, "(want one of ")
	if i < 0 {
		t.Fatalf("no list of names in %q", msg)
	}
	var out []string
	for _, m := range quoted.FindAllStringSubmatch(msg[i:], -1) {
		out = append(out, m[1])
	}
	return out
}

func TestSchema_CastsAreTransformCasts(t *testing.T) {
	enum := schemaEnum(t, "/$defs/field/properties/cast")
	err := transform.Mapping{Fields: []transform.Field{{To: "x", From: "x", Cast: "no-such-cast"}}}.Validate()
	if err == nil {
		t.Fatal("transform accepts any cast")
	}
	if want := wantList(t, err.Error()); !slices.Equal(enum, want) {
		t.Errorf("schema casts %q, transform casts %q", enum, want)
	}
	for _, c := range enum {
		if err := (transform.Mapping{Fields: []transform.Field{{To: "x", From: "x", Cast: c}}}).Validate(); err != nil {
			t.Errorf("cast %q: %v", c, err)
		}
	}
}

func TestSchema_NormalisersAreTransformNormalisers(t *testing.T) {
	enum := schemaEnum(t, "/$defs/field/properties/normalize/items")
	err := transform.Mapping{Fields: []transform.Field{{To: "x", From: "x", Normalize: []string{"no-such-normaliser"}}}}.Validate()
	if err == nil {
		t.Fatal("transform accepts any normaliser")
	}
	if want := wantList(t, err.Error()); !slices.Equal(enum, want) {
		t.Errorf("schema normalisers %q, transform normalisers %q", enum, want)
	}
	for _, n := range enum {
		if err := (transform.Mapping{Fields: []transform.Field{{To: "x", From: "x", Normalize: []string{n}}}}).Validate(); err != nil {
			t.Errorf("normaliser %q: %v", n, err)
		}
	}
}

func TestSchema_ColumnTypesArePgsinkTypes(t *testing.T) {
	enum := schemaEnum(t, "/$defs/postgresTable/properties/columns/items/properties/type")
	table := func(typ string) pgsink.Table {
		return pgsink.Table{Name: "t", Columns: []pgsink.Column{{Name: "a", Type: typ}}, Key: []string{"a"}}
	}
	err := table("no-such-type").Validate()
	if err == nil {
		t.Fatal("pgsink accepts any type")
	}
	msg := err.Error()
	i := strings.Index(msg, "(want one of ")
	if i < 0 {
		t.Fatalf("no list of types in %q", msg)
	}
	list := msg[i+len("(want one of "):]
	list = list[:strings.IndexByte(list, ')')]
	if want := strings.Split(list, ", "); !slices.Equal(enum, want) {
		t.Errorf("schema column types %q, pgsink types %q", enum, want)
	}
	for _, typ := range enum {
		if err := table(typ).Validate(); err != nil {
			t.Errorf("type %q: %v", typ, err)
		}
	}
}

func TestSchema_PaginationStylesAndAuthKinds(t *testing.T) {
	if got, want := schemaEnum(t, "/$defs/httpSource/properties/pagination/properties/style"),
		[]string{httpsource.StyleNone, httpsource.StylePage, httpsource.StyleOffset, httpsource.StyleCursor, httpsource.StyleLink}; !slices.Equal(got, want) {
		t.Errorf("pagination styles %q, httpsource %q", got, want)
	}
	if got, want := schemaEnum(t, "/$defs/httpAuth/properties/kind"),
		[]string{httpsource.AuthNone, httpsource.AuthBearer, httpsource.AuthAPIKey, httpsource.AuthOAuth2}; !slices.Equal(got, want) {
		t.Errorf("auth kinds %q, httpsource %q", got, want)
	}
}

func TestSchema_KeysAreTheGoKeys(t *testing.T) {
	tests := []struct {
		pointer string
		want    []reflect.Type
	}{
		{pointer: "", want: []reflect.Type{reflect.TypeFor[Spec]()}},
		{pointer: "/$defs/source", want: []reflect.Type{reflect.TypeFor[Source]()}},
		{pointer: "/$defs/httpSource", want: []reflect.Type{reflect.TypeFor[httpsource.Config](), reflect.TypeFor[HTTPSource]()}},
		{pointer: "/$defs/httpSource/properties/pagination", want: []reflect.Type{reflect.TypeFor[httpsource.Pagination]()}},
		{pointer: "/$defs/httpSource/properties/incremental", want: []reflect.Type{reflect.TypeFor[httpsource.Incremental]()}},
		{pointer: "/$defs/httpSource/properties/rate_limit", want: []reflect.Type{reflect.TypeFor[httpsource.RateLimit]()}},
		{pointer: "/$defs/httpSource/properties/retry", want: []reflect.Type{reflect.TypeFor[httpsource.Retry]()}},
		{pointer: "/$defs/httpAuth", want: []reflect.Type{reflect.TypeFor[httpsource.Auth](), reflect.TypeFor[HTTPAuth]()}},
		{pointer: "/$defs/secret", want: []reflect.Type{reflect.TypeFor[Secret]()}},
		{pointer: "/$defs/field", want: []reflect.Type{reflect.TypeFor[Field]()}},
		{pointer: "/$defs/destination", want: []reflect.Type{reflect.TypeFor[Destination]()}},
		{pointer: "/$defs/postgresTable", want: []reflect.Type{reflect.TypeFor[pgsink.Table]()}},
		{pointer: "/$defs/postgresTable/properties/columns/items", want: []reflect.Type{reflect.TypeFor[pgsink.Column]()}},
	}
	for _, tt := range tests {
		t.Run(tt.pointer, func(t *testing.T) {
			got := schemaKeys(t, tt.pointer)
			for _, typ := range tt.want {
				if want := tags(typ); !slices.Equal(got, want) {
					t.Errorf("schema keys %q, %v keys %q", got, typ, want)
				}
			}
		})
	}
}

// TestHTTPSource_MirrorsConfig: HTTPSource is httpsource.Config with
// secret references; every other field has the Config's type.
func TestHTTPSource_MirrorsConfig(t *testing.T) {
	mirror := func(t *testing.T, orig, spec reflect.Type, secrets map[string]bool) {
		for i := 0; i < orig.NumField(); i++ {
			of := orig.Field(i)
			sf, ok := spec.FieldByName(of.Name)
			if !ok {
				t.Errorf("%v has no field %s", spec, of.Name)
				continue
			}
			switch {
			case secrets[of.Name]:
				if sf.Type != reflect.TypeFor[*Secret]() {
					t.Errorf("%v.%s is %v, want *Secret", spec, of.Name, sf.Type)
				}
			case of.Name == "Auth":
			case sf.Type != of.Type:
				t.Errorf("%v.%s is %v, want %v", spec, of.Name, sf.Type, of.Type)
			}
		}
	}
	mirror(t, reflect.TypeFor[httpsource.Config](), reflect.TypeFor[HTTPSource](), nil)
	mirror(t, reflect.TypeFor[httpsource.Auth](), reflect.TypeFor[HTTPAuth](), map[string]bool{"Token": true, "APIKey": true, "ClientSecret": true})
}

// TestField_CoversTransformField: every transform.Field setting but the
// Go-only Compute can be written in a file.
func TestField_CoversTransformField(t *testing.T) {
	tf := reflect.TypeFor[transform.Field]()
	for i := 0; i < tf.NumField(); i++ {
		f := tf.Field(i)
		if f.Name == "Compute" {
			continue
		}
		if _, ok := reflect.TypeFor[Field]().FieldByName(f.Name); !ok {
			t.Errorf("transform.Field.%s cannot be written in an integration file", f.Name)
		}
	}
}
