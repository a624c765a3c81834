package chaos

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// pgProxy is a TCP proxy on 127.0.0.1 between the workers and PostgreSQL.
// It can refuse connections for a while (its listener closed, the
// connections it carries reset) and lose the answer of a commit: it reads
// the server's messages (the protocol's type byte and length) and, when
// armed, cuts both sides of the connection on a CommandComplete "COMMIT"
// instead of passing it on. The server has committed; the client sees a
// broken connection.
type pgProxy struct {
	target  string
	address string

	mu       sync.Mutex
	ln       net.Listener
	refusing bool
	pairs    map[*pgPair]struct{}
	armed    bool
	// lost is the commit answers dropped; resets the connections reset.
	lost, resets, accepted int
}

// pgPair is one proxied connection. wrote says its open transaction
// wrote the destination table (a query naming it went by).
type pgPair struct {
	client, server net.Conn
	wrote          atomic.Bool
}

func (p *pgPair) reset() {
	if tc, ok := p.client.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	p.client.Close()
	p.server.Close()
}

// startPGProxy listens on a free loopback port and forwards to target
// (host:port).
func startPGProxy(target string) (*pgProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pgProxy{target: target, address: ln.Addr().String(), ln: ln, pairs: map[*pgPair]struct{}{}}
	go p.accept(ln)
	return p, nil
}

func (p *pgProxy) addr() string { return p.address }

func (p *pgProxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *pgProxy) serve(c net.Conn) {
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pair := &pgPair{client: c, server: s}
	p.mu.Lock()
	if p.refusing {
		p.mu.Unlock()
		pair.reset()
		return
	}
	p.pairs[pair] = struct{}{}
	p.accepted++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pairs, pair)
		p.mu.Unlock()
		c.Close()
		s.Close()
	}()
	go func() {
		p.pipeClient(pair)
		s.Close()
		c.Close()
	}()
	p.pipeServer(pair)
}

// pipeClient passes the client's messages on to the server, noting a
// query (simple, or parsed) that names the destination table.
func (p *pgProxy) pipeClient(pair *pgPair) {
	r := bufio.NewReaderSize(pair.client, 64<<10)
	w := bufio.NewWriterSize(pair.server, 64<<10)
	defer w.Flush()
	var hdr [5]byte
	var body []byte
	// The startup message has no type byte.
	first := true
	for {
		h := hdr[:]
		if first {
			h = hdr[1:]
		}
		var err error
		if body, err = readMessage(r, h, hdr[1:], body); err != nil {
			return
		}
		if !first && (hdr[0] == 'Q' || hdr[0] == 'P') && bytes.Contains(body, []byte(table)) {
			pair.wrote.Store(true)
		}
		if _, err := w.Write(h); err != nil {
			return
		}
		if _, err := w.Write(body); err != nil {
			return
		}
		first = false
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// readMessage reads one protocol message: its header into h (the type
// byte, except for a connection's first message, and the length, which
// length holds), then its body, into buf's storage when it fits.
func readMessage(r io.Reader, h, length, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(length)) - 4
	if n < 0 {
		return nil, errors.New("a message shorter than its length field")
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// pipeServer passes the server's messages on to the client, dropping the
// connection at an armed COMMIT.
func (p *pgProxy) pipeServer(pair *pgPair) {
	r := bufio.NewReaderSize(pair.server, 64<<10)
	w := bufio.NewWriterSize(pair.client, 64<<10)
	defer w.Flush()
	var hdr [5]byte
	var body []byte
	for {
		var err error
		if body, err = readMessage(r, hdr[:], hdr[1:], body); err != nil {
			return
		}
		if hdr[0] == 'C' && (string(body) == "COMMIT\x00" || string(body) == "ROLLBACK\x00") {
			if string(body) == "COMMIT\x00" && pair.wrote.Load() && p.takeArmed() {
				// Everything before the COMMIT's answer goes through.
				_ = w.Flush()
				pair.reset()
				return
			}
			pair.wrote.Store(false)
		}
		if _, err := w.Write(hdr[:]); err != nil {
			return
		}
		if _, err := w.Write(body); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// arm makes the answer of the next COMMIT of a transaction that wrote the
// destination table lost; false when one is still pending.
func (p *pgProxy) arm() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed {
		return false
	}
	p.armed = true
	return true
}

func (p *pgProxy) takeArmed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed {
		return false
	}
	p.armed = false
	p.lost++
	return true
}

// lostCommits is the commit answers dropped so far.
func (p *pgProxy) lostCommits() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// refuse closes the listener (connections are refused) and resets every
// connection, for d; then listens on the same port again. It returns the
// connections reset.
func (p *pgProxy) refuse(d time.Duration) (int, error) {
	p.mu.Lock()
	p.refusing = true
	p.ln.Close()
	n := len(p.pairs)
	for pair := range p.pairs {
		pair.reset()
	}
	p.resets += n
	p.mu.Unlock()
	time.Sleep(d)
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ln, err = net.Listen("tcp", p.address); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return n, fmt.Errorf("listen on %s again: %w", p.address, err)
	}
	p.mu.Lock()
	p.ln, p.refusing = ln, false
	p.mu.Unlock()
	go p.accept(ln)
	return n, nil
}

func (p *pgProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = true
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return
	}
	for pair := range p.pairs {
		pair.reset()
	}
}
