package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tetherflow/tether/workers/codec"
	"github.com/tetherflow/tether/workers/config"
)

// CodecServerOptions say how `tether codec-server` serves.
type CodecServerOptions struct {
	Listen  string
	Origins []string
	Token   string
}

// StartCodecServer serves the codec endpoints for the keys the environment
// gives (TETHER_ENCRYPTION_*) on o.Listen until ctx ends; it returns the
// bound address, and a channel closed when the server has stopped.
func StartCodecServer(ctx context.Context, o CodecServerOptions) (string, <-chan struct{}, error) {
	kr, err := config.EncryptionFromEnv().Keyring()
	if err != nil {
		return "", nil, fmt.Errorf("keys (TETHER_ENCRYPTION_*): %w", err)
	}
	if kr == nil {
		return "", nil, errors.New("no keys: set TETHER_ENCRYPTION_CURRENT and the keys (TETHER_ENCRYPTION_KEY_<ID> or TETHER_ENCRYPTION_KEYS_DIR), as for the workers")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("codec server on %s (--listen): %w", o.Listen, err)
	}
	srv := &http.Server{Handler: codec.NewServer(kr, codec.ServerOptions{Origins: o.Origins, Token: o.Token}), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr().String(), done, nil
}

// cmdCodecServer serves the codec endpoints for the Web UI and the
// Temporal CLI until interrupted.
func cmdCodecServer(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("codec-server", flag.ContinueOnError)
	fs.SetOutput(e.errOut)
	var o CodecServerOptions
	var origins string
	fs.StringVar(&o.Listen, "listen", getenv("TETHER_CODEC_LISTEN", "127.0.0.1:8234"), "host:port to serve on (TETHER_CODEC_LISTEN)")
	fs.StringVar(&origins, "origin", getenv("TETHER_CODEC_ORIGINS", "http://localhost:8233,http://127.0.0.1:8233"),
		"Web UI origins allowed, comma-separated (TETHER_CODEC_ORIGINS)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	o.Token = os.Getenv("TETHER_CODEC_TOKEN")
	for _, s := range strings.Split(origins, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Origins = append(o.Origins, s)
		}
	}
	addr, done, err := StartCodecServer(ctx, o)
	if err != nil {
		return err
	}
	auth := "no token (TETHER_CODEC_TOKEN unset): keep it on loopback"
	if o.Token != "" {
		auth = "token required (Authorization: Bearer …)"
	}
	fmt.Fprintf(e.out, "codec server on http://%s for origins %s; %s\n", addr, strings.Join(o.Origins, ", "), auth)
	fmt.Fprintf(e.out, "  Web UI: temporal server start-dev --ui-codec-endpoint http://%s (or the UI's Codec Server setting)\n", addr)
	fmt.Fprintf(e.out, "  CLI:    temporal workflow show --workflow-id ID --codec-endpoint http://%s --codec-auth 'Bearer …'\n", addr)
	<-done
	return nil
}
