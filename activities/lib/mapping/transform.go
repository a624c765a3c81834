package mapping

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Record is one record: a source record as decoded from JSON, or an output
// row keyed by column.
type Record = map[string]any

// Func transforms one record. It must not keep the record, and may return
// the record it was given, changed.
type Func func(Record) (Record, error)

// Field describes one output column of a Mapping.
type Field struct {
	// To is the output column.
	To string
	// From is the dot path of the source value, e.g. "email" or
	// "address.city"; a numeric segment indexes an array ("tags.0"). It is
	// empty when the value comes from Compute or Default alone.
	From string
	// Cast converts the value: "" (keep it as decoded), "string", "int"
	// (int64), "float" (float64), "bool", "timestamp" (an RFC 3339 string
	// to a time.Time in UTC), "date" (a full-date "2006-01-02", or an RFC
	// 3339 timestamp's UTC date, to a time.Time at midnight UTC) or "json"
	// (keep the JSON value, object or array included, for a JSON or array
	// column).
	Cast string
	// Default is used when the source value is absent or null. It is
	// normalised and cast like a source value, once, when the mapping is
	// compiled.
	Default any
	// Normalize lists string normalisers applied in order, before the cast:
	// "trim", "lower", "upper", "email" (trim, then lower-case) and
	// "collapse_spaces" (trim, and runs of white space to one space).
	Normalize []string
	// Required makes a value that is absent or null after defaults an error.
	Required bool
	// Compute produces the value from the whole source record, for what a
	// path cannot say (Go integrations only). Its result is then defaulted,
	// normalised and cast like a source value.
	Compute func(Record) (any, error) `json:"-" mapstructure:"-" yaml:"-"`
}

// Mapping maps source records to output rows, one Field per output column.
type Mapping struct {
	Fields []Field
}

// FieldError is a value a record cannot be mapped with.
type FieldError struct {
	// Field is the output column.
	Field string
	// Pointer is the JSON pointer of the source value ("/address/city"),
	// "" when the value was computed from the whole record.
	Pointer string
	// Message says what is wrong with the value.
	Message string

	err error // the Compute error, if any
}

// Error formats the error as `field "score": cast "abc" to int: not a number`.
func (e *FieldError) Error() string {
	return fmt.Sprintf("field %q: %s", e.Field, e.Message)
}

// Unwrap returns the error of a Compute function, if that is the cause.
func (e *FieldError) Unwrap() error { return e.err }

// Chain returns a Func that runs fns in order, each on the previous one's
// output; nil funcs are skipped. The first error stops the chain and is
// returned as it is.
func Chain(fns ...Func) Func {
	var steps []Func
	for _, fn := range fns {
		if fn != nil {
			steps = append(steps, fn)
		}
	}
	switch len(steps) {
	case 0:
		return func(r Record) (Record, error) { return r, nil }
	case 1:
		return steps[0]
	}
	return func(r Record) (Record, error) {
		var err error
		for _, fn := range steps {
			if r, err = fn(r); err != nil {
				return nil, err
			}
		}
		return r, nil
	}
}

// Validate reports every problem of the mapping, joined: each names the
// field's index and output column.
func (m Mapping) Validate() error {
	_, err := m.compile()
	return err
}

// Compile validates the mapping and prepares it to run: paths split, casts
// and normalisers resolved, defaults converted. The returned Func returns a
// new record with exactly the mapped columns (null where a value is absent)
// and leaves its input unchanged. It is safe for concurrent use.
func (m Mapping) Compile() (Func, error) {
	fields, err := m.compile()
	if err != nil {
		return nil, err
	}
	return func(src Record) (Record, error) {
		out := make(Record, len(fields))
		var errs []error
		for i := range fields {
			f := &fields[i]
			v, err := f.value(src)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[f.to] = v
		}
		switch len(errs) {
		case 0:
			return out, nil
		case 1:
			return nil, errs[0]
		}
		return nil, errors.Join(errs...)
	}, nil
}

// compiledField is a Field prepared to run.
type compiledField struct {
	to        string
	path      []segment
	pointer   string
	compute   func(Record) (any, error)
	normalize []normalizer
	cast      caster
	def       any // normalised and cast
	required  bool
}

// segment is one step of a source path.
type segment struct {
	key   string
	index int // the key as an array index, -1 when it is not one
}

