package pgprivate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrNoBinaries is returned when no directory holds PostgreSQL's server
// programs. Its text is the one line a user sees: what to install, or how
// to do without.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, pg_ctl) found: " +
	"install them (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; " +
	"macOS: brew install postgresql@16) or set DATABASE_URL to a server you can use")

// programs are what a private cluster runs; a bin directory counts only
// when it has all three (a client-only install has pg_config and psql).
var programs = []string{"initdb", "pg_ctl", "postgres"}

// Search says where Find looks for PostgreSQL's server programs, in order.
type Search struct {
	// Globs match the bin directories of versioned installations, which
	// are not on PATH (/usr/lib/postgresql/*/bin); the newest version wins.
	Globs []string
	// Path is a PATH-style list of directories.
	Path string
}

// DefaultSearch looks where the distributions install PostgreSQL (Debian
// and Ubuntu, the PGDG packages of RHEL and Fedora, Homebrew), then in
// $PATH, then in the directory `pg_config --bindir` names.
func DefaultSearch() Search {
	return Search{
		Globs: []string{
			"/usr/lib/postgresql/*/bin",
			"/usr/pgsql-*/bin",
			"/opt/homebrew/opt/postgresql@*/bin",
			"/usr/local/opt/postgresql@*/bin",
		},
		Path: os.Getenv("PATH"),
	}
}

// Find returns the directory holding initdb, pg_ctl and postgres, or
// ErrNoBinaries.
func (s Search) Find() (string, error) {
	var versioned []string
	for _, g := range s.Globs {
		m, _ := filepath.Glob(g)
		versioned = append(versioned, m...)
	}
	slices.SortStableFunc(versioned, func(a, b string) int { return slices.Compare(pathVersion(b), pathVersion(a)) })
	for _, d := range versioned {
		if complete(d) {
			return d, nil
		}
	}
	dirs := filepath.SplitList(s.Path)
	for _, d := range dirs {
		// A PATH entry is often a directory of symbolic links
		// (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb):
		// initdb finds postgres beside its real self.
		if target, err := filepath.EvalSymlinks(filepath.Join(d, "initdb")); err == nil && complete(filepath.Dir(target)) {
			return filepath.Dir(target), nil
		}
	}
	for _, d := range dirs {
		pgConfig := filepath.Join(d, "pg_config")
		if !executable(pgConfig) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		cancel()
		if bin := strings.TrimSpace(string(out)); err == nil && complete(bin) {
			return bin, nil
		}
	}
	return "", ErrNoBinaries
}

// complete reports whether dir holds every program a cluster runs.
func complete(dir string) bool {
	for _, p := range programs {
		if !executable(filepath.Join(dir, p)) {
			return false
		}
	}
	return true
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

var versionPattern = regexp.MustCompile(`\d+(?:\.\d+)*`)

// pathVersion is the last version number in a path
// (/usr/lib/postgresql/15/bin: [15]; /usr/pgsql-9.6/bin: [9 6]).
func pathVersion(p string) []int {
	m := versionPattern.FindAllString(p, -1)
	if len(m) == 0 {
		return nil
	}
	var v []int
	for _, f := range strings.Split(m[len(m)-1], ".") {
		n, _ := strconv.Atoi(f)
		v = append(v, n)
	}
	return v
}

var serverVersion = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// majorVersion asks the postgres program of bin for its major version.
func majorVersion(ctx context.Context, bin string) (int, error) {
	// --version is answered before postgres refuses to run as root.
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", filepath.Join(bin, "postgres"), err)
	}
	m := serverVersion.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s --version: unexpected answer %q", filepath.Join(bin, "postgres"), strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(string(m[1]))
}
