package connector

import (
	"fmt"
	"maps"
	"slices"
	"strings"

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

// Registry maps connector kinds to the factories that open them. A worker
// builds one with every connector it knows (package builtin lists the
// shipped ones) and compiles integrations through it: adding a connector
// is one package, one Register line and one call of the acceptance suite
// (connectortest).
type Registry struct {
	sources map[string]SourceFactory
	sinks   map[string]SinkFactory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{sources: map[string]SourceFactory{}, sinks: map[string]SinkFactory{}}
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

// SourceOf returns a source a constructor built, or its error with a nil
// Source (never a nil pointer inside a non-nil interface).
func SourceOf[S Source](s S, err error) (Source, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SinkOf is SourceOf for sinks.
func SinkOf[S Sink](s S, err error) (Sink, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}
