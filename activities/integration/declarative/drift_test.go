package declarative

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/connector/httpsource"
	"github.com/tetherflow/tether/activities/connector/pgsink"
	"github.com/tetherflow/tether/activities/connector/pgsource"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/lib/mapping"
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
	err := mapping.Mapping{Fields: []mapping.Field{{To: "x", From: "x", Cast: "no-such-cast"}}}.Validate()
	if err == nil {
		t.Fatal("transform accepts any cast")
	}
	if want := wantList(t, err.Error()); !slices.Equal(enum, want) {
		t.Errorf("schema casts %q, transform casts %q", enum, want)
	}
	for _, c := range enum {
		if err := (mapping.Mapping{Fields: []mapping.Field{{To: "x", From: "x", Cast: c}}}).Validate(); err != nil {
			t.Errorf("cast %q: %v", c, err)
		}
	}
}

func TestSchema_NormalisersAreTransformNormalisers(t *testing.T) {
	enum := schemaEnum(t, "/$defs/field/properties/normalize/items")
	err := mapping.Mapping{Fields: []mapping.Field{{To: "x", From: "x", Normalize: []string{"no-such-normaliser"}}}}.Validate()
	if err == nil {
		t.Fatal("transform accepts any normaliser")
	}
	if want := wantList(t, err.Error()); !slices.Equal(enum, want) {
		t.Errorf("schema normalisers %q, transform normalisers %q", enum, want)
	}
	for _, n := range enum {
		if err := (mapping.Mapping{Fields: []mapping.Field{{To: "x", From: "x", Normalize: []string{n}}}}).Validate(); err != nil {
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
		// fileOnly are keys of the file the Go configuration has not: a
		// connection's name stands for its base_url, auth and rate_limit.
		fileOnly []string
	}{
		{pointer: "", want: []reflect.Type{reflect.TypeFor[Spec]()}},
		{pointer: "/$defs/source", want: []reflect.Type{reflect.TypeFor[Source]()}},
		{pointer: "/$defs/httpSource", want: []reflect.Type{reflect.TypeFor[httpsource.Config](), reflect.TypeFor[HTTPSource]()}, fileOnly: []string{"connection"}},
		{pointer: "/$defs/httpSource/properties/pagination", want: []reflect.Type{reflect.TypeFor[httpsource.Pagination]()}},
		{pointer: "/$defs/httpSource/properties/incremental", want: []reflect.Type{reflect.TypeFor[httpsource.Incremental]()}},
		{pointer: "/$defs/rateLimit", want: []reflect.Type{reflect.TypeFor[httpsource.RateLimit](), reflect.TypeFor[httpclient.RateLimit]()}},
		{pointer: "/$defs/retry", want: []reflect.Type{reflect.TypeFor[httpsource.Retry](), reflect.TypeFor[httpclient.Retry]()}},
		{pointer: "/$defs/postgresSource", want: []reflect.Type{reflect.TypeFor[pgsource.Config]()}},
		{pointer: "/$defs/httpDestination", want: []reflect.Type{reflect.TypeFor[httpsink.Config](), reflect.TypeFor[HTTPDestination]()}, fileOnly: []string{"connection"}},
		{pointer: "/$defs/httpDestination/properties/batch", want: []reflect.Type{reflect.TypeFor[httpsink.Batch]()}},
		{pointer: "/$defs/httpDestination/properties/circuit_breaker", want: []reflect.Type{reflect.TypeFor[httpsink.CircuitBreaker]()}},
		{pointer: "/$defs/endpoint", want: []reflect.Type{reflect.TypeFor[httpsink.Endpoint]()}},
		{pointer: "/$defs/match", want: []reflect.Type{reflect.TypeFor[integration.Match]()}},
		{pointer: "/$defs/schedule", want: []reflect.Type{reflect.TypeFor[integration.Schedule]()}},
		{pointer: "/$defs/reconcile", want: []reflect.Type{reflect.TypeFor[integration.Reconcile]()}},
		{pointer: "/$defs/httpAuth", want: []reflect.Type{reflect.TypeFor[httpsource.Auth](), reflect.TypeFor[HTTPAuth]()}},
		{pointer: "/$defs/secret", want: []reflect.Type{reflect.TypeFor[Secret]()}},
		{pointer: "/$defs/field", want: []reflect.Type{reflect.TypeFor[Field]()}},
		{pointer: "/$defs/destination", want: []reflect.Type{reflect.TypeFor[Destination](), reflect.TypeFor[integration.Destination]()}},
		{pointer: "/$defs/postgresTable", want: []reflect.Type{reflect.TypeFor[pgsink.Table]()}},
		{pointer: "/$defs/postgresTable/properties/columns/items", want: []reflect.Type{reflect.TypeFor[pgsink.Column]()}},
	}
	for _, tt := range tests {
		t.Run(tt.pointer, func(t *testing.T) {
			got := schemaKeys(t, tt.pointer)
			for _, typ := range tt.want {
				want := tags(typ)
				for _, k := range tt.fileOnly {
					if !slices.Contains(want, k) {
						want = append(want, k)
					}
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("schema keys %q, %v keys %q", got, typ, want)
				}
			}
		})
	}
}

// TestPostgresSource_Keys: PostgresSource has pgsource.Config's keys but
// dsn_env, which the schema refuses with a message pointing at dsn.
func TestPostgresSource_Keys(t *testing.T) {
	got := schemaKeys(t, "/$defs/postgresSource")
	if want := tags(reflect.TypeFor[PostgresSource]()); !slices.Equal(slices.DeleteFunc(got, func(k string) bool { return k == "dsn_env" }), want) {
		t.Errorf("schema keys %q but dsn_env, PostgresSource keys %q", got, want)
	}
	if _, ok := schemaAt(t, "/$defs/postgresSource/properties/dsn_env").(map[string]any)["errorMessage"]; !ok {
		t.Error("dsn_env is refused without saying what to write instead")
	}
}

// TestHTTPSource_MirrorsConfig: HTTPSource is httpsource.Config with
// secret references, and HTTPDestination httpsink.Config; every other
// field has the Config's type.
func TestHTTPSource_MirrorsConfig(t *testing.T) {
	mirror := func(t *testing.T, orig, spec reflect.Type, secrets map[string]bool) {
		for i := 0; i < orig.NumField(); i++ {
			of := orig.Field(i)
			if secrets[of.Name] && spec == reflect.TypeFor[PostgresSource]() && of.Name == "DSNEnv" {
				continue // dsn {env: NAME} is how a file says it
			}
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
	mirror(t, reflect.TypeFor[httpsink.Config](), reflect.TypeFor[HTTPDestination](), nil)
	mirror(t, reflect.TypeFor[pgsource.Config](), reflect.TypeFor[PostgresSource](), map[string]bool{"DSN": true, "DSNEnv": true})
}

// TestDestination_MirrorsIntegrationDestination: a step in a file says
// everything integration.Destination does; the connectors' settings and
// the mapping are in the file's format.
func TestDestination_MirrorsIntegrationDestination(t *testing.T) {
	orig, spec := reflect.TypeFor[integration.Destination](), reflect.TypeFor[Destination]()
	asWritten := map[string]reflect.Type{
		"HTTP":    reflect.TypeFor[*HTTPDestination](),
		"Mapping": reflect.TypeFor[[]Field](),
	}
	for i := 0; i < orig.NumField(); i++ {
		of := orig.Field(i)
		sf, ok := spec.FieldByName(of.Name)
		want := of.Type
		if w, ok := asWritten[of.Name]; ok {
			want = w
		}
		if !ok || sf.Type != want {
			t.Errorf("Destination.%s: %v, want %v", of.Name, sf.Type, want)
		}
	}
}

func TestSchema_ModesPoliciesAndMethods(t *testing.T) {
	if got, want := schemaEnum(t, "/$defs/destination/properties/mode"), []string{integration.ModeUpsert, integration.ModeNotify}; !slices.Equal(got, want) {
		t.Errorf("modes %q, integration %q", got, want)
	}
	if got, want := schemaEnum(t, "/$defs/match/properties/policy"), []string{integration.MatchQuarantine, integration.MatchMerge}; !slices.Equal(got, want) {
		t.Errorf("match policies %q, integration %q", got, want)
	}
	if got, want := schemaEnum(t, "/$defs/match/properties/normalize/items"), schemaEnum(t, "/$defs/field/properties/normalize/items"); !slices.Equal(got, want) {
		t.Errorf("match normalisers %q, field normalisers %q", got, want)
	}
	for _, n := range schemaEnum(t, "/$defs/match/properties/normalize/items") {
		if _, err := mapping.Normalizer([]string{n}); err != nil {
			t.Errorf("match normaliser %q: %v", n, err)
		}
	}
	// Every method the schema allows, the sink accepts.
	base := httpsink.Config{BaseURL: "https://api.example.com", Create: httpsink.Endpoint{Path: "/c"}, Update: httpsink.Endpoint{Path: "/u/{{.external_id}}"}}
	for _, ep := range []string{"create", "update", "delete"} {
		for _, m := range schemaEnum(t, "/$defs/httpDestination/properties/"+ep+"/properties/method") {
			c := base
			switch ep {
			case "create":
				c.Create.Method = m
			case "update":
				c.Update.Method = m
			case "delete":
				c.Delete.Method = m
			}
			if err := c.Validate(); err != nil {
				t.Errorf("%s.method %s: %v", ep, m, err)
			}
		}
	}
	// A reversal is sent as the create of a copy of its step's sink.
	for _, m := range schemaEnum(t, "/$defs/destination/properties/reversal/properties/method") {
		c := base
		c.Create.Method = m
		if err := c.Validate(); err != nil {
			t.Errorf("reversal.method %s: %v", m, err)
		}
	}
}

// TestField_CoversTransformField: every mapping.Field setting but the
// Go-only Compute can be written in a file.
func TestField_CoversTransformField(t *testing.T) {
	tf := reflect.TypeFor[mapping.Field]()
	for i := 0; i < tf.NumField(); i++ {
		f := tf.Field(i)
		if f.Name == "Compute" {
			continue
		}
		if _, ok := reflect.TypeFor[Field]().FieldByName(f.Name); !ok {
			t.Errorf("mapping.Field.%s cannot be written in an integration file", f.Name)
		}
	}
}

func TestSchema_ScheduleKindsAndExtras(t *testing.T) {
	if got, want := schemaEnum(t, "/$defs/schedule/properties/kind"),
		[]string{integration.ScheduleSync, integration.ScheduleRefresh, integration.ScheduleReconcile}; !slices.Equal(got, want) {
		t.Errorf("schedule kinds %q, integration %q", got, want)
	}
	if got, want := schemaEnum(t, "/$defs/reconcile/properties/extras"),
		[]string{integration.ExtrasReport, integration.ExtrasDelete, integration.ExtrasMark}; !slices.Equal(got, want) {
		t.Errorf("reconcile extras %q, integration %q", got, want)
	}
	bounds := schemaAt(t, "/$defs/reconcile/properties/chunks/anyOf/1").(map[string]any)
	if fmt.Sprint(bounds["minimum"]) != fmt.Sprint(integration.MinReconcileChunks) || fmt.Sprint(bounds["maximum"]) != fmt.Sprint(integration.MaxReconcileChunks) {
		t.Errorf("chunks bounds %v, integration %d..%d", bounds, integration.MinReconcileChunks, integration.MaxReconcileChunks)
	}
}
