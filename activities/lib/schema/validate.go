package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// baseURL is where schema files are placed for the compiler; relative
// "$ref"s between files resolve against it. It is also the base of the
// files' "$id"s, so a reference resolves the same with or without one.
const baseURL = "https://tetherflow.dev/schemas/"

// FieldError is one violation of a schema by a record.
type FieldError struct {
	// Pointer is the JSON pointer (RFC 6901) of the offending value in the
	// record: "/email", "/address/country", "/tags/2", "" for the record
	// itself. For a missing property it points at the property that should
	// be there.
	Pointer string `json:"pointer"`
	// Keyword is the schema keyword that failed: "type", "required",
	// "format", "pattern", "dependentRequired", ...
	Keyword string `json:"keyword"`
	// Message says what is wrong, for the person reading the quarantine.
	Message string `json:"message"`
}

// String formats the error as "pointer: keyword: message".
func (e FieldError) String() string {
	p := e.Pointer
	if p == "" {
		p = "(record)"
	}
	return p + ": " + e.Keyword + ": " + e.Message
}

// Validator checks records against one compiled schema. It is safe for
// concurrent use.
type Validator struct {
	name   string
	schema *jsonschema.Schema

	// Records found valid, by the hash of their bytes (ValidateRaw).
	knownOnce sync.Once
	known     *knownSet
	knownHits atomic.Int64
}

// Name returns the schema file the validator was compiled from.
func (v *Validator) Name() string { return v.name }

// Registry holds the compiled schemas of a schema directory, by file name,
// and the schemas added to it later with Add. It is safe for concurrent use.
type Registry struct {
	mu         sync.RWMutex
	validators map[string]*Validator
	added      map[string][]byte // documents given to Add, by name
}

// NewEmptyRegistry is a registry of no file, for schemas given one by one
// (Add).
func NewEmptyRegistry() *Registry {
	return &Registry{validators: map[string]*Validator{}}
}

