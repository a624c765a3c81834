// Package httpside is a REST resource as one side of a two-way
// integration (connector.Side): a change feed of records changed since a
// time (with deletions), PATCH under If-Match, POST with an
// Idempotency-Key, DELETE under If-Match.
package httpside

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/connector"
	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Config is a REST resource as one side of a two-way integration: a
// collection with a change feed (records changed since a time, with
// deletions, a page at a time behind a cursor) and records that are
// created with POST, updated with PATCH under If-Match, and deleted with
// DELETE under If-Match.
type Config struct {
	// BaseURL and Path name the collection (https://billing.example.com,
	// /v1/customers); a record is Path/{key}.
	BaseURL string `mapstructure:"base_url" yaml:"base_url" json:"base_url"`
	Path    string `mapstructure:"path" yaml:"path" json:"path"`
	// Auth, RateLimit and Retry are as for any HTTP connection.
	Auth      httpclient.Auth      `mapstructure:"auth" yaml:"auth" json:"auth"`
	RateLimit httpclient.RateLimit `mapstructure:"rate_limit" yaml:"rate_limit" json:"rate_limit"`
	// Key, Version, UpdatedAt and Deleted name the record's members: its
	// id (default "id"), its version (default "version"; If-Match sends
	// IfMatch with it), its change time (default "updated_at", RFC 3339)
	// and the flag of a deleted record in the feed (default "deleted").
	Key       string `mapstructure:"key" yaml:"key" json:"key,omitempty"`
	Version   string `mapstructure:"version" yaml:"version" json:"version,omitempty"`
	UpdatedAt string `mapstructure:"updated_at" yaml:"updated_at" json:"updated_at,omitempty"`
	Deleted   string `mapstructure:"deleted" yaml:"deleted" json:"deleted,omitempty"`
	// IfMatch formats the If-Match header from the version (default
	// `"v%s"`, as the sandbox's ETags).
	IfMatch string `mapstructure:"if_match" yaml:"if_match" json:"if_match,omitempty"`
	// The feed: GET Path?{SinceParam}=T&{LimitParam}=N[&{CursorParam}=C]
	// plus Query, answering the records under RecordsPath and the next
	// page's cursor under NextCursor (defaults: updated_since, limit,
	// cursor, data, next_cursor; include_deleted=true).
	SinceParam  string            `mapstructure:"since_param" yaml:"since_param" json:"since_param,omitempty"`
	LimitParam  string            `mapstructure:"limit_param" yaml:"limit_param" json:"limit_param,omitempty"`
	CursorParam string            `mapstructure:"cursor_param" yaml:"cursor_param" json:"cursor_param,omitempty"`
	RecordsPath string            `mapstructure:"records_path" yaml:"records_path" json:"records_path,omitempty"`
	NextCursor  string            `mapstructure:"next_cursor" yaml:"next_cursor" json:"next_cursor,omitempty"`
	Query       map[string]string `mapstructure:"query" yaml:"query" json:"query,omitempty"`
	// Fields maps each shared field to the record's member.
	Fields map[string]string `mapstructure:"fields" yaml:"fields" json:"fields"`
	// PageSize is the feed's limit per page (default 100).
	PageSize int `mapstructure:"page_size" yaml:"page_size" json:"page_size,omitempty"`
}

// DefaultPageSize is an HTTP side's feed limit per page.
const DefaultPageSize = 100

func (h Config) withDefaults() Config {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&h.Key, "id")
	def(&h.Version, "version")
	def(&h.UpdatedAt, "updated_at")
	def(&h.Deleted, "deleted")
	def(&h.IfMatch, `"v%s"`)
	def(&h.SinceParam, "updated_since")
	def(&h.LimitParam, "limit")
	def(&h.CursorParam, "cursor")
	def(&h.RecordsPath, "data")
	def(&h.NextCursor, "next_cursor")
	if h.PageSize == 0 {
		h.PageSize = DefaultPageSize
	}
	if h.Query == nil {
		h.Query = map[string]string{"include_deleted": "true"}
	}
	return h
}

