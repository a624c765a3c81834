// Package tooltest finds the programs some tests drive (promtool): a test
// fails without one in CI, where make test installs it, and is skipped
// elsewhere, saying how to install it.
package tooltest

import (
	"os"
	"os/exec"
	"testing"
)

// Promtool returns Prometheus's promtool (Debian's prometheus package).
func Promtool(t testing.TB) string {
	t.Helper()
	return find(t, "promtool", "/usr/bin/promtool",
		"promtool not found (PATH, /usr/bin/promtool): install Debian's prometheus package: apt-get install prometheus (or make promtool)")
}

func find(t testing.TB, name, fallback, missing string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if fi, err := os.Stat(fallback); err == nil && fi.Mode()&0o111 != 0 {
		return fallback
	}
	if os.Getenv("CI") != "" {
		t.Fatal(missing)
	}
	t.Skip(missing)
	return ""
}
