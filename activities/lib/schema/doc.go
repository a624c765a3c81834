// Package validate checks source records against the JSON Schema files in
// schemas/ before they are transformed and applied.
//
// In: the raw JSON of one record, decoded with Decode (numbers stay
// json.Number, so ids and amounts keep their precision), and the name of the
// integration's schema file. Out: every violation as a FieldError, a JSON
// pointer into the record with the failing keyword and a message, ready to be
// stored beside the quarantined record.
//
// A Registry compiles every schema once when the worker starts; a broken
// schema stops the worker with the file and the problem. Validators are then
// shared by all activities. The draft of each file follows its "$schema"
// (2020-12 when absent); "format" and "content*" keywords are asserted in
// every draft.
package schema
