// Command sandbox serves the sandbox CRM and billing API (package
// starters/sandbox) on a TCP address, for the demo, docker compose and manual
// testing.
//
//	sandbox --addr 127.0.0.1:8081 --contacts 5000 --invalid-rate 0.03
//
// Every flag also reads an environment variable, SANDBOX_ and the flag name
// in upper case with dashes as underscores (SANDBOX_CONTACTS); a flag given
// on the command line wins. When the server is ready it prints one line
// with its URL to stdout; SIGINT or SIGTERM shut it down gracefully. Bad
// flags exit with status 2, a server that cannot start with status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tetherflow/tether/starters/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	addr      string
	logFormat string
	logLevel  slog.Level
	opts      sandbox.Options
}

// parse reads the flags, falling back to SANDBOX_* environment variables;
// an error is a usage error (exit status 2), or flag.ErrHelp.
func parse(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	var rateLimit int
	o := &c.opts
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8081", "listen address")
	fs.IntVar(&o.Contacts, "contacts", sandbox.DefaultContacts, "number of contacts (companies = contacts/10)")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the generated data and of the fault choices")
	fs.IntVar(&o.MaxPageSize, "max-page-size", sandbox.DefaultMaxPageSize, "largest per_page/limit honoured")
	fs.StringVar(&o.Auth.Mode, "auth", sandbox.AuthNone, "accepted credentials: none, bearer, api_key or oauth2")
	fs.StringVar(&o.Auth.Token, "token", "", "bearer token accepted with --auth bearer")
	fs.StringVar(&o.Auth.APIKey, "api-key", "", "X-API-Key accepted with --auth api_key")
	fs.StringVar(&o.Auth.ForbiddenAPIKey, "forbidden-api-key", "", "a key (or bearer token) that authenticates but gets 403")
	fs.StringVar(&o.Auth.ClientID, "client-id", "", "oauth2 client id accepted by POST /oauth/token")
	fs.StringVar(&o.Auth.ClientSecret, "client-secret", "", "oauth2 client secret")
	fs.DurationVar(&o.Auth.TokenTTL, "token-ttl", sandbox.DefaultTokenTTL, "lifetime of issued oauth2 access tokens")
	fs.IntVar(&rateLimit, "rate-limit", 0, "requests per one-second window (0 = unlimited)")
	fs.Float64Var(&o.Faults.ErrorRate, "error-rate", 0, "fraction of collection requests answered 500")
	fs.DurationVar(&o.Faults.Latency, "latency", 0, "latency added to each collection request, e.g. 20ms")
	fs.Float64Var(&o.Faults.InvalidRate, "invalid-rate", 0, "fraction of contacts served in violation of the schema")
	fs.Float64Var(&o.Faults.MalformedRate, "malformed-rate", 0, "fraction of pages served as truncated JSON")
	fs.DurationVar(&o.Faults.Writes.Latency, "write-latency", 0, "latency added to each write (POST/PUT/PATCH/DELETE), e.g. 20ms")
	fs.Float64Var(&o.Faults.Writes.ErrorRate, "write-error-rate", 0, "fraction of writes refused with 500 before they happen")
	fs.IntVar(&o.Faults.Writes.LostResponseEvery, "write-lost-response-every", 0, "every Nth write happens, then is answered 500 (0 = never)")
	fs.StringVar(&o.Webhooks.URL, "webhook-url", "", "send a signed change event of every billing customer change to this URL (the secret from SANDBOX_WEBHOOK_SECRET)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug (logs every request), info, warn or error")

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SANDBOX_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q is not text or json", c.logFormat))
	}
	if rateLimit < 0 {
		errs = append(errs, fmt.Errorf("--rate-limit %d is negative", rateLimit))
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: %w", c.addr, err))
	}
	if o.Webhooks.URL != "" {
		if o.Webhooks.Secret = getenv("SANDBOX_WEBHOOK_SECRET"); o.Webhooks.Secret == "" {
			errs = append(errs, errors.New("--webhook-url needs the signing secret in SANDBOX_WEBHOOK_SECRET"))
		}
	}
	o.RateLimit = sandbox.RateLimit{Requests: max(rateLimit, 0), Window: time.Second}
	if rateLimit == 0 {
		o.RateLimit = sandbox.RateLimit{}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, nil
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, err := parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "sandbox: %v\n", err)
		return 2
	}
	srv, err := sandbox.New(c.opts)
	if err != nil {
		fmt.Fprintf(stderr, "sandbox: %v\n", err)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: c.logLevel}
	var log *slog.Logger
	if c.logFormat == "json" {
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.addr)
	if err != nil {
		log.Error("listen", "addr", c.addr, "err", err)
		return 1
	}
	hs := &http.Server{
		Handler:           logRequests(log, srv.Handler()),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("sandbox ready", "addr", ln.Addr().String(), "contacts", c.opts.Contacts, "seed", c.opts.Seed,
		"auth", c.opts.Auth.Mode, "rate_limit", c.opts.RateLimit.Requests, "faults", c.opts.Faults)
	fmt.Fprintf(stdout, "sandbox listening on http://%s\n", ln.Addr())

	select {
	case err := <-served:
		log.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

// statusWriter remembers the status and size of a response for the log.
type statusWriter struct {
	http.ResponseWriter
	status, bytes int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// logRequests logs every request at debug level.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery,
			"status", sw.status, "bytes", sw.bytes, "duration", time.Since(start))
	})
}
