package declarative

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/tetherflow/tether/activities/connector/httpsink"
	"github.com/tetherflow/tether/activities/integration"
	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
)

// Problem is one thing wrong with an integration file.
type Problem struct {
	// File is the integration file's path.
	File string
	// Pointer is the JSON pointer (RFC 6901) of the offending value in the
	// document, e.g. "/source/http/auth/token"; "" is the whole document.
	// For a missing property it points at the property that should be
	// there.
	Pointer string
	// Line is the line of the offending key or value in the file, 0 when
	// unknown.
	Line int
	// Reason says what is wrong and, where it helps, what to write instead.
	// It never contains a secret.
	Reason string
}

// Error formats the problem as "<file>: <pointer>: <reason> (line N)".
func (p *Problem) Error() string {
	ptr := p.Pointer
	if ptr == "" {
		ptr = "(document)"
	}
	s := p.File + ": " + ptr + ": " + p.Reason
	if p.Line > 0 {
		s += " (line " + strconv.Itoa(p.Line) + ")"
	}
	return s
}

// Problems returns every *Problem in err, a tree of joined and wrapped
// errors, in order.
func Problems(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
		case *Problem:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// Load reads one integration file (YAML) and checks it against
// integration.schema.json. It reports every problem at once, each a
// *Problem naming the file, the JSON pointer and the reason, joined; then
// it decodes the file into a Spec. A schema given by path must exist and be
// JSON: its SHA-256 becomes part of the spec. Secrets are not read: see
// Resolve.
func Load(path string) (Spec, error) {
	doc, root, err := read(path)
	if err != nil {
		return Spec{}, err
	}
	if errs := checkDocument(path, doc, root); len(errs) > 0 {
		return Spec{}, errors.Join(errs...)
	}
	spec, err := decode(path, doc)
	if err != nil {
		return Spec{}, err
	}
	// Every problem at once, in the file's order.
	errs := unjoin(spec.checkDefinition(root))
	if err := spec.checkSchemaFile(root); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, unjoin(spec.checkPaths(root))...)
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int { return lineOfProblem(a) - lineOfProblem(b) })
		return Spec{}, errors.Join(errs...)
	}
	return spec, nil
}

// shippedSchemas are the schemas in schemas/, compiled once.
var shippedSchemas = sync.OnceValues(func() (*schema.Registry, error) { return schema.NewRegistry(schemas.FS()) })

// validator compiles the spec's schema; nil when it does not compile (the
// worker reports why).
func (s *Spec) validator() *schema.Validator {
	if !schemaByPath(s.Schema) {
		reg, err := shippedSchemas()
		if err != nil {
			return nil
		}
		v, _ := reg.Get(s.Schema)
		return v
	}
	b, err := os.ReadFile(s.schemaPath())
	if err != nil {
		return nil
	}
	reg := schema.NewEmptyRegistry()
	if reg.Add(s.Schema, b) != nil {
		return nil
	}
	v, _ := reg.Get(s.Schema)
	return v
}

// checkPaths checks the source paths the mapping reads (from, join)
// against the schema, as the worker does (integration.CheckPaths):
// a path no valid record holds is a problem, one the schema does not
// describe a warning (Spec.Warnings).
func (s *Spec) checkPaths(root *yaml.Node) error {
	v := s.validator()
	if v == nil {
		return nil
	}
	var paths []integration.SourcePath
	for j, f := range s.Mapping {
		if f.From != "" {
			paths = append(paths, integration.SourcePath{Path: f.From, Field: fmt.Sprintf("mapping[%d].from", j)})
		}
		for k, p := range f.Join {
			paths = append(paths, integration.SourcePath{Path: p, Field: fmt.Sprintf("mapping[%d].join[%d]", j, k)})
		}
	}
	problems, warnings := integration.CheckPaths(v, paths)
	located := func(err error) *Problem {
		p, ok := definitionProblem(s.File, s.Name, err).(*Problem)
		if !ok {
			p = &Problem{File: s.File, Reason: err.Error()}
		}
		p.Line = lineOf(root, p.Pointer)
		return p
	}
	for _, w := range warnings {
		s.Warnings = append(s.Warnings, located(w))
	}
	var errs []error
	for _, e := range problems {
		errs = append(errs, located(e))
	}
	return errors.Join(errs...)
}

