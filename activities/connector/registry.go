package connector

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// SourceSpec is what a source is opened from.
type SourceSpec struct {
	// Integration names the integration the source reads for (logs,
	// metrics, page memos).
	Integration string
	// Config is the connector's own configuration, as the integration
	// declares it (e.g. *httpsource.Config); the factory checks its type.
	Config any
}

// SinkSpec is what a sink is opened from.
type SinkSpec struct {
	// Integration names the integration; Destination the destination
	// within it (logs, metrics, identity maps).
	Integration, Destination string
	// Config is the connector's own configuration (e.g. httpsink.Destination).
	Config any
}

// SourceFactory opens a source. A bad configuration is a permanent
// failure.TypeConfig error naming what is wrong.
type SourceFactory func(SourceSpec) (Source, error)

// SinkFactory opens a sink, likewise.
type SinkFactory func(SinkSpec) (Sink, error)

// Registry maps connector kinds to the factories that open them (sources,
// sinks, and two-way sides). A worker
// builds one with every connector it knows (package builtin lists the
// shipped ones) and compiles integrations through it: adding a connector
// is one package, one Register line and one call of the acceptance suite
// (connectortest).
type Registry struct {
	sources map[string]SourceFactory
	sinks   map[string]SinkFactory
	sides   map[string]SideFactory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{sources: map[string]SourceFactory{}, sinks: map[string]SinkFactory{}, sides: map[string]SideFactory{}}
}

// RegisterSource makes kind open sources with f. It panics on an empty or
// duplicate kind: registries are built once, at start, by code.
func (r *Registry) RegisterSource(kind string, f SourceFactory) *Registry {
	register(r.sources, "source", kind, f)
	return r
}

// RegisterSink makes kind open sinks with f; it panics like RegisterSource.
func (r *Registry) RegisterSink(kind string, f SinkFactory) *Registry {
	register(r.sinks, "sink", kind, f)
	return r
}

func register[F any](m map[string]F, what, kind string, f F) {
	if kind == "" {
		panic("connector: register a " + what + " with an empty kind")
	}
	if _, dup := m[kind]; dup {
		panic(fmt.Sprintf("connector: %s kind %q registered twice", what, kind))
	}
	m[kind] = f
}

// OpenSource opens a source of the given kind.
func (r *Registry) OpenSource(kind string, spec SourceSpec) (Source, error) {
	f, ok := r.sources[kind]
	if !ok {
		return nil, unknown("source", kind, r.SourceKinds())
	}
	return f(spec)
}

// OpenSink opens a sink of the given kind.
func (r *Registry) OpenSink(kind string, spec SinkSpec) (Sink, error) {
	f, ok := r.sinks[kind]
	if !ok {
		return nil, unknown("sink", kind, r.SinkKinds())
	}
	return f(spec)
}

// SourceKinds lists the registered source kinds, sorted.
func (r *Registry) SourceKinds() []string { return slices.Sorted(maps.Keys(r.sources)) }

// SinkKinds lists the registered sink kinds, sorted.
func (r *Registry) SinkKinds() []string { return slices.Sorted(maps.Keys(r.sinks)) }

func unknown(what, kind string, known []string) error {
	return fmt.Errorf("no %s connector of kind %q is registered (this worker knows: %s)", what, kind, strings.Join(known, ", "))
}

// WrongConfig is the error a factory returns when given another
// connector's configuration: a bad configuration, so a permanent
// failure.TypeConfig error like the others.
func WrongConfig(kind string, want, got any) error {
	return failure.Permanent(failure.TypeConfig, fmt.Errorf("%s connector: configuration is a %T, want a %T", kind, got, want))
}

// Configured returns a connector's configuration of type C from a spec's
// Config: a C, a *C, or the settings as an integration file gives them (a
// map, decoded by C's mapstructure tags: an unknown or mistyped setting
// is a permanent failure.TypeConfig error naming it); anything else is
// WrongConfig naming what (kind and role).
func Configured[C any](what string, cfg any) (C, error) {
	switch c := cfg.(type) {
	case C:
		return c, nil
	case *C:
		if c != nil {
			return *c, nil
		}
	case map[string]any:
		var out C
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{ErrorUnused: true, Result: &out, TagName: "mapstructure",
			DecodeHook: mapstructure.StringToTimeDurationHookFunc()})
		if err == nil {
			err = dec.Decode(c)
		}
		if err != nil {
			return out, failure.Permanent(failure.TypeConfig, fmt.Errorf("%s connector: %w", what, err))
		}
		return out, nil
	}
	var want C
	return want, WrongConfig(what, &want, cfg)
}

// SourceFactoryOf is the factory of sources open builds from a
// configuration of type C (what names it in errors: "http source").
func SourceFactoryOf[C any, S Source](what string, open func(integration string, cfg C) (S, error)) SourceFactory {
	return func(spec SourceSpec) (Source, error) {
		cfg, err := Configured[C](what, spec.Config)
		if err != nil {
			return nil, err
		}
		s, err := open(spec.Integration, cfg)
		if err != nil {
			return nil, err // never a nil pointer inside a non-nil Source
		}
		return s, nil
	}
}

// SinkFactoryOf is SourceFactoryOf for sinks; open also gets the
// destination's name.
func SinkFactoryOf[C any, S Sink](what string, open func(integration, destination string, cfg C) (S, error)) SinkFactory {
	return func(spec SinkSpec) (Sink, error) {
		cfg, err := Configured[C](what, spec.Config)
		if err != nil {
			return nil, err
		}
		s, err := open(spec.Integration, spec.Destination, cfg)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}