// NewRegistry compiles every *.json file in fsys (at any depth; the name
// of a file is its slash-separated path in fsys) once. "$ref"s between the
// files resolve; references outside fsys are refused, so validation never
// touches the network. A file that is not JSON or not a valid schema gives
// an error naming the file and the problem.
func NewRegistry(fsys fs.FS) (*Registry, error) {
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && path.Ext(p) == ".json" {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list schema files: %w", err)
	}
	sort.Strings(names)

	c := newCompiler()
	var errs []error
	for _, name := range names {
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema %s: %w", name, err))
			continue
		}
		if err := checkJSON(raw); err != nil {
			errs = append(errs, fmt.Errorf("schema %s: not valid JSON: %w", name, err))
			continue
		}
		if err := c.AddResource(baseURL+name, bytes.NewReader(raw)); err != nil {
			errs = append(errs, fmt.Errorf("schema %s: %w", name, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r := &Registry{validators: make(map[string]*Validator, len(names))}
	for _, name := range names {
		s, err := c.Compile(baseURL + name)
		if err != nil {
			errs = append(errs, &compileError{file: name, problem: schemaProblem(err), err: err})
			continue
		}
		r.validators[name] = &Validator{name: name, schema: s}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// newCompiler returns a compiler that asserts formats and content and
// never loads anything but the resources added to it.
func newCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.AssertFormat = true
	c.AssertContent = true
	c.LoadURL = func(s string) (io.ReadCloser, error) {
		return nil, fmt.Errorf("cannot load %s: only the schema files themselves can be referenced (remote references and unknown $schema drafts are not loaded)", strings.TrimPrefix(s, baseURL))
	}
	return c
}

// Add compiles doc, a JSON Schema that does not come from the schema
// directory (e.g. one an integration file names by path), and registers it
// under name. The document must be self-contained: its "$ref"s may only
// point inside it. Adding a name again with the same document does nothing;
// with another document, or a name the directory already has, is an error:
// a name always means one schema, so a changed file is added under a new
// name.
func (r *Registry) Add(name string, doc []byte) error {
	if name == "" {
		return errors.New("add schema: empty name")
	}
	r.mu.RLock()
	err := r.conflict(name, doc)
	r.mu.RUnlock()
	if err != nil || r.has(name) {
		return err
	}
	if err := checkJSON(doc); err != nil {
		return fmt.Errorf("schema %s: not valid JSON: %w", name, err)
	}
	c := newCompiler()
	if err := c.AddResource(baseURL+name, bytes.NewReader(doc)); err != nil {
		return fmt.Errorf("schema %s: %w", name, err)
	}
	s, err := c.Compile(baseURL + name)
	if err != nil {
		return &compileError{file: name, problem: schemaProblem(err), err: err}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.conflict(name, doc); err != nil {
		return err
	}
	if r.added == nil {
		r.added = map[string][]byte{}
	}
	r.added[name] = bytes.Clone(doc)
	r.validators[name] = &Validator{name: name, schema: s}
	return nil
}

// conflict reports a name registered with another document than doc. The
// caller holds r.mu.
func (r *Registry) conflict(name string, doc []byte) error {
	if _, ok := r.validators[name]; !ok {
		return nil
	}
	if prev, ok := r.added[name]; ok && bytes.Equal(prev, doc) {
		return nil
	}
	return fmt.Errorf("schema %s is already registered with another document", name)
}

// has reports whether name is registered.
func (r *Registry) has(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.validators[name]
	return ok
}

// checkJSON reports where a schema file stops being JSON, with its line.
func checkJSON(raw []byte) error {
	_, err := Decode(raw)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(raw[:min(int(se.Offset), len(raw))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	return err
}

// compileError is a schema file that does not compile.
type compileError struct {
	file    string
	problem string
	err     error
}

func (e *compileError) Error() string { return "schema " + e.file + ": " + e.problem }

func (e *compileError) Unwrap() error { return e.err }

// schemaProblem describes a compile error: for a schema that breaks the
// draft's meta-schema, every violation with its location in the file.
func schemaProblem(err error) string {
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		var leaves []string
		for _, l := range leafErrors(ve, nil) {
			p := l.InstanceLocation
			if p == "" {
				p = "(root)"
			}
			leaves = append(leaves, fmt.Sprintf("at %s: %s", p, l.Message))
		}
		slices.Sort(leaves)
		leaves = slices.Compact(leaves)
		return "not a valid schema for its draft: " + strings.Join(leaves, "; ")
	}
	var se *jsonschema.SchemaError
	if errors.As(err, &se) && se.Err != nil {
		err = se.Err
	}
	return strings.TrimPrefix(err.Error(), "jsonschema: ")
}

// Get returns the validator compiled from the named file, e.g.
// "contacts.schema.json".
func (r *Registry) Get(name string) (*Validator, error) {
	r.mu.RLock()
	v, ok := r.validators[name]
	r.mu.RUnlock()
	if ok {
		return v, nil
	}
	return nil, fmt.Errorf("no schema %q; known schemas: %s", name, strings.Join(r.Names(), ", "))
}

// Names returns the file names of the compiled schemas, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.validators))
	for n := range r.validators {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks rec, a value decoded by Decode, and returns every
// violation, sorted by pointer (then keyword and message), or nil when rec
// is valid. Errors that only group others (allOf, anyOf, then, $ref, ...)
// are replaced by the violations they group.
func (v *Validator) Validate(rec any) []FieldError {
	err := v.schema.Validate(rec)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		// A value that is not JSON (a Go type Decode never produces) or a
		// schema that loops.
		return []FieldError{{Keyword: "type", Message: strings.TrimPrefix(err.Error(), "jsonschema: ")}}
	}
	var out []FieldError
	for _, l := range leafErrors(ve, nil) {
		out = appendFieldErrors(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Pointer != b.Pointer {
			return a.Pointer < b.Pointer
		}
		if a.Keyword != b.Keyword {
			return a.Keyword < b.Keyword
		}
		return a.Message < b.Message
	})
	return slices.Compact(out)
}

// leafErrors flattens the library's tree of errors into the errors that
// name a failed keyword themselves.
func leafErrors(ve *jsonschema.ValidationError, out []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	// minContains carries the non-matching items as causes, but it is
	// minContains that failed.
	if len(ve.Causes) == 0 || keywordOf(ve.KeywordLocation) == "minContains" {
		return append(out, ve)
	}
	for _, c := range ve.Causes {
		out = leafErrors(c, out)
	}
	return out
}

// appendFieldErrors converts one leaf error; "missing property" errors
// become one FieldError per missing property, pointing at it.
func appendFieldErrors(out []FieldError, l *jsonschema.ValidationError) []FieldError {
	kw := keywordOf(l.KeywordLocation)
	if l.Message == "not allowed" {
		kw = "false" // the value's schema is false
	}
	at := pointer(l.InstanceLocation)
	switch kw {
	case "required":
		// "missing properties: 'a', 'b'"
		names := QuotedNames(l.Message)
		for _, name := range names {
			out = append(out, FieldError{
				Pointer: at + "/" + escape(name),
				Keyword: kw,
				Message: fmt.Sprintf("required property %q is missing", name),
			})
		}
		if len(names) > 0 {
			return out
		}
	case "dependentRequired", "dependencies":
		// "property 'a' is required, if 'b' property exists"
		if names := QuotedNames(l.Message); len(names) == 2 {
			return append(out, FieldError{
				Pointer: at + "/" + escape(names[0]),
				Keyword: kw,
				Message: fmt.Sprintf("property %q is required when %q is present", names[0], names[1]),
			})
		}
	case "additionalProperties":
		// "additionalProperties 'a', 'b' not allowed"
		names := QuotedNames(l.Message)
		for _, name := range names {
			out = append(out, FieldError{
				Pointer: at + "/" + escape(name),
				Keyword: kw,
				Message: fmt.Sprintf("property %q is not allowed", name),
			})
		}
		if len(names) > 0 {
			return out
		}
	}
	// The error as the library says it, at the value it is about: also
	// when its message names properties in a way that cannot be read back
	// (the library's quoting loses a name's trailing backslash), so that
	// no error is ever dropped.
	return append(out, FieldError{Pointer: at, Keyword: kw, Message: l.Message})
}

// closesName reports whether rest, the text after a quote in one of the
// library's messages, follows a quoted name: the end, another name, or
// the message's end ("not allowed", "is required, if ...").
func closesName(rest string) bool {
	for _, next := range []string{"", ", '", " not allowed", " is required", " property exists"} {
		if rest == next || next != "" && strings.HasPrefix(rest, next) {
			return true
		}
	}
	return false
}

// pointer is the library's instance location as a plain RFC 6901 pointer:
// the library also percent-encodes each token ("/first%20name").
func pointer(loc string) string {
	if !strings.Contains(loc, "%") {
		return loc
	}
	parts := strings.Split(loc, "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	return strings.Join(parts, "/")
}

// keywordOf returns the keyword at the end of a keyword location such as
// "/properties/email/format" or "/dependentRequired/opt_in_at/0".
func keywordOf(loc string) string {
	segs := strings.Split(loc, "/")
	last := segs[len(segs)-1]
	if _, err := strconv.Atoi(last); err == nil && len(segs) >= 3 {
		switch k := segs[len(segs)-3]; k {
		case "dependentRequired", "dependencies":
			return k
		}
	}
	return last
}

// QuotedNames returns the single-quoted names in a jsonschema library
// message, in order. The library quotes like Go's %q, with single quotes.
// Packages that turn the library's messages into their own use it too.
func QuotedNames(msg string) []string {
	var names []string
	for i := 0; i < len(msg); i++ {
		if msg[i] != '\'' {
			continue
		}
		j := i + 1
		for j < len(msg) && msg[j] != '\'' {
			if msg[j] == '\\' {
				// The library's quoting turns a name's trailing backslash
				// and the closing quote into \' : a \' that ends the message
				// or is followed by the next name or the message's end is
				// that, not an escaped quote.
				if j+1 < len(msg) && msg[j+1] == '\'' && closesName(msg[j+2:]) {
					break
				}
				j++
			}
			j++
		}
		if j < len(msg) && msg[j] == '\\' { // a trailing backslash, kept
			head := strings.ReplaceAll(msg[i+1:j], `\'`, `'`)
			if s, err := strconv.Unquote(`"` + strings.ReplaceAll(head, `"`, `\"`) + `"`); err == nil {
				head = s
			}
			names = append(names, head+`\`)
			i = j + 1
			continue
		}
		if j >= len(msg) {
			break
		}
		body := strings.ReplaceAll(msg[i+1:j], `\'`, `'`)
		body = strings.ReplaceAll(body, `"`, `\"`)
		if s, err := strconv.Unquote(`"` + body + `"`); err == nil {
			names = append(names, s)
		} else {
			names = append(names, msg[i+1:j])
		}
		i = j
	}
	return names
}

// escape escapes a property name for a JSON pointer (RFC 6901).
func escape(name string) string {
	if !strings.ContainsAny(name, "~/") {
		return name
	}
	return strings.ReplaceAll(strings.ReplaceAll(name, "~", "~0"), "/", "~1")
}

// Decode decodes one JSON value the way Validate expects it: numbers as
// json.Number, so large integers and decimals keep their exact value.
// Anything after the value other than whitespace is an error.
func Decode(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty input: no JSON value")
		}
		return nil, err
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("trailing data after the JSON value at offset %d", end)
	}
	return v, nil
}