// Validate says what is wrong with the side's settings.
func (h Config) Validate() error {
	var errs []error
	if err := httpclient.CheckBaseURL(h.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("base_url: %w", err))
	}
	if !strings.HasPrefix(h.Path, "/") {
		errs = append(errs, fmt.Errorf("path: %q must start with /", h.Path))
	}
	errs = append(errs, h.Auth.Problems("auth")...)
	if h.PageSize < 0 {
		errs = append(errs, fmt.Errorf("page_size: %d must not be negative", h.PageSize))
	}
	if len(h.Fields) == 0 {
		errs = append(errs, errors.New("fields: map at least one shared field to a member"))
	}
	d := h.withDefaults()
	for _, f := range slices.Sorted(maps.Keys(h.Fields)) {
		switch m := h.Fields[f]; m {
		case "":
			errs = append(errs, fmt.Errorf("fields.%s: is required", f))
		case d.Key, d.Version, d.UpdatedAt, d.Deleted:
			errs = append(errs, fmt.Errorf("fields.%s: %q is the record's key, version, updated_at or deleted member, which the API keeps", f, m))
		}
	}
	if strings.Count(d.IfMatch, "%s") != 1 {
		errs = append(errs, fmt.Errorf("if_match: %q must hold %%s once, where the version goes", d.IfMatch))
	}
	return errors.Join(errs...)
}

type httpEndpoint struct {
	side   Config
	client *httpclient.Client
	fields []string
	page   int
}

// Factory opens HTTP sides (configuration: a Config), sending their
// requests through transport (nil: the default).
func Factory(transport http.RoundTripper) connector.SideFactory {
	return connector.SideFactoryOf("http side", func(spec connector.SideSpec, cfg Config) (connector.Side, error) {
		return Open(spec.Integration+"/"+spec.Side, cfg, transport)
	})
}

// Open opens side (name names its client in logs and metrics), sending
// its requests through transport (nil: the default); a bad configuration
// is a permanent failure.TypeConfig error naming its setting.
func Open(name string, side Config, transport http.RoundTripper) (connector.Side, error) {
	if err := side.Validate(); err != nil {
		return nil, failure.Permanent(failure.TypeConfig, err)
	}
	side = side.withDefaults()
	c := httpclient.New(httpclient.Options{
		Name: name, Auth: side.Auth.WithDefaults(), RateLimit: side.RateLimit.WithDefaults(), Retry: httpclient.Retry{}.WithDefaults(),
		NoRedirects: true, Transport: transport, UserAgent: "tether-twoway",
		Types: httpclient.ErrorTypes{HTTP: failure.TypeSinkHTTP, Auth: failure.TypeSinkAuth, NotFound: failure.TypeSinkHTTP,
			Throttled: failure.TypeSinkThrottled, Unavailable: failure.TypeSinkUnavailable},
	})
	return &httpEndpoint{side: side, client: c, fields: slices.Sorted(maps.Keys(side.Fields)), page: side.PageSize}, nil
}

func (e *httpEndpoint) url(p string, query url.Values) (*url.URL, error) {
	u, err := url.Parse(e.side.BaseURL)
	if err != nil {
		return nil, err
	}
	u.Path = httpclient.JoinPath(u.Path, p)
	u.RawQuery = query.Encode()
	return u, nil
}

// call sends one request and decodes a JSON answer into out (when not
// nil); it returns the status.
func (e *httpEndpoint) call(ctx context.Context, method, p string, query url.Values, body any, header http.Header, out any) (int, error) {
	u, err := e.url(p, query)
	if err != nil {
		return 0, failure.Permanent(failure.TypeConfig, err)
	}
	var b []byte
	if body != nil {
		if b, err = json.Marshal(body); err != nil {
			return 0, err
		}
		if header == nil {
			header = http.Header{}
		}
		header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(ctx, method, u, b, header)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, failure.Transient(failure.TypeSinkUnavailable, fmt.Errorf("%s %s: read the answer: %w", method, httpclient.RedactURL(u.String()), err))
	}
	switch {
	case resp.StatusCode == http.StatusPreconditionFailed, resp.StatusCode == http.StatusNotFound && method != http.MethodGet:
		return resp.StatusCode, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests:
		return resp.StatusCode, failure.Transient(failure.TypeSinkUnavailable, fmt.Errorf("%s %s: status %d: %s", method, httpclient.RedactURL(u.String()), resp.StatusCode, clip(data)))
	case resp.StatusCode >= 400:
		return resp.StatusCode, failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("%s %s: status %d: %s", method, httpclient.RedactURL(u.String()), resp.StatusCode, clip(data)))
	}
	if out != nil && len(data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(out); err != nil {
			return resp.StatusCode, failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("%s %s: the answer is not JSON: %w", method, httpclient.RedactURL(u.String()), err))
		}
	}
	return resp.StatusCode, nil
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func (e *httpEndpoint) Changes(ctx context.Context, after, afterKey string, fn func([]connector.Change) error) error {
	s := e.side
	since := after
	if since == "" {
		since = time.Unix(0, 0).UTC().Format(time.RFC3339Nano)
	}
	token := ""
	for {
		query := url.Values{s.SinceParam: {since}, s.LimitParam: {strconv.Itoa(e.page)}}
		for k, v := range s.Query {
			query.Set(k, v)
		}
		if token != "" {
			query.Set(s.CursorParam, token)
		}
		var body map[string]any
		if _, err := e.call(ctx, http.MethodGet, s.Path, query, nil, nil, &body); err != nil {
			return err
		}
		items, _ := body[s.RecordsPath].([]any)
		page := make([]connector.Change, 0, len(items))
		for _, it := range items {
			obj, ok := it.(map[string]any)
			if !ok {
				return failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("GET %s: a record is not an object", s.Path))
			}
			c, err := e.change(obj)
			if err != nil {
				return err
			}
			page = append(page, c)
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
		}
		next, _ := body[s.NextCursor].(string)
		if next == "" {
			return nil
		}
		if next == token {
			// Asking again would answer the same page for ever.
			return failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("GET %s: %s %q repeats the cursor the page was asked with", s.Path, s.NextCursor, next))
		}
		token = next
	}
}

