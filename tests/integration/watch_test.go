package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workflows/datasync"
)

// TestWatch_FailedRunShowsWhatItDidAndWhy: watching a run that fails for
// good shows its integration, what it did (the same counts as tether runs)
// and why it failed in one readable line, with the whole chain on request.
func TestWatch_FailedRunShowsWhatItDidAndWhy(t *testing.T) {
	fault := &pageFault{path: "/v1/contacts", n: 4, status: http.StatusNotFound}
	fault.armed.Store(true)
	s := newStack(t, stackOptions{
		sandbox:   sandbox.Options{Seed: 13, Contacts: 6000},
		transport: func(rt http.RoundTripper) http.RoundTripper { fault.next = rt; return fault },
	})
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	var out bytes.Buffer
	res, err := cli.Watch(context.Background(), s.client, &out, run.GetID(), 0)
	var re *cli.RunError
	if !errors.As(err, &re) {
		t.Fatalf("Watch() error = %v, want a *cli.RunError", err)
	}
	line := re.Error()
	for _, want := range []string{"FetchPage failed on page 4 (source first page since ", "status 404", "Next: check the source's base_url and path"} {
		if !strings.Contains(line, want) {
			t.Errorf("failure line does not say %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "\n") || strings.Contains(line, "retryable") || strings.Count(line, "status 404") != 1 {
		t.Errorf("failure is not one readable line:\n%s", line)
	}
	if !strings.Contains(re.Full(), "SourceNotFound") {
		t.Errorf("the whole chain does not name the type: %s", re.Full())
	}
	if res.Integration != "crm-contacts" || res.Status != progress.StatusFailed {
		t.Errorf("result integration %q status %q, want crm-contacts Failed", res.Integration, res.Status)
	}
	runs, lerr := s.store.ListRuns(context.Background(), "crm-contacts", 1)
	if lerr != nil || len(runs) != 1 {
		t.Fatalf("runs: %v %+v", lerr, runs)
	}
	if res.Counts.Fetched < 3000 || res.Counts.Applied() == 0 || res.Counts != runs[0].Counts {
		t.Errorf("watch counts %+v, tether runs %+v: want what the run did, the same in both", res.Counts, runs[0].Counts)
	}
}

// TestWatch_StopsWatchingOnCtrlCAndTheRunGoesOn: cancelling a watch stops
// watching only.
func TestWatch_StopsWatchingOnCtrlCAndTheRunGoesOn(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 3, Contacts: 6000}})
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := cli.Watch(ctx, s.client, io.Discard, run.GetID(), 0)
	if !errors.Is(err, cli.ErrStoppedWatching) || res.Status != progress.StatusRunning {
		t.Fatalf("Watch() = %+v, %v; want status Running and ErrStoppedWatching", res, err)
	}
	if end, err := s.wait(run); err != nil || end.Status != progress.StatusCompleted {
		t.Errorf("the run after the watch stopped: %+v, %v", end, err)
	}
}

// TestWatch_RidesOutATemporalOutage: while the connection to Temporal is
// cut, Watch retries and says so; the run's completion is reported, never
// a failure it did not have.
func TestWatch_RidesOutATemporalOutage(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 5, Contacts: 20000}})
	p := newCuttableProxy(t, devServer.FrontendHostPort())
	c, err := client.Dial(client.Options{HostPort: p.addr, Namespace: "default", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run := s.start(datasync.Input{Integration: "crm-contacts"})
	go func() {
		time.Sleep(300 * time.Millisecond)
		p.cut(8 * time.Second)
	}()
	var out bytes.Buffer
	res, err := cli.Watch(context.Background(), c, &out, run.GetID(), 0)
	if err != nil || res.Status != progress.StatusCompleted || res.Counts.Fetched < 20000 {
		t.Fatalf("Watch() = %+v, %v; want the completed run\noutput:\n%s", res, err, out.String())
	}
	if !strings.Contains(out.String(), "Temporal unreachable, retrying") {
		t.Errorf("the outage was not shown:\n%s", out.String())
	}
}

// cuttableProxy forwards TCP connections on loopback to a target, and can
// cut every connection and refuse new ones for a while.
type cuttableProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func newCuttableProxy(t *testing.T, target string) *cuttableProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{t: t, addr: ln.Addr().String(), target: target}
	p.serve(ln)
	t.Cleanup(func() { p.close() })
	return p
}

func (p *cuttableProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

// close stops listening and drops every connection.
func (p *cuttableProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// cut drops every connection, refuses new ones for d, then listens again
// on the same address.
func (p *cuttableProxy) cut(d time.Duration) {
	p.close()
	time.Sleep(d)
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Errorf("proxy: listen again on %s: %v", p.addr, err)
		return
	}
	p.serve(ln)
}
