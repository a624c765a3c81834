package declarative

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tetherflow/tether/activities/lib/httpclient"
	"github.com/tetherflow/tether/activities/twoway"
)

// KindTwoWay is the kind of a two-way integration file (kind: two-way);
// a file without kind is a one-way integration.
const KindTwoWay = "two-way"

// TwoWayFile is a two-way integration as written in a file.
type TwoWayFile struct {
	Kind        string          `yaml:"kind"`
	Name        string          `yaml:"name"`
	Description string          `yaml:"description"`
	A           TwoWaySideFile  `yaml:"a"`
	B           TwoWaySideFile  `yaml:"b"`
	Match       []string        `yaml:"match"`
	Conflicts   TwoWayConflicts `yaml:"conflicts"`
	Deletes     string          `yaml:"deletes"`
	Every       string          `yaml:"every"`
	Overlap     string          `yaml:"overlap"`
}

// TwoWaySideFile is one side as written in a file.
type TwoWaySideFile struct {
	Name     string               `yaml:"name"`
	Postgres *twoway.PostgresSide `yaml:"postgres"`
	HTTP     *TwoWayHTTPFile      `yaml:"http"`
	// Kind, Config and Shared declare a side of a kind registered on the
	// worker in Go (app.WithConnectors): its settings as written, decoded
	// by the connector, and the shared fields it maps.
	Kind   string            `yaml:"kind"`
	Config map[string]any    `yaml:"config"`
	Shared []string          `yaml:"shared"`
	Casts  map[string]string `yaml:"casts"`
	// Computed makes shared fields of several of the side's fields.
	Computed map[string]twoway.Computed `yaml:"computed"`
}

// TwoWayHTTPFile is twoway.HTTPSide as written in a file: the base URL
// given or taken from a connection the worker configures, the credentials
// by reference.
type TwoWayHTTPFile struct {
	Connection  string            `yaml:"connection"`
	BaseURL     string            `yaml:"base_url"`
	Path        string            `yaml:"path"`
	Auth        *TwoWayAuthFile   `yaml:"auth"`
	Key         string            `yaml:"key"`
	Version     string            `yaml:"version"`
	UpdatedAt   string            `yaml:"updated_at"`
	Deleted     string            `yaml:"deleted"`
	IfMatch     string            `yaml:"if_match"`
	SinceParam  string            `yaml:"since_param"`
	LimitParam  string            `yaml:"limit_param"`
	CursorParam string            `yaml:"cursor_param"`
	RecordsPath string            `yaml:"records_path"`
	NextCursor  string            `yaml:"next_cursor"`
	Query       map[string]string `yaml:"query"`
	Fields      map[string]string `yaml:"fields"`
	PageSize    int               `yaml:"page_size"`
}

// TwoWayAuthFile is the credentials of an HTTP side, each secret by
// reference ({env: NAME} or {file: PATH}).
type TwoWayAuthFile struct {
	Kind         string   `yaml:"kind"`
	Token        *Secret  `yaml:"token"`
	Header       string   `yaml:"header"`
	APIKey       *Secret  `yaml:"api_key"`
	TokenURL     string   `yaml:"token_url"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret *Secret  `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"`
}

// TwoWayConflicts is the conflict policy as written in a file.
type TwoWayConflicts struct {
	Policy   string            `yaml:"policy"`
	Owners   map[string]string `yaml:"owners"`
	Fallback string            `yaml:"fallback"`
	TieBreak string            `yaml:"tie_break"`
}

// IsTwoWay reports whether the file at path declares a two-way
// integration (kind: two-way). A file that cannot be read or parsed is
// not: the one-way loader reports its problem.
func IsTwoWay(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var head struct {
		Kind string `yaml:"kind"`
	}
	return yaml.Unmarshal(b, &head) == nil && head.Kind == KindTwoWay
}

