package pgprivate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// MinVersion is the oldest PostgreSQL tether runs on (gen_random_uuid is
// built in from 13).
const MinVersion = 13

// User is the superuser of a private cluster; it logs in without a
// password from 127.0.0.1 only.
const User = "postgres"

// TestDatabase is created in every cluster beside `postgres`: the test
// suite's default URL names it.
const TestDatabase = "test"

// settings are appended to postgresql.conf when a cluster is created: TCP
// on loopback only (no Unix socket, whose directory may not be writable),
// and no fsync: the cluster holds development data, reset by removing it.
const settings = `
# A private development cluster of tether (starters/pgprivate).
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
`

// Options configure Start.
type Options struct {
	// Dir holds the cluster: its data directory Dir/data and its server
	// log Dir/postgres.log.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Bin is the directory of initdb, pg_ctl and postgres ("" =
	// DefaultSearch().Find()).
	Bin string
	// Timeout bounds the server's start and stop (0 = 60s).
	Timeout time.Duration
}

// Cluster is a private PostgreSQL server this process started.
type Cluster struct {
	// DataDir is the cluster's data directory.
	DataDir string
	// LogFile is the server's log.
	LogFile string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Version is the server's major version.
	Version int
	// Created reports that Start ran initdb (the data directory was new).
	Created bool

	bin     string
	timeout time.Duration
	cred    *syscall.Credential // nil: run as this process's user
	runAs   string
}

// Start starts a private cluster under o.Dir, creating it with initdb the
// first time: superuser postgres with trust authentication, reachable on
// 127.0.0.1:o.Port only, with databases postgres and test. It reuses the
// data directory of an earlier Start, after clearing a postmaster.pid left
// by a server that no longer runs. The caller stops the cluster with Stop.
//
// PostgreSQL refuses to run as root: when this process is root, the
// cluster's programs run as the system user postgres, which then owns
// o.Dir and must be able to reach it.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Bin == "" {
		bin, err := DefaultSearch().Find()
		if err != nil {
			return nil, err
		}
		o.Bin = bin
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	version, err := majorVersion(ctx, o.Bin)
	if err != nil {
		return nil, err
	}
	if version < MinVersion {
		return nil, fmt.Errorf("PostgreSQL %d in %s is too old: tether needs %d or newer", version, o.Bin, MinVersion)
	}
	c := &Cluster{
		DataDir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "postgres.log"),
		Port: o.Port, Version: version, bin: o.Bin, timeout: o.Timeout,
	}
	if err := c.prepare(dir); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.clearStalePid(); err != nil {
		return nil, err
	}
	secs := strconv.Itoa(int(c.timeout.Seconds()))
	if _, err := c.run(ctx, "pg_ctl", "start", "-D", c.DataDir, "-l", c.LogFile, "-w", "-t", secs, "-s",
		"-o", "-p "+strconv.Itoa(c.Port)); err != nil {
		c.stopQuietly()
		return nil, fmt.Errorf("start PostgreSQL on 127.0.0.1:%d: %w%s", c.Port, err, c.logTail())
	}
	if err := c.createTestDatabase(ctx); err != nil {
		c.stopQuietly()
		return nil, err
	}
	return c, nil
}

// URL is the database URL of database in the cluster.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, c.Port, database)
}

// Stop stops the server (fast shutdown: open sessions are ended) and waits
// until it has exited. The data directory stays for the next Start.
func (c *Cluster) Stop(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	secs := strconv.Itoa(int(c.timeout.Seconds()))
	if _, err := c.run(ctx, "pg_ctl", "stop", "-D", c.DataDir, "-m", "fast", "-w", "-t", secs, "-s"); err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w", c.DataDir, err)
	}
	return nil
}

// stopQuietly stops a server that failed to become usable; the caller
// reports the first error.
func (c *Cluster) stopQuietly() {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	_ = c.Stop(ctx)
}