// checkDefinition checks what integration.Definition.Validate checks
// without secrets, before any is read, so each problem gets its line: the
// schedules and the reconciliation policy (cron expressions, time zones,
// one schedule per kind, a mark column of the destination table), and
// that every mapped value is stored by a destination (ValidateColumns).
func (s Spec) checkDefinition(root *yaml.Node) error {
	d := integration.Definition{Name: s.Name, Schedules: s.Schedules, Mapping: fileMapping(s.Mapping)}
	if s.Reconcile != nil {
		d.Reconcile = *s.Reconcile
	}
	// The destinations' kinds, tables, ids and mappings are all the checks
	// read.
	step := func(x Destination) integration.Destination {
		out := integration.Destination{Name: x.Name, Postgres: x.Postgres, Mode: x.Mode, Connector: x.Connector,
			IDs: x.IDs, Mapping: fileMapping(x.Mapping)}
		if x.HTTP != nil {
			out.HTTP = &httpsink.Config{}
		}
		return out
	}
	if s.Destination != nil {
		d.Destination = step(*s.Destination)
	}
	for _, x := range s.Destinations {
		d.Destinations = append(d.Destinations, step(x))
	}
	d = d.Normalize()
	var errs []error
	for _, err := range slices.Concat(unjoin(d.ValidateSchedules()), unjoin(d.ValidateTables()), unjoin(d.ValidateColumns())) {
		p := definitionProblem(s.File, s.Name, err)
		if pr, ok := p.(*Problem); ok {
			pr.Line = lineOf(root, pr.Pointer)
		}
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// lineOfProblem is the line of a *Problem, 0 for any other error.
func lineOfProblem(err error) int {
	if p, ok := err.(*Problem); ok {
		return p.Line
	}
	return 0
}

// read reads the file with viper and returns the document as written, as
// JSON-compatible values, with its YAML node tree for line numbers.
func read(path string) (map[string]any, *yaml.Node, error) {
	problem := func(format string, args ...any) error {
		return &Problem{File: path, Reason: fmt.Sprintf(format, args...)}
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
	default:
		return nil, nil, problem("not an integration file: want a .yaml or .yml file")
	}
	// viper lower-cases every key, which would silently change query
	// parameter and header names, and reads timestamps as times: a codec
	// of our own keeps the document as written.
	doc := &document{}
	codecs := viper.NewCodecRegistry()
	for _, ext := range []string{"yaml", "yml"} {
		if err := codecs.RegisterCodec(ext, doc); err != nil {
			return nil, nil, problem("%v", err)
		}
	}
	v := viper.NewWithOptions(viper.WithCodecRegistry(codecs))
	v.SetConfigFile(path)
	v.SetConfigType("yaml") // also for FILE.YAML
	if err := v.ReadInConfig(); err != nil {
		if doc.err != nil {
			line, msg := yamlError(doc.err)
			return nil, nil, &Problem{File: path, Line: line, Reason: "not valid YAML: " + msg}
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, nil, problem("cannot read: %v", pe.Err)
		}
		return nil, nil, problem("cannot read: %v", err)
	}
	if doc.doc == nil {
		doc.doc = map[string]any{}
	}
	return doc.doc, doc.root, nil
}

// document is a viper codec that keeps what it decodes, as written.
type document struct {
	root *yaml.Node
	doc  map[string]any
	err  error
}

// Decode parses b; v, viper's copy, is filled too.
func (d *document) Decode(b []byte, v map[string]any) error {
	d.root, d.doc, d.err = parseYAML(b)
	if d.err != nil {
		return d.err
	}
	if d.root.Kind == 0 { // empty file
		return nil
	}
	cp, err := parseCopy(d.root)
	if err != nil {
		return err
	}
	for k, x := range cp {
		v[k] = x
	}
	return nil
}

// Encode is never used: integration files are only read.
func (d *document) Encode(map[string]any) ([]byte, error) {
	return nil, errors.New("integration files are not written")
}

// parseYAML decodes one YAML document into JSON-compatible values: mapping
// keys as strings, timestamps as the text written, integers as int.
func parseYAML(b []byte) (*yaml.Node, map[string]any, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, nil, err
	}
	if root.Kind == 0 { // empty file
		return &root, map[string]any{}, nil
	}
	top := &root
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	if top.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("line %d: the document is not a mapping of keys to values", top.Line)
	}
	retagTimestamps(&root)
	doc, err := parseCopy(&root)
	if err != nil {
		return nil, nil, err
	}
	return &root, doc, nil
}

// parseCopy decodes the node tree into a new map.
func parseCopy(root *yaml.Node) (map[string]any, error) {
	var doc map[string]any
	if err := root.Decode(&doc); err != nil {
		return nil, err
	}
	v, err := jsonCompatible(doc)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// retagTimestamps makes YAML timestamps plain strings: a cursor or a default
// is kept exactly as written.
func retagTimestamps(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!timestamp" {
		n.Tag = "!!str"
	}
	for _, c := range n.Content {
		retagTimestamps(c)
	}
}

// jsonCompatible turns maps with non-string keys into maps with string
// keys, and refuses values JSON cannot hold.
func jsonCompatible(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := jsonCompatible(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonCompatible(e)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = c
		}
		return m, nil
	case []any:
		for i, e := range x {
			c, err := jsonCompatible(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	case float64:
		if _, err := json.Marshal(x); err != nil {
			return nil, fmt.Errorf("%v is not a number JSON can hold", x)
		}
	}
	return v, nil
}

// yamlError splits a YAML error into its line and the rest of its message.
func yamlError(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:\n"); ok {
		msg = strings.TrimSpace(rest)
	}
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, after, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, msg
	}
	return n, after
}

