package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/codec"
)

// TestCodecServer_DecodesForTheTemporalCLIAndOnlyForItsUsers: a run
// encrypted by the worker reads as ciphertext in `temporal workflow show`,
// and as its input and result with --codec-endpoint and the token; the
// codec server refuses a wrong token and origins other than the Web UI's.
func TestCodecServer_DecodesForTheTemporalCLIAndOnlyForItsUsers(t *testing.T) {
	key := newKey(t)
	t.Setenv("TETHER_ENCRYPTION_CURRENT", "ui")
	t.Setenv(codec.EnvPrefix+"UI", key)
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 41, Contacts: 90}, noWorker: true})
	w := s.startWorkerProcess("encrypted", t.TempDir(), s.workerEnv(), workerBinary(t))
	waitPolling(t, w)
	kr, err := codec.Load("ui", "", []string{codec.EnvPrefix + "UI=" + key})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run, _ := syncThrough(t, dialWith(t, devServer.FrontendHostPort(), sealing(kr)), s.taskQueue)

	addr, _, err := cli.StartCodecServer(ctx, cli.CodecServerOptions{Listen: "127.0.0.1:0", Origins: []string{"http://localhost:8233"}, Token: "codec-token"})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + addr
	show := func(extra ...string) string {
		t.Helper()
		args := append([]string{"workflow", "show", "--workflow-id", run.GetID(), "--address", devServer.FrontendHostPort(), "--output", "json"}, extra...)
		out, err := exec.Command(temporalCLI, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("temporal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	encrypted := base64.StdEncoding.EncodeToString([]byte(codec.Encoding))
	opaque := payloadData(t, show())
	if strings.Contains(opaque, `"integration":"crm-contacts"`) || strings.Contains(opaque, `"fetched"`) {
		t.Errorf("without the codec server the payloads read: %.500s", opaque)
	}
	if raw := show(); !strings.Contains(raw, encrypted) {
		t.Errorf("without the codec server the payloads are not marked %s", codec.Encoding)
	}
	clear := payloadData(t, show("--codec-endpoint", endpoint, "--codec-auth", "Bearer codec-token"))
	if !strings.Contains(clear, `"integration":"crm-contacts"`) || !strings.Contains(clear, `"fetched":90`) {
		t.Errorf("with the codec server the input and result do not read: %.1500s", clear)
	}

	for _, c := range []struct {
		name, method, origin, auth string
		want                       int
	}{
		{"preflight from the Web UI", http.MethodOptions, "http://localhost:8233", "", http.StatusOK},
		{"preflight from another origin", http.MethodOptions, "http://evil.example", "", http.StatusForbidden},
		{"decode without the token", http.MethodPost, "http://localhost:8233", "", http.StatusUnauthorized},
		{"decode with a wrong token", http.MethodPost, "", "Bearer nope", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(c.method, endpoint+"/decode", strings.NewReader(`{"payloads":[]}`))
		req.Header.Set("Content-Type", "application/json")
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if c.want == http.StatusOK && resp.Header.Get("Access-Control-Allow-Origin") != c.origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q", c.name, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
}

// payloadData is every payload's data in `temporal workflow show --output
// json`, base64-decoded and joined.
func payloadData(t *testing.T, out string) string {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("temporal workflow show output: %v", err)
	}
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "data" {
					d, _ := base64.StdEncoding.DecodeString(s)
					b.Write(d)
					b.WriteByte('\n')
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return b.String()
}
