package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// peerDir holds the peer: a Go module of its own (so not part of this
// module's build, vet or tests) that builds Benthos v4.27 with the
// components the job needs, its config and the draft-07 copy of the
// contacts schema Benthos validates against.
const peerDir = "tests/bench/peer/benthos"

// peerSources are the files the Benthos binary is built from (and keyed by).
var peerSources = []string{"go.mod", "go.sum", "main.go"}

// buildBenthos builds the peer's Benthos into cache once (GOFLAGS=-mod=mod,
// through the Go module proxy) and returns the binary; a binary built from
// the same sources is reused. A first build takes minutes: it reports
// progress to out every 10 s.
func buildBenthos(ctx context.Context, src, cache string, out io.Writer) (string, error) {
	h := sha256.New()
	var files [][]byte
	for _, f := range peerSources {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
		files = append(files, b)
	}
	key := hex.EncodeToString(h.Sum(nil))[:12]
	cache, err := filepath.Abs(cache)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "benthos-peer-"+key)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		fmt.Fprintf(out, "benthos: cached build %s\n", bin)
		return bin, nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", errors.New("the go tool is not in PATH")
	}
	// Build from a copy, so that -mod=mod never edits the repository's files.
	work := filepath.Join(cache, "src-"+key)
	if err := os.RemoveAll(work); err != nil {
		return "", err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	for i, f := range peerSources {
		if err := os.WriteFile(filepath.Join(work, f), files[i], 0o644); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(out, "benthos: building Benthos v4.27 into %s (modules through the Go module proxy; the first build takes several minutes)\n", bin)
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-v", "-o", tmp, ".")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	cmd.Stdout = cmd.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var (
		mu                  sync.Mutex
		downloads, packages int
		tail                []string
	)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if strings.HasPrefix(line, "go: downloading ") {
				downloads++
			} else if !strings.HasPrefix(line, "go: ") && !strings.Contains(line, " ") {
				packages++
			}
			tail = append(tail, line)
			if len(tail) > 30 {
				tail = tail[1:]
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(10 * time.Second)
	done := make(chan error, 1)
	go func() { <-scanned; done <- cmd.Wait() }()
	report := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "benthos: %s %s: %d modules downloaded, %d packages compiled\n", what, time.Since(start).Round(time.Second), downloads, packages)
	}
wait:
	for {
		select {
		case <-tick.C:
			report("building,")
		case err = <-done:
			break wait
		}
	}
	tick.Stop()
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		return "", fmt.Errorf("go build in %s: %v\n%s", work, err, strings.Join(tail, "\n"))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	os.RemoveAll(work) //nolint:errcheck
	report("built in")
	return bin, nil
}

// benthosDDL is the peer's destination table (as its script creates it).
const benthosDDL = `CREATE TABLE %s.crm_contacts (id bigint PRIMARY KEY, uuid uuid, first_name text, last_name text,
full_name text, email text NOT NULL, phone text, company_id bigint, status text, score integer, opt_in boolean,
opt_in_at timestamptz, website text, city text, country text, tags text[], created_at timestamptz, updated_at timestamptz)`

// runBenthos runs Benthos on the sandbox's data into crm_contacts in a
// fresh schema: pages of --page records, JSON Schema validation, the
// mapping, an upsert with a version guard. Its wall time is the process's,
// start to exit; its peak RSS the process's maximum resident set.
func (b *bench) runBenthos(ctx context.Context, round int) (sample, error) {
	s, dsn, drop, err := b.freshSchema(ctx, "benthos", round)
	if err != nil {
		return sample{}, err
	}
	defer drop()
	if _, err := b.admin.ExecContext(ctx, fmt.Sprintf(benthosDDL, s)); err != nil {
		return sample{}, err
	}
	dir := filepath.Join(b.work, fmt.Sprintf("benthos-r%d", round))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sample{}, err
	}
	for _, f := range []string{"bench.yaml", "contacts.draft7.json"} {
		data, err := os.ReadFile(filepath.Join(b.moduleDir, peerDir, f))
		if err != nil {
			return sample{}, err
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return sample{}, err
		}
	}
	u, err := url.Parse(b.sandboxURL)
	if err != nil {
		return sample{}, err
	}
	logPath := filepath.Join(dir, "benthos.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return sample{}, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, b.benthosBin, "-c", "bench.yaml")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("PAGES=%d", (b.o.records+b.o.page-1)/b.o.page),
		fmt.Sprintf("PER_PAGE=%d", b.o.page),
		fmt.Sprintf("THREADS=%d", b.o.benthosThreads),
		"SANDBOX="+u.Host,
		"PEER_DSN="+dsn,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0, cpu := time.Now(), startCPU()
	err = cmd.Run()
	dur, busy := time.Since(t0), cpu.seconds()
	if err != nil {
		return sample{}, fmt.Errorf("%v (log %s)%s", err, logPath, tailOf(logPath))
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024 // KiB on Linux
	}
	quarantined, err := countLines(filepath.Join(dir, "quarantine.jsonl"))
	if err != nil {
		return sample{}, err
	}
	if quarantined > 0 {
		return sample{}, fmt.Errorf("Benthos quarantined %d records (the sandbox serves none invalid): see %s", quarantined, dir)
	}
	n, err := b.checkRows(ctx, s)
	if err != nil {
		return sample{}, fmt.Errorf("%w (log %s)%s", err, logPath, tailOf(logPath))
	}
	out := sample{dur: dur, rows: n, rss: rss, cpu: busy}
	progress("Benthos v4.27", out, fmt.Sprintf("%d quarantined, %d threads", quarantined, b.o.benthosThreads))
	return out, nil
}

// countLines counts the lines of a file; a missing file has none.
func countLines(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return bytes.Count(b, []byte("\n")), nil
}

// tailOf is the last lines of a log, for an error.
func tailOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n" + strings.Join(lines, "\n")
}
