package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Process is a child process the stack started; Stop ends it (SIGTERM, then
// SIGKILL after a grace period) together with its own children.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProcess runs name with args, output to logFile (appended), in its own
// process group so it and its children can be stopped together.
func StartProcess(name string, logFile string, env []string, bin string, args ...string) (*Process, error) {
	var out io.Writer = io.Discard
	if logFile != "" {
		if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s log: %w", name, err)
		}
		out = f
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if c, ok := out.(io.Closer); ok {
			c.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL to the process group (a crash, for tests).
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to grace before SIGKILL.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, grace)
	}
}

// WaitPort waits until addr accepts TCP connections, the process exits, or
// ctx ends.
func WaitPort(ctx context.Context, addr string, p *Process) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil {
			if exited, perr := p.Exited(); exited {
				return fmt.Errorf("%s exited before listening on %s: %v", p.Name, addr, perr)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s: %w", nameOf(p), addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func nameOf(p *Process) string {
	if p == nil {
		return "server"
	}
	return p.Name
}

// PortOpen reports whether something accepts connections on addr.
func PortOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DevServer is a running `temporal server start-dev`.
type DevServer struct {
	*Process
	Address string // gRPC host:port
	UIURL   string // Web UI base URL
}

// DevServerOptions configure StartDevServer.
type DevServerOptions struct {
	CLI      string // temporal binary
	Port     int    // gRPC port (0 = free port)
	UIPort   int    // Web UI port (0 = free port; -1 = headless)
	DBFile   string // keep state across restarts ("" = in memory)
	LogFile  string
	Headless bool
	// UICodecEndpoint is the codec server the Web UI decodes payloads
	// with ("" = none).
	UICodecEndpoint string
}

// StartDevServer starts the Temporal dev server with the search attributes
// tether uses and eager activity execution enabled. A server that exits
// before it listens is started again, up to three times: it picks free
// ports for its own services as it starts, and another process may take
// one of them first.
func StartDevServer(ctx context.Context, o DevServerOptions) (*DevServer, error) {
	for attempt := 1; ; attempt++ {
		s, exited, err := startDevServer(ctx, o)
		if err == nil || !exited || attempt == 3 {
			return s, err
		}
	}
}

// startDevServer is one attempt of StartDevServer; exited says the server
// exited before it listened.
func startDevServer(ctx context.Context, o DevServerOptions) (*DevServer, bool, error) {
	if o.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, false, err
		}
		o.Port = p
	}
	args := []string{"server", "start-dev",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(o.Port),
		"--log-level", "warn",
		"--search-attribute", "IntegrationName=Keyword",
		"--search-attribute", "SyncStatus=Keyword",
		"--dynamic-config-value", "system.enableActivityEagerExecution=true",
	}
	ui := ""
	if o.Headless || o.UIPort < 0 {
		args = append(args, "--headless")
	} else {
		if o.UIPort == 0 {
			p, err := FreePort()
			if err != nil {
				return nil, false, err
			}
			o.UIPort = p
		}
		args = append(args, "--ui-port", strconv.Itoa(o.UIPort))
		if o.UICodecEndpoint != "" {
			args = append(args, "--ui-codec-endpoint", o.UICodecEndpoint)
		}
		ui = fmt.Sprintf("http://127.0.0.1:%d", o.UIPort)
	}
	if o.DBFile != "" {
		if err := os.MkdirAll(filepath.Dir(o.DBFile), 0o755); err != nil {
			return nil, false, err
		}
		args = append(args, "--db-filename", o.DBFile)
	}
	p, err := StartProcess("temporal dev server", o.LogFile, nil, o.CLI, args...)
	if err != nil {
		return nil, false, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", o.Port)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := WaitPort(wctx, addr, p); err != nil {
		exited, _ := p.Exited()
		_ = p.Stop(5 * time.Second)
		return nil, exited, fmt.Errorf("%w (log: %s)", err, o.LogFile)
	}
	return &DevServer{Process: p, Address: addr, UIURL: ui}, false, nil
}

// ErrNoGo is returned when the go tool is needed and missing.
var ErrNoGo = errors.New("the go tool is not in PATH")

// BuildBinary compiles a package of this module into dir and returns its path.
func BuildBinary(ctx context.Context, moduleDir, pkg, dir string) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", ErrNoGo
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = moduleDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}
