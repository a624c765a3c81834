package pgprivate

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
	"github.com/tetherflow/tether/starters/devstack"
)

// serverBin is the machine's PostgreSQL bin directory; the test is skipped
// where there is none.
func serverBin(t *testing.T) string {
	t.Helper()
	bin, err := DefaultSearch().Find()
	if errors.Is(err, ErrNoBinaries) {
		t.Skip("no PostgreSQL server binaries on this machine (initdb, pg_ctl, postgres)")
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// stateDir is a fresh directory the cluster's user can reach: as root, the
// cluster runs as postgres, and a test's temporary directory is private.
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

func freePort(t *testing.T) int {
	t.Helper()
	p, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, o Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func stop(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if devstack.PortOpen(fmt.Sprintf("127.0.0.1:%d", c.Port)) {
		t.Errorf("port %d still accepts connections after Stop", c.Port)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid left after Stop: %v", err)
	}
}

func mustExec(t *testing.T, dsn, q string) {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestStart_CreatesReusesAndStops: a cluster is created, used, stopped,
// started again from its data (past a stale postmaster.pid), and a second
// server on the same data is refused.
func TestStart_CreatesReusesAndStops(t *testing.T) {
	bin := serverBin(t)
	o := Options{Dir: stateDir(t), Port: freePort(t), Bin: bin}

	c := start(t, o)
	if !c.Created || c.Version < MinVersion {
		t.Errorf("first Start: Created = %v, Version = %d", c.Created, c.Version)
	}
	// What the test suite and the migrations need: a schema of one's own,
	// the built-in gen_random_uuid, a role (the capture tests create one).
	mustExec(t, c.URL(TestDatabase), `CREATE SCHEMA kept; CREATE TABLE kept.t (id text DEFAULT gen_random_uuid()::text); INSERT INTO kept.t DEFAULT VALUES`)
	mustExec(t, c.URL("postgres"), `CREATE ROLE pgprivate_probe LOGIN; DROP ROLE pgprivate_probe`)

	other := o
	other.Port = freePort(t)
	if _, err := Start(context.Background(), other); err == nil || !strings.Contains(err.Error(), "already runs") {
		t.Errorf("a second Start on the same data: error = %v, want one saying a server already runs", err)
	}
	stop(t, c)

	// A postmaster.pid naming a live process of the cluster's user that is
	// no PostgreSQL, and a closed port: a reboot handed the pid on.
	pid := fmt.Sprintf("%d\n%s\n0\n%d\n\n127.0.0.1\n", sleeper(t, c.DataDir), c.DataDir, o.Port)
	writeAsOwner(t, filepath.Join(c.DataDir, "postmaster.pid"), pid)
	c = start(t, o)
	if c.Created {
		t.Error("second Start: Created = true, want the data directory reused")
	}
	mustExec(t, c.URL(TestDatabase), `DO $$ BEGIN IF (SELECT count(*) FROM kept.t) <> 1 THEN RAISE 'lost the row'; END IF; END $$`)
	stop(t, c)
}

// sleeper starts a process that is not PostgreSQL as the owner of dir (the
// server's user: a process of another user would look stale to the server
// itself) and returns its pid.
func sleeper(t *testing.T, dir string) int {
	t.Helper()
	cmd := osexec.Command("sleep", "60")
	if st, err := os.Stat(dir); err == nil && os.Geteuid() == 0 {
		s := st.Sys().(*syscall.Stat_t)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.Uid, Gid: s.Gid}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// writeAsOwner writes file as the owner of its directory, as the server
// would (as root, the cluster's user).
func writeAsOwner(t *testing.T, file, content string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Chown(file, int(s.Uid), int(s.Gid)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStart_RefusesAnotherVersionsData: data of another major version is
// not started, and the error says how to start afresh.
func TestStart_RefusesAnotherVersionsData(t *testing.T) {
	bin := serverBin(t)
	dir := stateDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "PG_VERSION"), []byte("9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{Dir: dir, Port: freePort(t), Bin: bin})
	if err == nil {
		t.Fatal("Start on PostgreSQL 9 data: no error")
	}
	for _, want := range []string{"PostgreSQL 9", "rm -rf " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