// value produces the field's output value from the source record.
func (f *compiledField) value(src Record) (any, error) {
	var v any
	if f.compute != nil {
		c, err := f.compute(src)
		if err != nil {
			return nil, &FieldError{Field: f.to, Message: "compute: " + err.Error(), err: err}
		}
		v = c
	} else if f.path != nil {
		var err error
		if v, err = f.lookup(src); err != nil {
			return nil, err
		}
	}
	if v == nil {
		if f.def == nil && f.required {
			msg := "required value is missing or null"
			if f.pointer != "" {
				msg = "required value " + f.pointer + " is missing or null"
			}
			return nil, &FieldError{Field: f.to, Pointer: f.pointer, Message: msg}
		}
		return f.def, nil
	}
	v, msg := convert(v, f.normalize, f.cast)
	if msg != "" {
		return nil, &FieldError{Field: f.to, Pointer: f.pointer, Message: msg}
	}
	return v, nil
}

// lookup follows the field's path; absent and null give nil.
func (f *compiledField) lookup(src Record) (any, error) {
	var cur any = src
	for i, seg := range f.path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[seg.key]
		case []any:
			if seg.index < 0 || seg.index >= len(c) {
				return nil, nil
			}
			cur = c[seg.index]
		case nil:
			return nil, nil
		default:
			return nil, &FieldError{Field: f.to, Pointer: f.pointer,
				Message: fmt.Sprintf("source %s is %s, not an object", pointerOf(f.path[:i]), kindOf(cur))}
		}
	}
	return cur, nil
}

// convert normalises then casts v, returning a message when it cannot.
func convert(v any, norms []normalizer, cast caster) (any, string) {
	if len(norms) > 0 {
		orig, ok := v.(string)
		if !ok {
			return nil, fmt.Sprintf("normalize %s: %s is %s, not a string", norms[0].name, describe(v), kindOf(v))
		}
		s := orig
		for _, n := range norms {
			s = n.fn(s)
		}
		if s != orig { // boxing a new string allocates; an unchanged one is reused
			v = s
		}
	}
	if cast.fn == nil {
		return v, ""
	}
	out, problem := cast.fn(v)
	if problem != "" {
		return nil, fmt.Sprintf("cast %s to %s: %s", describe(v), cast.name, problem)
	}
	return out, ""
}

// compile checks every field and prepares the valid ones.
func (m Mapping) compile() ([]compiledField, error) {
	var errs []error
	if len(m.Fields) == 0 {
		errs = append(errs, errors.New("mapping has no fields"))
	}
	seen := make(map[string]int, len(m.Fields))
	out := make([]compiledField, 0, len(m.Fields))
	for i, f := range m.Fields {
		problem := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("field %d (%q): %s", i, f.To, fmt.Sprintf(format, args...)))
		}
		cf := compiledField{to: f.To, compute: f.Compute, required: f.Required}
		if f.To == "" {
			problem("empty To: every field needs an output column")
		} else if j, dup := seen[f.To]; dup {
			problem("duplicate To: field %d also maps to %q", j, f.To)
		} else {
			seen[f.To] = i
		}
		switch {
		case f.From == "" && f.Compute == nil && f.Default == nil:
			problem("no source: set From, Compute or Default")
		case f.From != "" && f.Compute != nil:
			problem("both From and Compute: a value has one source")
		case f.From != "":
			path, err := splitPath(f.From)
			if err != nil {
				problem("From %q: %v", f.From, err)
			}
			cf.path, cf.pointer = path, pointerOf(path)
		}
		c, castOK := casterFor(f.Cast)
		if !castOK {
			problem("unknown cast %q (want one of %s)", f.Cast, castNames)
		}
		cf.cast = c
		for _, name := range f.Normalize {
			n, ok := normalizerFor(name)
			if !ok {
				problem("unknown normaliser %q (want one of %s)", name, normalizerNames)
				continue
			}
			cf.normalize = append(cf.normalize, n)
		}
		if f.Default != nil && castOK {
			d, msg := convert(f.Default, cf.normalize, c)
			if msg != "" {
				problem("Default: %s", msg)
			}
			cf.def = d
		}
		out = append(out, cf)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// splitPath splits a dot path into segments.
func splitPath(from string) ([]segment, error) {
	parts := strings.Split(from, ".")
	path := make([]segment, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, errors.New("empty path segment")
		}
		path[i] = segment{key: p, index: -1}
		if n, err := strconv.Atoi(p); err == nil && n >= 0 {
			path[i].index = n
		}
	}
	return path, nil
}

// pointerOf returns the JSON pointer (RFC 6901) of a path.
func pointerOf(path []segment) string {
	var b strings.Builder
	for _, s := range path {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(s.key, "~", "~0"), "/", "~1"))
	}
	return b.String()
}
