// Package pgprivate checks "first run anywhere" end to end: with nothing
// listening on the PostgreSQL port and DATABASE_URL unset, the wrapper
// `make test` and `make demo` go through (starters/cmd/withpg) starts a
// private cluster, hands its URLs to the command, and stops it afterwards.
package pgprivate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/pgprivate"
)

// helperEnv makes the test binary, run by withpg, act as the command.
const helperEnv = "PGPRIVATE_TEST_HELPER"

// TestMain runs the helper command when asked to, else the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

// helper is the command withpg runs: it connects with the URLs withpg
// gave it, as the test suite and the demo do, and prints what it found.
// It exits 3 so the test sees withpg pass the status on.
func helper(mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Printf("DATABASE_URL=%s\nTEST_DATABASE_URL=%s\n", os.Getenv("DATABASE_URL"), os.Getenv("TEST_DATABASE_URL"))
	if os.Getenv("TEST_DATABASE_URL") == "" || os.Getenv("DATABASE_URL") == "" {
		return 1
	}
	for _, dsn := range []string{os.Getenv("DATABASE_URL"), os.Getenv("TEST_DATABASE_URL")} {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		q := `CREATE SCHEMA first_run; CREATE TABLE first_run.t (id text DEFAULT gen_random_uuid()::text); INSERT INTO first_run.t DEFAULT VALUES`
		if mode == "again" {
			q = `INSERT INTO first_run.t DEFAULT VALUES`
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			fmt.Println(err)
			return 1
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM first_run.t`).Scan(&n); err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Printf("rows in %s: %d\n", postgres.RedactDSN(dsn), n)
		db.Close()
	}
	return 3
}

// TestWithpg_StartsAPrivateClusterWhereNothingListens points the suite at
// a port with nothing on it: the command gets a working PostgreSQL, its
// exit status comes back, and nothing is left running. The second run
// reuses the data.
func TestWithpg_StartsAPrivateClusterWhereNothingListens(t *testing.T) {
	if _, err := pgprivate.DefaultSearch().Find(); errors.Is(err, pgprivate.ErrNoBinaries) {
		t.Skip("no PostgreSQL server binaries on this machine (initdb, pg_ctl, postgres): nothing to start")
	}
	withpg := buildWithpg(t)
	dir := stateDir(t)
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if devstack.PortOpen(addr) {
		t.Fatalf("%s is in use", addr)
	}

	for i, mode := range []string{"first", "again"} {
		out, code := runWithpg(t, withpg, dir, port, mode)
		if code != 3 {
			t.Fatalf("run %d: withpg exited %d, want the command's 3:\n%s", i+1, code, out)
		}
		for _, want := range []string{
			fmt.Sprintf("DATABASE_URL=postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
			fmt.Sprintf("TEST_DATABASE_URL=postgres://postgres@127.0.0.1:%d/test?sslmode=disable", port),
			fmt.Sprintf("rows in postgres://postgres@127.0.0.1:%d/test?sslmode=disable: %d", port, i+1),
			"a private PostgreSQL",
			"stopped the private PostgreSQL",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("run %d: output does not say %q:\n%s", i+1, want, out)
			}
		}
		if created := strings.Contains(out, "created and started"); created != (i == 0) {
			t.Errorf("run %d: created a cluster = %v:\n%s", i+1, created, out)
		}
		if devstack.PortOpen(addr) {
			t.Errorf("run %d: %s still accepts connections after withpg exited", i+1, addr)
		}
		if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("run %d: postmaster.pid left behind (%v)", i+1, err)
		}
		if pid := postmasterPid(t, dir); running(pid) {
			t.Errorf("run %d: the server (pid %d) still runs after withpg exited", i+1, pid)
		}
	}
}

// TestWithpg_LeavesAConfiguredDatabaseAlone: with DATABASE_URL set, withpg
// runs the command as it is and starts nothing.
func TestWithpg_LeavesAConfiguredDatabaseAlone(t *testing.T) {
	withpg := buildWithpg(t)
	dir := stateDir(t)
	cmd := exec.Command(withpg, "--", "sh", "-c", `echo "url=$DATABASE_URL"; exit 5`)
	cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://u@127.0.0.1:1/x", "TETHER_PG_DIR="+dir, "TETHER_PG_PORT=1")
	out, _ := cmd.CombinedOutput()
	if got := cmd.ProcessState.ExitCode(); got != 5 {
		t.Errorf("exit status %d, want 5:\n%s", got, out)
	}
	if string(out) != "url=postgres://u@127.0.0.1:1/x\n" {
		t.Errorf("output %q, want the command's alone", out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("withpg made %s: %v", dir, err)
	}
}

// buildWithpg compiles the wrapper into the test's directory.
func buildWithpg(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "withpg")
	cmd := exec.Command("go", "build", "-o", bin, "./starters/cmd/withpg")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./starters/cmd/withpg: %v\n%s", err, out)
	}
	return bin
}

// stateDir is a fresh directory for the cluster that its user can reach:
// as root the cluster runs as postgres, and test directories are private.
func stateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "postgres")
}

// runWithpg runs the wrapper around the helper as `make test` would on a
// machine without DATABASE_URL, and returns its output and exit status.
func runWithpg(t *testing.T, withpg, dir string, port int, mode string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, withpg, "--", os.Args[0])
	var env []string
	for _, kv := range os.Environ() {
		// `make test` may itself run under withpg with these set.
		if k, _, _ := strings.Cut(kv, "="); k != "DATABASE_URL" && k != "TEST_DATABASE_URL" {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TETHER_PG_PORT="+strconv.Itoa(port), "TETHER_PG_DIR="+dir, helperEnv+"="+mode)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("withpg: %v\n%s", err, out.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// postmasterPid is the pid of the server the last run started, read from
// the server log ("[pid] LOG:  database system is ready to accept
// connections"); the log must say that server shut down.
func postmasterPid(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatalf("no server log: %v", err)
	}
	log := string(b)
	i := strings.LastIndex(log, "database system is ready to accept connections")
	if i < 0 {
		t.Fatalf("the server log does not say the server started:\n%s", log)
	}
	if !strings.Contains(log[i:], "database system is shut down") {
		t.Errorf("the server log does not say the server shut down:\n%s", log[i:])
	}
	line := log[strings.LastIndex(log[:i], "\n")+1 : i]
	_, rest, _ := strings.Cut(line, "[")
	pid, _ := strconv.Atoi(strings.SplitN(rest, "]", 2)[0])
	if pid == 0 {
		t.Fatalf("no pid in the server log line %q", line)
	}
	return pid
}

// running reports whether pid is a live process (a zombie is not).
func running(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
