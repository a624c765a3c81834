package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// What a source asks for when a body is JSON but not a valid event
// (Source.OnInvalid).
const (
	// OnInvalidQuarantine acknowledges the event with 202 and hands it to
	// the Accepter with Event.Invalid set, so it is kept in quarantine with
	// every reason and nothing is lost. The default.
	OnInvalidQuarantine = "quarantine"
	// OnInvalidReject answers 422 with the schema errors (400 when the
	// entity key or version cannot be read) and records nothing; for
	// sources that show refused deliveries to their users or fix and resend
	// them.
	OnInvalidReject = "reject"
)

// Defaults applied by New to every Source key left at its zero value.
const (
	DefaultSignatureHeader = "X-Tether-Signature"
	DefaultSignatureScheme = "v1"
	DefaultTolerance       = 5 * time.Minute
	DefaultMaxBody         = 1 << 20 // 1 MiB
	DefaultDeliveryHeader  = "X-Tether-Delivery"
	DefaultRatePerSecond   = 100
	// The default burst is twice the rate (at least 1).
)

// MaxSecrets is how many secrets a source may have at once: the current
// one and, while the sender rotates, the previous one.
const MaxSecrets = 2

// Source is the configuration of one sender of webhooks, served at
// POST /webhooks/{Name}.
type Source struct {
	// Name is the source's path segment: a letter or digit, then letters,
	// digits, '.', '_' or '-'.
	Name string `mapstructure:"name" yaml:"name" json:"name"`
	// Secrets are the resolved HMAC-SHA256 secrets (the caller resolves
	// environment references), one or two: a request signed with either is
	// authentic. To rotate, add the new secret, switch the sender, then
	// drop the old one. Never logged, printed or serialised to JSON.
	Secrets []string `mapstructure:"secrets" yaml:"secrets" json:"-"`
	// SignatureHeader is the header carrying "t=<unix>,<scheme>=<hex>"
	// (default X-Tether-Signature).
	SignatureHeader string `mapstructure:"signature_header" yaml:"signature_header" json:"signature_header"`
	// SignatureScheme is the label of the signature entries in that header
	// (default v1).
	SignatureScheme string `mapstructure:"signature_scheme" yaml:"signature_scheme" json:"signature_scheme"`
	// Tolerance is how far the signed timestamp may be from the receiver's
	// clock, in the past or the future (default 5m).
	Tolerance time.Duration `mapstructure:"tolerance" yaml:"tolerance" json:"tolerance"`
	// MaxBody bounds a request body in bytes (default 1 MiB); a larger one
	// is answered 413.
	MaxBody int64 `mapstructure:"max_body" yaml:"max_body" json:"max_body"`
	// Schema is the JSON Schema file in schemas/ the body must match
	// ("contacts.schema.json"); empty checks only that the body is JSON.
	Schema string `mapstructure:"schema" yaml:"schema" json:"schema"`
	// OnInvalid is OnInvalidQuarantine (default) or OnInvalidReject.
	OnInvalid string `mapstructure:"on_invalid" yaml:"on_invalid" json:"on_invalid"`
	// DeliveryHeader carries the sender's id of the delivery, the same on
	// every redelivery (default X-Tether-Delivery). Required on every
	// request.
	DeliveryHeader string `mapstructure:"delivery_header" yaml:"delivery_header" json:"delivery_header"`
	// KeyPath is the dot path of the entity key in the body ("data.id").
	// Required.
	KeyPath string `mapstructure:"key_path" yaml:"key_path" json:"key_path"`
	// VersionPath is the dot path of the entity's version in the body
	// ("data.updated_at"); when set, a body without it is invalid.
	VersionPath string `mapstructure:"version_path" yaml:"version_path" json:"version_path"`
	// Integration is the integration the source's events are applied to
	// (required where events are applied, e.g. a worker serving webhooks).
	Integration string `mapstructure:"integration" yaml:"integration" json:"integration"`
	// RecordPath is the dot path of the entity's record in the body
	// ("data"), handed on as Event.Record; empty means the whole body.
	RecordPath string `mapstructure:"record_path" yaml:"record_path" json:"record_path"`
	// TypePath is the dot path of the event's type in the body ("type");
	// an event whose type is one of DeleteTypes deletes the entity.
	TypePath    string   `mapstructure:"type_path" yaml:"type_path" json:"type_path"`
	DeleteTypes []string `mapstructure:"delete_types" yaml:"delete_types" json:"delete_types"`
	// RateLimit bounds the requests of this source.
	RateLimit RateLimit `mapstructure:"rate_limit" yaml:"rate_limit" json:"rate_limit"`
}

// RateLimit is a token bucket per source: Burst requests at once,
// refilled at PerSecond.
type RateLimit struct {
	// PerSecond is the sustained rate (default 100).
	PerSecond float64 `mapstructure:"per_second" yaml:"per_second" json:"per_second"`
	// Burst is the bucket's size, announced as X-RateLimit-Limit (default
	// twice PerSecond, at least 1).
	Burst int `mapstructure:"burst" yaml:"burst" json:"burst"`
}

