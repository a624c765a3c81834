// Package syncstep is the wire contract of the sync steps: activity names,
// and the inputs and outputs that travel through workflow history. It is
// plain data, so workflow code can import it without pulling in databases or
// HTTP clients; package pipeline implements the steps.
package syncstep
