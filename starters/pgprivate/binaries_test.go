package pgprivate

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeBin makes dir with executable files named programs.
func fakeBin(t *testing.T, dir string, programs ...string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range programs {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSearch_Find(t *testing.T) {
	root := t.TempDir()
	all := []string{"initdb", "pg_ctl", "postgres"}
	// Debian-style versioned directories: 16 lacks postgres (a client
	// install), so 15 is the newest complete one; 9.6 sorts below 15.
	fakeBin(t, filepath.Join(root, "lib/postgresql/9.6/bin"), all...)
	v15 := fakeBin(t, filepath.Join(root, "lib/postgresql/15/bin"), all...)
	fakeBin(t, filepath.Join(root, "lib/postgresql/16/bin"), "initdb", "pg_ctl", "psql")
	// A PATH directory of links into a real bin directory.
	linked := fakeBin(t, filepath.Join(root, "opt/pg/bin"), all...)
	links := filepath.Join(root, "links")
	if err := os.MkdirAll(links, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(linked, "initdb"), filepath.Join(links, "initdb")); err != nil {
		t.Fatal(err)
	}
	// A pg_config that names a bin directory off PATH.
	hidden := fakeBin(t, filepath.Join(root, "hidden/bin"), all...)
	cfgDir := filepath.Join(root, "cfg")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "pg_config"), []byte("#!/bin/sh\necho "+hidden+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	clientOnly := fakeBin(t, filepath.Join(root, "client/bin"), "psql", "pg_dump")

	tests := []struct {
		name string
		give Search
		want string
	}{
		{"newest complete versioned directory", Search{Globs: []string{filepath.Join(root, "lib/postgresql/*/bin")}, Path: linked}, v15},
		{"PATH through a link", Search{Path: clientOnly + string(os.PathListSeparator) + links}, linked},
		{"pg_config --bindir", Search{Path: clientOnly + string(os.PathListSeparator) + cfgDir}, hidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give.Find()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Find() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSearch_FindNothingInstalled(t *testing.T) {
	empty := t.TempDir()
	client := fakeBin(t, filepath.Join(empty, "client"), "psql")
	for _, s := range []Search{{}, {Globs: []string{filepath.Join(empty, "*/bin")}, Path: empty + string(os.PathListSeparator) + client}} {
		_, err := s.Find()
		if !errors.Is(err, ErrNoBinaries) {
			t.Fatalf("Find() error = %v, want ErrNoBinaries", err)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("the message is not one line: %q", msg)
		}
		for _, want := range []string{"initdb", "apt-get install postgresql", "brew install postgresql", "DATABASE_URL"} {
			if !strings.Contains(msg, want) {
				t.Errorf("the message %q does not say %q", msg, want)
			}
		}
	}
}

func TestPathVersion(t *testing.T) {
	tests := []struct {
		give string
		want []int
	}{
		{"/usr/lib/postgresql/15/bin", []int{15}},
		{"/usr/pgsql-9.6/bin", []int{9, 6}},
		{"/opt/homebrew/opt/postgresql@16/bin", []int{16}},
		{"/usr/bin", nil},
	}
	for _, tt := range tests {
		got := pathVersion(tt.give)
		if !slices.Equal(got, tt.want) {
			t.Errorf("pathVersion(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}
