// Package schemas holds the JSON Schema files that source records are
// validated against, embedded in the binary so a worker needs no files on
// disk. Each file's name (e.g. "contacts.schema.json") is how an
// integration definition refers to it.
package schemas

import (
	"embed"
	"io/fs"
)

//go:embed *.json
var files embed.FS

// FS returns the embedded schema files, one "<entity>.schema.json" per
// source entity, at the root of the file system.
func FS() fs.FS { return files }
