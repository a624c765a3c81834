// Package schemas holds the JSON Schema files that source records are
// validated against, embedded in the binary so a worker needs no files on
// disk. Each file's name (e.g. "contacts.schema.json") is how an
// integration definition refers to it.
//
// It also holds integration.schema.json, the schema of an integration file
// (an integration declared in YAML): it is not a record schema, so FS leaves
// it out and Integration returns it.
package schemas

import (
	"embed"
	"io/fs"
)

// IntegrationFile is the name of the schema of integration files.
const IntegrationFile = "integration.schema.json"

//go:embed *.json
var files embed.FS

// FS returns the embedded record schema files, one "<entity>.schema.json"
// per source entity, at the root of the file system.
func FS() fs.FS { return recordSchemas{files} }

// Integration returns integration.schema.json, the JSON Schema (draft
// 2020-12) of one integration file.
func Integration() []byte {
	b, err := files.ReadFile(IntegrationFile)
	if err != nil {
		panic(err) // embedded at build time: cannot be missing
	}
	return b
}

// recordSchemas is the embedded files without the integration file schema.
type recordSchemas struct{ fs embed.FS }

func (r recordSchemas) Open(name string) (fs.File, error) {
	if name == IntegrationFile {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return r.fs.Open(name)
}

func (r recordSchemas) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := r.fs.ReadDir(name)
	if err != nil || name != "." {
		return entries, err
	}
	out := entries[:0:0]
	for _, e := range entries {
		if e.Name() != IntegrationFile {
			out = append(out, e)
		}
	}
	return out, nil
}

func (r recordSchemas) ReadFile(name string) ([]byte, error) {
	if name == IntegrationFile {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return r.fs.ReadFile(name)
}