// change reads one record of the API.
func (e *httpEndpoint) change(obj map[string]any) (connector.Change, error) {
	s := e.side
	var c connector.Change
	switch obj[s.Key].(type) {
	case map[string]any, []any, bool:
		return c, failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("%s: a record's %q is %v, not a string or a number", s.Path, s.Key, obj[s.Key]))
	}
	c.Key = scalar(obj[s.Key])
	if c.Key == "" {
		return c, failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("%s: a record has no %q", s.Path, s.Key))
	}
	c.Version = scalar(obj[s.Version])
	at, err := time.Parse(time.RFC3339Nano, scalar(obj[s.UpdatedAt]))
	if err != nil {
		return c, failure.Permanent(failure.TypeSinkHTTP, fmt.Errorf("%s: record %s: %q is not an RFC 3339 time", s.Path, c.Key, s.UpdatedAt))
	}
	c.At, c.Cursor = at, at.UTC().Format(time.RFC3339Nano)
	if d, _ := obj[s.Deleted].(bool); d {
		c.Deleted = true
		return c, nil
	}
	c.Record = connector.Row{}
	for _, f := range e.fields {
		if v, ok := obj[s.Fields[f]]; ok && v != nil {
			c.Record[f] = v
		}
	}
	return c, nil
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// body is rec as the API's members; with nulls for the shared fields rec
// lacks when patching (a JSON merge patch removes them).
func (e *httpEndpoint) body(rec connector.Row, patch bool) map[string]any {
	out := map[string]any{}
	for _, f := range e.fields {
		if v, ok := rec[f]; ok {
			out[e.side.Fields[f]] = v
		} else if patch {
			out[e.side.Fields[f]] = nil
		}
	}
	return out
}

func (e *httpEndpoint) Put(ctx context.Context, key string, rec connector.Row, expect, idem string) (connector.Written, error) {
	s := e.side
	var obj map[string]any
	var status int
	var err error
	if key == "" {
		status, err = e.call(ctx, http.MethodPost, s.Path, nil, e.body(rec, false), http.Header{"Idempotency-Key": {idem}}, &obj)
	} else {
		h := http.Header{}
		if expect != "" {
			h.Set("If-Match", fmt.Sprintf(s.IfMatch, expect))
		}
		status, err = e.call(ctx, http.MethodPatch, httpclient.JoinPath(s.Path, url.PathEscape(key)), nil, e.body(rec, true), h, &obj)
	}
	if err != nil {
		return connector.Written{}, err
	}
	if status == http.StatusPreconditionFailed || status == http.StatusNotFound {
		return connector.Written{}, connector.ErrChanged
	}
	c, err := e.change(obj)
	if err != nil {
		return connector.Written{}, err
	}
	return connector.Written{Key: c.Key, Version: c.Version, At: c.At}, nil
}

func (e *httpEndpoint) Delete(ctx context.Context, key, expect string) error {
	h := http.Header{}
	if expect != "" {
		h.Set("If-Match", fmt.Sprintf(e.side.IfMatch, expect))
	}
	status, err := e.call(ctx, http.MethodDelete, httpclient.JoinPath(e.side.Path, url.PathEscape(key)), nil, nil, h, nil)
	if err != nil {
		return err
	}
	if status == http.StatusPreconditionFailed {
		return connector.ErrChanged
	}
	return nil // 404: gone already
}
