// Command withpg runs a command with a PostgreSQL it can use, so `make demo`
// and `make test` work on a machine where no server runs:
//
//	go run ./starters/cmd/withpg -- go test ./...
//
// When DATABASE_URL or TEST_DATABASE_URL is set, or a server accepts
// connections on 127.0.0.1:5432, it runs the command as it is. Otherwise it
// starts a private cluster (starters/pgprivate) under .tether/postgres,
// runs the command with DATABASE_URL and TEST_DATABASE_URL pointing at it,
// stops the cluster when the command ends and exits with the command's
// status. Where no PostgreSQL server programs are installed it says in one
// line what to install.
//
// TETHER_PG_PORT moves the port it checks and runs the cluster on (tests
// use a free one); TETHER_PG_DIR moves the cluster's directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/pgprivate"
)

// defaultPort is PostgreSQL's port, the one the default URLs name.
const defaultPort = 5432

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withpg [--] command [args...]")
		return 2
	}
	port := defaultPort
	if p := os.Getenv("TETHER_PG_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			fmt.Fprintf(os.Stderr, "withpg: TETHER_PG_PORT=%q is not a port number\n", p)
			return 2
		}
		port = n
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if os.Getenv("DATABASE_URL") != "" || os.Getenv("TEST_DATABASE_URL") != "" {
		return execute(args, nil)
	}
	if devstack.PortOpen(addr) {
		var env []string
		if port != defaultPort {
			env = urls(port)
		}
		return execute(args, env)
	}
	dir := os.Getenv("TETHER_PG_DIR")
	if dir == "" {
		dir = filepath.Join(".tether", "postgres")
	}
	return withCluster(args, dir, port)
}

// withCluster starts the private cluster, runs the command against it and
// stops the cluster however the command ends.
func withCluster(args []string, dir string, port int) int {
	// Signals are for the command; the cluster stops after it. A terminal
	// delivers Ctrl-C to the command as well (same process group).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel() // interrupted while the cluster starts
		case <-ctx.Done():
		}
	}()
	c, err := pgprivate.Start(ctx, pgprivate.Options{Dir: dir, Port: port})
	if err != nil {
		if !errors.Is(err, pgprivate.ErrNoBinaries) {
			err = fmt.Errorf("private PostgreSQL in %s (TETHER_PG_DIR) on 127.0.0.1:%d (TETHER_PG_PORT): %w", dir, port, err)
		}
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 1
	}
	cancel()
	defer func() {
		sctx, stop := context.WithTimeout(context.Background(), 90*time.Second)
		defer stop()
		if err := c.Stop(sctx); err != nil {
			fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
			return
		}
		fmt.Fprintf(os.Stderr, "withpg: stopped the private PostgreSQL on 127.0.0.1:%d\n", port)
	}()
	how := "started"
	if c.Created {
		how = "created and started"
	}
	fmt.Fprintf(os.Stderr, "withpg: nothing listens on 127.0.0.1:%d and DATABASE_URL is unset: %s a private PostgreSQL %d there (data %s, log %s; stopped on exit)\n",
		port, how, c.Version, c.DataDir, c.LogFile)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), urls(port)...)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 127
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	return status(err)
}

// urls points the command at PostgreSQL on 127.0.0.1:port: the demo's
// database and the test suite's.
func urls(port int) []string {
	base := fmt.Sprintf("postgres://%s@127.0.0.1:%d/", pgprivate.User, port)
	return []string{
		"DATABASE_URL=" + base + "postgres?sslmode=disable",
		"TEST_DATABASE_URL=" + base + pgprivate.TestDatabase + "?sslmode=disable",
	}
}

// execute replaces this process with the command, env added.
func execute(args, env []string) int {
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 127
	}
	err = syscall.Exec(path, args, append(os.Environ(), env...))
	fmt.Fprintf(os.Stderr, "withpg: exec %s: %v\n", path, err)
	return 126
}

// status is the exit status the shell would report for the command.
func status(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 1
	}
}
