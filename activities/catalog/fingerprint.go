package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Fingerprint identifies one version of an integration's definition. A run
// is pinned to the fingerprint StartRun returns (syncstep.Plan.Definition):
// every later step of the run uses that version, even after a reload.
//
// It is made of the name and version and, for an integration declared in a
// file, declared: the file's declarative.Spec Hash (so it changes with any
// setting, mapping, secret reference or schema file, and not with the
// secrets' values). For a Go integration (declared ""), it is made of the
// definition's JSON without its Go functions (Transform, a mapping's
// Compute: only whether there is a Transform counts) and without the
// secrets' values (auth tokens, API keys, client secrets, a PostgreSQL
// source's dsn), which can be rotated without unpinning anything. A Go
// definition changes only with a new worker binary or configuration, that
// is with a restart: a run pinned to the old one then fails with a
// configuration error unless the fingerprint is the same.
func Fingerprint(def integration.Definition, declared string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00", def.Name, def.Version)
	if declared != "" {
		fmt.Fprintf(h, "file\x00%s", declared)
	} else {
		b, err := definitionJSON(def)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "go\x00%s", b)
	}
	return fmt.Sprintf("v%d-%s", def.Version, hex.EncodeToString(h.Sum(nil)[:8])), nil
}

// definitionJSON is the JSON of a Go definition's serialisable fields, its
// secrets replaced by whether they are set. Its top-level fields are keyed
// by their Go names (sorted); a function field counts as whether it is set.
func definitionJSON(def integration.Definition) ([]byte, error) {
	def = withoutSecrets(def)
	v := reflect.ValueOf(def)
	t := v.Type()
	fields := make(map[string]any, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Type.Kind() == reflect.Func {
			fields[f.Name] = !v.Field(i).IsNil()
			continue
		}
		fields[f.Name] = v.Field(i).Interface()
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("fingerprint: the definition is not serialisable: %w", err)
	}
	return b, nil
}

// withoutSecrets returns def with every secret value replaced by a marker
// saying it is set; the configuration it points into is copied, not changed.
func withoutSecrets(def integration.Definition) integration.Definition {
	if s := def.Source.HTTP; s != nil {
		c := *s
		c.Auth = authWithoutSecrets(c.Auth)
		def.Source.HTTP = &c
	}
	if s := def.Source.Postgres; s != nil {
		c := *s
		c.DSN = secretMarker(c.DSN)
		def.Source.Postgres = &c
	}
	def.Destination = destinationWithoutSecrets(def.Destination)
	if def.Destinations != nil {
		dests := make([]integration.Destination, len(def.Destinations))
		for i, d := range def.Destinations {
			dests[i] = destinationWithoutSecrets(d)
		}
		def.Destinations = dests
	}
	return def
}

func destinationWithoutSecrets(d integration.Destination) integration.Destination {
	if d.HTTP != nil {
		c := *d.HTTP
		c.Auth = authWithoutSecrets(c.Auth)
		d.HTTP = &c
	}
	return d
}

func authWithoutSecrets(a httpclient.Auth) httpclient.Auth {
	a.Token = secretMarker(a.Token)
	a.APIKey = secretMarker(a.APIKey)
	a.ClientSecret = secretMarker(a.ClientSecret)
	return a
}

func secretMarker(s string) string {
	if s == "" {
		return ""
	}
	return "(set)"
}