// decode decodes a document that satisfies the schema into a Spec. The
// schema and Spec agree (a test keeps them so): an error here means they
// drifted apart.
func decode(path string, doc map[string]any) (Spec, error) {
	var spec Spec
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:  mapstructure.StringToTimeDurationHookFunc(),
		ErrorUnused: true,
		Result:      &spec,
		TagName:     "mapstructure",
	})
	if err != nil {
		return Spec{}, err
	}
	if err := dec.Decode(doc); err != nil {
		return Spec{}, &Problem{File: path, Reason: "decode: " + err.Error()}
	}
	spec.File = path
	return spec, nil
}

// schemaByPath reports whether a spec's schema is a file given by path
// rather than a name in schemas/.
func schemaByPath(schema string) bool {
	return strings.ContainsAny(schema, `/\`)
}

// schemaPath is the file a schema given by path names.
func (s Spec) schemaPath() string {
	if filepath.IsAbs(s.Schema) {
		return s.Schema
	}
	return filepath.Join(filepath.Dir(s.File), filepath.FromSlash(s.Schema))
}

// checkSchemaFile checks the spec's schema exists: a name in schemas/, or
// a readable JSON file, whose SHA-256 it records.
func (s *Spec) checkSchemaFile(root *yaml.Node) error {
	problem := func(format string, args ...any) error {
		return &Problem{File: s.File, Pointer: "/schema", Line: lineOf(root, "/schema"), Reason: fmt.Sprintf(format, args...)}
	}
	if !schemaByPath(s.Schema) {
		names, err := fs.Glob(schemas.FS(), "*.json")
		if err != nil {
			return problem("%v", err)
		}
		if !slices.Contains(names, s.Schema) {
			return problem("no schema %q in schemas/ (known: %s); a schema file beside this one is written ./%s", s.Schema, strings.Join(names, ", "), s.Schema)
		}
		return nil
	}
	b, err := os.ReadFile(s.schemaPath())
	if err != nil {
		return problem("schema file %s: %v", s.schemaPath(), unwrapPath(err))
	}
	if _, err := schema.Decode(b); err != nil {
		return problem("schema file %s is not JSON: %v", s.schemaPath(), err)
	}
	sum := sha256.Sum256(b)
	s.SchemaSHA256 = hex.EncodeToString(sum[:])
	return nil
}

// unwrapPath drops the path an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Files returns the (one-way) integration files of dir: every *.yaml and
// *.yml directly in it, sorted, but the two-way ones (TwoWayFiles).
// Hidden files (editors' and Kubernetes' "..data" links) are left out.
func Files(dir string) ([]string, error) {
	all, err := yamlFiles(dir)
	return slices.DeleteFunc(all, IsTwoWay), err
}

// TwoWayFiles returns the two-way integration files of dir (kind:
// two-way), sorted.
func TwoWayFiles(dir string) ([]string, error) {
	all, err := yamlFiles(dir)
	return slices.DeleteFunc(all, func(p string) bool { return !IsTwoWay(p) }), err
}

// yamlFiles returns every *.yaml and *.yml directly in dir, sorted, but
// hidden ones.
func yamlFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("integrations directory %s: %w", dir, unwrapPath(err))
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml":
		default:
			continue
		}
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err != nil || info.IsDir() {
			continue
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// LoadDir loads every integration file of dir (see Files). Every problem
// of every file is reported, joined, and so is a name defined by two files,
// naming both; no spec is returned unless all files load.
func LoadDir(dir string) ([]Spec, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	var specs []Spec
	var errs []error
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, s)
	}
	errs = append(errs, CheckNames(specs))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return specs, nil
}

// CheckNames reports every name more than one spec defines, naming the
// files.
func CheckNames(specs []Spec) error {
	first := map[string]string{}
	var errs []error
	for _, s := range specs {
		if f, dup := first[s.Name]; dup {
			errs = append(errs, &Problem{File: s.File, Pointer: "/name",
				Reason: fmt.Sprintf("integration %q is also defined in %s: names must be unique", s.Name, f)})
			continue
		}
		first[s.Name] = s.File
	}
	return errors.Join(errs...)
}

// lineOf returns the line of the value at pointer in the YAML tree: the
// line of its key in a mapping, or of the nearest ancestor that exists; 0
// for the document itself and a key missing from it.
func lineOf(root *yaml.Node, pointer string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	line := 0
	if pointer == "" {
		return line
	}
	for _, seg := range strings.Split(pointer[1:], "/") {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					line, next = n.Content[i].Line, n.Content[i+1]
				}
			}
			if next == nil {
				return line
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			return line
		}
	}
	return line
}
