// Package transform turns validated source records into destination rows.
//
// In: a source record as decoded from JSON (map[string]any, numbers as
// json.Number). Out: a new record holding only the destination's columns,
// with values cast to the types the sink writes (int64, float64, bool,
// time.Time, string, or the JSON value itself).
//
// A declarative integration describes its columns as a Mapping: for each
// output column, where the value comes from (a dot path into the source, or
// a Go function of the whole record), a default, normalisers and a cast.
// Mapping.Validate reports every mistake in a mapping at once, so a worker
// with a bad definition stops before it polls; Mapping.Compile does that work
// once, so running the mapping on each of a run's records costs only the
// output map and the converted values. A Go integration writes a Func and may
// Chain it after a mapping.
//
// A value a record cannot be mapped with (a score of "abc" cast to int, a
// required field that is missing) is a *FieldError naming the output
// field, the source field's JSON pointer and the problem: the record is
// quarantined with it, and the run goes on.
package mapping