// prepare creates dir and, as root, picks the user the cluster runs as
// and hands dir to it.
func (c *Cluster) prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(User)
	if err != nil {
		return fmt.Errorf("PostgreSQL refuses to run as root and there is no %q user to run it as: run as another user or set DATABASE_URL", User)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	c.runAs = User
	if err := reachable(dir, uid, gid); err != nil {
		return fmt.Errorf("running as root, the cluster runs as user %s, which cannot reach %s: %w", User, dir, err)
	}
	for _, p := range []string{dir, c.DataDir, c.LogFile} {
		if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// reachable reports a parent of dir that uid (group gid) may not enter.
func reachable(dir string, uid, gid int) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		s, _ := st.Sys().(*syscall.Stat_t)
		perm := st.Mode().Perm()
		ok := perm&0o001 != 0 ||
			(s != nil && int(s.Uid) == uid && perm&0o100 != 0) ||
			(s != nil && int(s.Gid) == gid && perm&0o010 != 0)
		if !ok {
			return fmt.Errorf("%s is mode %04o: choose a directory it can reach", p, perm)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// initdb creates the data directory unless an earlier Start did.
func (c *Cluster) initdb(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "PG_VERSION"))
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != strconv.Itoa(c.Version) {
			return fmt.Errorf("%s was created by PostgreSQL %s and the binaries in %s are %d: remove it (rm -rf %s) to start afresh",
				c.DataDir, v, c.bin, c.Version, filepath.Dir(c.DataDir))
		}
		return nil
	}
	if entries, _ := os.ReadDir(c.DataDir); len(entries) > 0 {
		return fmt.Errorf("%s is not empty and holds no PostgreSQL cluster: remove it (rm -rf %s)", c.DataDir, filepath.Dir(c.DataDir))
	}
	if _, err := c.run(ctx, "initdb", "-D", c.DataDir, "-U", User, "--auth=trust",
		"--encoding=UTF8", "--no-locale", "--no-sync"); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(settings); err != nil {
		f.Close()
		return err
	}
	c.Created = true
	return f.Close()
}

// clearStalePid removes a postmaster.pid whose server no longer runs (a
// killed process, or a reboot that handed its pid to another program),
// and refuses to start beside a server that still runs from DataDir.
func (c *Cluster) clearStalePid() error {
	pidFile := filepath.Join(c.DataDir, "postmaster.pid")
	f, err := os.Open(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	// Lines: pid, data directory, start time, port, ...
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	f.Close()
	pid, _ := strconv.Atoi(strings.TrimSpace(first(lines, 0)))
	port := strings.TrimSpace(first(lines, 3))
	if pid > 0 && alive(pid) && (isPostgres(pid) || portOpen(port)) {
		return fmt.Errorf("a PostgreSQL server (pid %d, port %s) already runs from %s: stop it with %s -D %s stop",
			pid, port, c.DataDir, filepath.Join(c.bin, "pg_ctl"), c.DataDir)
	}
	return os.Remove(pidFile)
}

func first(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

// alive reports whether a process pid runs (EPERM: it does, as another
// user's). A zombie, exited but not yet reaped by its new parent, does not.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc (macOS): trust kill
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// isPostgres reports whether pid runs postgres, where /proc tells.
func isPostgres(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "postgres")
}

func portOpen(port string) bool {
	if port == "" {
		return false
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 300*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// createTestDatabase creates TestDatabase unless it exists.
func (c *Cluster) createTestDatabase(ctx context.Context) error {
	db, err := postgres.Open(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, TestDatabase).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", TestDatabase, err)
	}
	if exists {
		return nil
	}
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+TestDatabase); err != nil {
		return fmt.Errorf("create database %s: %w", TestDatabase, err)
	}
	return nil
}

// run runs one of the cluster's programs, as the cluster's user, in its own
// process group (a Ctrl-C meant for the command being served must not stop
// the server under it), and returns its output.
func (c *Cluster) run(ctx context.Context, program string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, program), args...)
	cmd.Dir = filepath.Dir(c.DataDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The server, started by pg_ctl, writes to its log, not to our pipe;
	// should it keep the pipe all the same, do not wait for it.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		as := ""
		if c.runAs != "" {
			as = " (as user " + c.runAs + ")"
		}
		return nil, fmt.Errorf("%s%s: %w: %s", program, as, err, oneLine(out.String()))
	}
	return out.Bytes(), nil
}

// logTail is the end of the server log, to show why it did not start.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.LogFile)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "\n  " + c.LogFile + ":\n    " + strings.Join(lines, "\n    ")
}

// oneLine joins a program's output into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
