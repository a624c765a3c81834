package httpsink

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// externalIDField is the name under which a path template reads the
// destination's id of the record.
const externalIDField = "external_id"

// pathTemplate is a parsed Endpoint.Path.
type pathTemplate struct {
	field  string // the YAML field, for errors
	tmpl   *template.Template
	static bool // no actions: the text is the path
	text   string
}

// parsePath parses a path template; the error names field.
func parsePath(field, text string) (*pathTemplate, error) {
	t, err := template.New(field).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", field, err)
	}
	static := true
	if t.Tree != nil && t.Tree.Root != nil {
		for _, n := range t.Tree.Root.Nodes {
			static = static && n.Type() == parse.NodeText
		}
	}
	return &pathTemplate{field: field, tmpl: t, static: static, text: text}, nil
}

// render executes the template over row, every value path-escaped, plus
// external_id when externalID is set. The error names the field.
func (p *pathTemplate) render(row map[string]any, externalID string) (string, error) {
	if p.static {
		return p.text, nil
	}
	data := make(map[string]any, len(row)+1)
	for k, v := range row {
		data[k] = pathValue(v)
	}
	if externalID != "" {
		data[externalIDField] = escapeSegment(externalID)
	}
	var b strings.Builder
	if err := p.tmpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s: %v", p.field, err)
	}
	return b.String(), nil
}

// pathValue renders v as an escaped path segment; objects and arrays are
// escaped member by member, so nested fields ({{.company.id}}) work too.
func pathValue(v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return escapeSegment(x)
	case json.Number:
		return escapeSegment(x.String())
	case float64:
		return escapeSegment(strconv.FormatFloat(x, 'f', -1, 64))
	case float32:
		return escapeSegment(strconv.FormatFloat(float64(x), 'f', -1, 32))
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = pathValue(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = pathValue(e)
		}
		return s
	default: // integers, booleans, times
		return escapeSegment(fmt.Sprint(x))
	}
}

// escapeSegment escapes every byte of s but RFC 3986's unreserved ones,
// so that a value stands as one path segment or one query value: a "/",
// "?", "&" or ".." in a value cannot reach another resource.
func escapeSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	if unreserved(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUnreserved(c):
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isUnreserved(s[i]) {
			return false
		}
	}
	return true
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// resolve places a rendered path (already escaped, with an optional
// query) below the base URL.
func resolve(base *url.URL, rendered string) (*url.URL, error) {
	p, query, _ := strings.Cut(rendered, "?")
	unescaped, err := url.PathUnescape(p)
	if err != nil {
		return nil, fmt.Errorf("path %q: %v", rendered, err)
	}
	u := *base
	u.Path = httpclient.JoinPath(base.Path, unescaped)
	u.RawPath = httpclient.JoinPath(base.EscapedPath(), p)
	u.Fragment = ""
	switch {
	case query == "":
	case u.RawQuery == "":
		u.RawQuery = query
	default:
		u.RawQuery += "&" + query
	}
	return &u, nil
}