// Validate reports every problem in s, each naming its field.
func (s Source) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	d := s.withDefaults()

	switch {
	case s.Name == "":
		add("name", "required")
	case !validName(s.Name):
		add("name", "%q must be a letter or digit followed by letters, digits, '.', '_' or '-'", s.Name)
	}
	switch n := len(s.Secrets); {
	case n == 0:
		add("secrets", "at least one secret is required")
	case n > MaxSecrets:
		add("secrets", "%d secrets given, at most %d (the current one and the previous one while rotating)", n, MaxSecrets)
	}
	for i, sec := range s.Secrets {
		// Never echo a secret, not even in an error.
		switch {
		case sec == "":
			add(fmt.Sprintf("secrets[%d]", i), "empty (an unset environment variable?)")
		case strings.TrimSpace(sec) != sec:
			add(fmt.Sprintf("secrets[%d]", i), "has leading or trailing whitespace (a copied newline?)")
		}
	}
	if !httpclient.ValidHeaderName(d.SignatureHeader) {
		add("signature_header", "%q is not a valid header name", s.SignatureHeader)
	}
	if !validName(d.SignatureScheme) {
		add("signature_scheme", "%q must be a letter or digit followed by letters, digits, '.', '_' or '-'", s.SignatureScheme)
	} else if d.SignatureScheme == "t" {
		add("signature_scheme", `"t" is the timestamp's label`)
	}
	if s.Tolerance < 0 {
		add("tolerance", "must not be negative, got %s", s.Tolerance)
	}
	if s.MaxBody < 0 {
		add("max_body", "must not be negative, got %d", s.MaxBody)
	}
	switch d.OnInvalid {
	case OnInvalidQuarantine, OnInvalidReject:
	default:
		add("on_invalid", "unknown choice %q (want quarantine or reject)", s.OnInvalid)
	}
	if !httpclient.ValidHeaderName(d.DeliveryHeader) {
		add("delivery_header", "%q is not a valid header name", s.DeliveryHeader)
	} else if strings.EqualFold(d.DeliveryHeader, d.SignatureHeader) {
		add("delivery_header", "%q is also the signature header", s.DeliveryHeader)
	}
	if s.KeyPath == "" {
		add("key_path", `required: the dot path of the entity key in the body, e.g. "data.id"`)
	} else if err := httpclient.CheckDotPath(s.KeyPath); err != nil {
		add("key_path", "%v", err)
	}
	if err := httpclient.CheckDotPath(s.VersionPath); err != nil {
		add("version_path", "%v", err)
	}
	if err := httpclient.CheckDotPath(s.RecordPath); err != nil {
		add("record_path", "%v", err)
	}
	if err := httpclient.CheckDotPath(s.TypePath); err != nil {
		add("type_path", "%v", err)
	}
	if len(s.DeleteTypes) > 0 && s.TypePath == "" {
		add("delete_types", "needs type_path: the dot path of the event's type in the body, e.g. \"type\"")
	}
	if s.RateLimit.PerSecond < 0 {
		add("rate_limit.per_second", "must not be negative, got %g", s.RateLimit.PerSecond)
	}
	if s.RateLimit.Burst < 0 {
		add("rate_limit.burst", "must not be negative, got %d", s.RateLimit.Burst)
	}
	return errors.Join(errs...)
}

// withDefaults returns s with every unset key at its default.
func (s Source) withDefaults() Source {
	if s.SignatureHeader == "" {
		s.SignatureHeader = DefaultSignatureHeader
	}
	if s.SignatureScheme == "" {
		s.SignatureScheme = DefaultSignatureScheme
	}
	if s.Tolerance == 0 {
		s.Tolerance = DefaultTolerance
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.OnInvalid == "" {
		s.OnInvalid = OnInvalidQuarantine
	}
	if s.DeliveryHeader == "" {
		s.DeliveryHeader = DefaultDeliveryHeader
	}
	if s.RateLimit.PerSecond == 0 {
		s.RateLimit.PerSecond = DefaultRatePerSecond
	}
	if s.RateLimit.Burst == 0 {
		s.RateLimit.Burst = max(1, int(min(2*s.RateLimit.PerSecond, 1<<30)))
	}
	return s
}

// String describes s without its secrets, so printing a Source with %v
// cannot leak them.
func (s Source) String() string {
	return fmt.Sprintf("webhook source %q (%d secrets, schema %q, on_invalid %q, key_path %q)", s.Name, len(s.Secrets), s.Schema, s.OnInvalid, s.KeyPath)
}

// LogValue logs s without its secrets.
func (s Source) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", s.Name),
		slog.Int("secrets", len(s.Secrets)),
		slog.String("schema", s.Schema),
		slog.String("on_invalid", s.OnInvalid),
		slog.String("key_path", s.KeyPath),
	)
}

// nameRE is a letter or digit followed by letters, digits, '.', '_' and
// '-': safe in a URL path segment, a log line and a workflow id.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func validName(s string) bool { return nameRE.MatchString(s) }