// LoadTwoWay reads the two-way integration file at path and resolves it:
// every key must be known (a typo is named with its line), secrets are
// read from the environment (env) or files (file, relative to the
// integration file) through lookup and readFile, a connection's base URL
// from conns, and the definition is validated; every problem is reported
// at once, each naming the file. With lookup nil, secrets and connections
// are not read (tether validate without --resolve).
func LoadTwoWay(path string, lookup func(string) (string, bool), readFile func(string) ([]byte, error), conns map[string]httpclient.Connection) (twoway.Definition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return twoway.Definition{}, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	var f TwoWayFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return twoway.Definition{}, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	secret := func(field string, ref *Secret) string {
		switch {
		case ref == nil:
			return ""
		case lookup == nil && (ref.Env != "" || ref.File != ""):
			return "unresolved"
		case ref.Env != "" && ref.File != "":
			bad(field, "give env or file, not both")
		case ref.Env != "":
			v, ok := lookup(ref.Env)
			if !ok || v == "" {
				bad(field, "environment variable %s is not set or empty", ref.Env)
			}
			return v
		case ref.File != "":
			p := ref.File
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(path), p)
			}
			v, err := readFile(p)
			if err != nil {
				bad(field, "secret file %s: %v", p, unwrapPath(err))
			}
			return strings.TrimRight(string(v), "\r\n")
		default:
			bad(field, "a secret is given by reference: {env: NAME} or {file: PATH}")
		}
		return ""
	}
	d := twoway.Definition{Name: f.Name, Match: f.Match,
		Policy: twoway.Policy{Kind: f.Conflicts.Policy, Fallback: f.Conflicts.Fallback, TieBreak: twoway.Side(f.Conflicts.TieBreak), Deletes: f.Deletes}}
	if f.Kind != KindTwoWay {
		bad("kind", "%q: a two-way integration file says kind: %s", f.Kind, KindTwoWay)
	}
	for k, v := range f.Conflicts.Owners {
		if d.Policy.Owners == nil {
			d.Policy.Owners = map[string]twoway.Side{}
		}
		d.Policy.Owners[k] = twoway.Side(v)
	}
	for _, x := range []struct {
		field string
		v     string
		to    *time.Duration
	}{{"every", f.Every, &d.Every}, {"overlap", f.Overlap, &d.Overlap}} {
		if x.v == "" {
			continue
		}
		dur, err := time.ParseDuration(x.v)
		if err != nil {
			bad(x.field, "%q is not a duration (10s, 1m)", x.v)
		}
		*x.to = dur
	}
	for i, s := range []TwoWaySideFile{f.A, f.B} {
		field := []string{"a", "b"}[i]
		spec := twoway.SideSpec{Name: s.Name, Postgres: s.Postgres, Kind: s.Kind, Shared: s.Shared, Casts: s.Casts, Computed: s.Computed}
		if s.Config != nil {
			spec.Config = s.Config
		}
		if h := s.HTTP; h != nil {
			side := twoway.HTTPSide{BaseURL: h.BaseURL, Path: h.Path, Key: h.Key, Version: h.Version, UpdatedAt: h.UpdatedAt, Deleted: h.Deleted,
				IfMatch: h.IfMatch, SinceParam: h.SinceParam, LimitParam: h.LimitParam, CursorParam: h.CursorParam, RecordsPath: h.RecordsPath,
				NextCursor: h.NextCursor, Query: h.Query, Fields: h.Fields, PageSize: h.PageSize}
			if h.Connection != "" && lookup == nil && side.BaseURL == "" {
				side.BaseURL = "https://" + h.Connection + ".connection.invalid" // read with --resolve
			}
			if h.Connection != "" && lookup != nil {
				c, ok := conns[h.Connection]
				switch {
				case !ok:
					bad(field+".http.connection", "%q is not a connection of the worker (connections.%s)", h.Connection, h.Connection)
				case side.BaseURL == "":
					side.BaseURL = c.BaseURL
				}
				if h.Auth == nil {
					side.Auth = c.Auth
				}
			}
			if a := h.Auth; a != nil {
				side.Auth = httpclient.Auth{Kind: a.Kind, Header: a.Header, TokenURL: a.TokenURL, ClientID: a.ClientID, Scopes: a.Scopes,
					Token: secret(field+".http.auth.token", a.Token), APIKey: secret(field+".http.auth.api_key", a.APIKey),
					ClientSecret: secret(field+".http.auth.client_secret", a.ClientSecret)}
			}
			spec.HTTP = &side
		}
		if i == 0 {
			d.A = spec
		} else {
			d.B = spec
		}
	}
	if err := d.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	return d, errors.Join(errs...)
}
