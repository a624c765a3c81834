// Package devstack runs tether's development stack on one machine: the
// Temporal dev server (with its Web UI), the sandbox CRM API, and worker
// processes. The starter's `up` command and the integration tests use it.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TemporalCLIModule is the pinned Temporal CLI, installed through the Go
// module proxy when no temporal binary is found.
const TemporalCLIModule = "github.com/temporalio/cli/cmd/temporal@v1.5.1"

// FindTemporalCLI returns the path of a temporal binary: $TEMPORAL_CLI, then
// PATH, then $(go env GOPATH)/bin. It returns "" when there is none.
func FindTemporalCLI() string {
	if p := os.Getenv("TEMPORAL_CLI"); p != "" {
		if isExecutable(p) {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p
	}
	if gobin := goBinDir(); gobin != "" {
		p := filepath.Join(gobin, "temporal")
		if isExecutable(p) {
			return p
		}
	}
	return ""
}

// EnsureTemporalCLI finds the temporal binary or installs the pinned one
// with `go install` (about 5 minutes on a new machine), reporting to out.
func EnsureTemporalCLI(ctx context.Context, out io.Writer) (string, error) {
	if p := FindTemporalCLI(); p != "" {
		return p, nil
	}
	if os.Getenv("TEMPORAL_CLI") != "" {
		return "", fmt.Errorf("TEMPORAL_CLI=%s is not an executable file", os.Getenv("TEMPORAL_CLI"))
	}
	fmt.Fprintf(out, "Temporal CLI not found; installing %s (a few minutes the first time)...\n", TemporalCLIModule)
	cmd := exec.CommandContext(ctx, "go", "install", TemporalCLIModule)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s: %w", TemporalCLIModule, err)
	}
	if p := FindTemporalCLI(); p != "" {
		return p, nil
	}
	return "", errors.New("temporal was installed but is not in PATH nor in $(go env GOPATH)/bin")
}

func goBinDir() string {
	if b := os.Getenv("GOBIN"); b != "" {
		return b
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	gopath := strings.TrimSpace(string(out))
	if gopath == "" {
		return ""
	}
	return filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin")
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Versions of the server and Web UI that the pinned Temporal CLI embeds; the
// docker-compose images use the same (checked by tests/compose).
const (
	TemporalServerVersion = "1.29.1"
	TemporalUIVersion     = "2.42.1"
)
