package integration

import (
	"context"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/starters/cli"
	"github.com/tetherflow/tether/starters/devstack"
	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/workers/codec"
)

// chromium finds Debian's headless Chromium: the test fails without it in
// CI (make test installs it) and is skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const missing = "no Chromium (chromium on PATH): install Debian's chromium package (apt-get install chromium, or make chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(missing)
	}
	t.Skip(missing)
	return ""
}

// pageText is the DOM of url once the page's scripts have run, as headless
// Chromium renders it.
func pageText(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=20000", "--dump-dom", url).Output()
	if err != nil {
		t.Fatalf("chromium %s: %v", url, err)
	}
	// The page's text: the UI splits JSON into highlighted spans.
	text := reTag.ReplaceAllString(string(out), "")
	text = html.UnescapeString(text)
	return strings.Join(strings.Fields(text), "")
}

var reTag = regexp.MustCompile(`<[^>]*>`)

// TestWebUI_ShowsDecodedPayloadsOnlyThroughTheCodecServer: in a real
// browser, the Temporal Web UI of a dev server started with the codec
// server's endpoint shows an encrypted run's input and result decoded;
// with the codec server gone, the same page does not.
func TestWebUI_ShowsDecodedPayloadsOnlyThroughTheCodecServer(t *testing.T) {
	browser := chromium(t)
	key := newKey(t)
	t.Setenv("TETHER_ENCRYPTION_CURRENT", "ui")
	t.Setenv(codec.EnvPrefix+"UI", key)
	uiPort, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	codecCtx, stopCodec := context.WithCancel(context.Background())
	defer stopCodec()
	origins := []string{fmt.Sprintf("http://127.0.0.1:%d", uiPort), fmt.Sprintf("http://localhost:%d", uiPort)}
	codecAddr, codecDone, err := cli.StartCodecServer(codecCtx, cli.CodecServerOptions{Listen: "127.0.0.1:0", Origins: origins})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := devstack.StartDevServer(context.Background(), devstack.DevServerOptions{CLI: temporalCLI, UIPort: uiPort,
		UICodecEndpoint: "http://" + codecAddr, LogFile: filepath.Join(t.TempDir(), "temporal.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(10 * time.Second) })

	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 43, Contacts: 60}, noWorker: true})
	w := s.startWorkerProcess("encrypted", t.TempDir(), s.workerEnv("TEMPORAL_ADDRESS="+srv.Address), workerBinary(t))
	waitPolling(t, w)
	kr, err := codec.Load("ui", "", []string{codec.EnvPrefix + "UI=" + key})
	if err != nil {
		t.Fatal(err)
	}
	run, _ := syncThrough(t, dialWith(t, srv.Address, sealing(kr)), s.taskQueue)

	page := fmt.Sprintf("http://127.0.0.1:%d/namespaces/default/workflows/%s/%s/history", uiPort, url.PathEscape(run.GetID()), run.GetRunID())
	decoded := `{"integration":"crm-contacts"`
	input, result := `"trigger":"test"`, `"status":"Completed"`
	with := pageText(t, browser, page)
	for what, want := range map[string]string{"input": input, "result": result} {
		if !strings.Contains(with, want) {
			t.Errorf("the Web UI with the codec server does not show the decoded %s (%s; page of %d bytes)", what, want, len(with))
		}
	}
	stopCodec()
	<-codecDone
	without := pageText(t, browser, page)
	for _, leak := range []string{decoded, input, result} {
		if strings.Contains(without, leak) {
			t.Errorf("the Web UI shows %s without the codec server", leak)
		}
	}
	if !strings.Contains(without, strings.Join(strings.Fields(run.GetID()), "")) {
		t.Errorf("the page without the codec server did not render the run (%d bytes): the check above proves nothing", len(without))
	}
}
