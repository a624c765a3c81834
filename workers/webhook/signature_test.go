package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSign_ShellExample runs the sender of the package doc (openssl and
// curl) against a receiver: the documented scheme is the one checked.
func TestSign_ShellExample(t *testing.T) {
	for _, tool := range []string{"sh", "openssl", "curl", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	acc := &fakeAccepter{}
	src := crmSource()
	src.Secrets = []string{"the shared secret"}
	rcv, err := New([]Source{src}, testRegistry(t), acc)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, rcv)

	// As in doc.go, with the test server's address.
	script := `
secret='the shared secret'
body='{"type":"contact.updated","data":{"id":42,"updated_at":"2026-11-23T10:15:00Z"}}'
t=$(date +%s)
sig=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$secret" | awk '{print $NF}')
curl -sS "$URL/webhooks/crm" \
  -H 'Content-Type: application/json' \
  -H "X-Tether-Delivery: evt-0001" \
  -H "X-Tether-Signature: t=$t,v1=$sig" \
  --data-binary "$body"
`
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(cmd.Environ(), "URL="+srv.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), `{"status":"accepted","delivery":"evt-0001"}`) {
		t.Errorf("answer %s, want accepted", out)
	}
	if ev := acc.recorded(); len(ev) != 1 || ev[0].EntityKey != "42" {
		t.Errorf("events %+v, want one for entity 42", ev)
	}
}

func TestParseSignature(t *testing.T) {
	mac := strings.Repeat("ab", sha256.Size)
	tests := []struct {
		name     string
		give     string
		wantMACs int
		wantErr  string
	}{
		{name: "one", give: "t=1700000000,v1=" + mac, wantMACs: 1},
		{name: "spaces and other schemes", give: " t=1700000000 , v0=zz, v1=" + mac + " ,v1=" + mac, wantMACs: 2},
		{name: "empty", give: "", wantErr: `entry "" is not key=value`},
		{name: "negative time", give: "t=-1,v1=" + mac, wantErr: "not Unix seconds"},
		{name: "huge time", give: "t=99999999999999,v1=" + mac, wantErr: "not Unix seconds"},
		{name: "short MAC", give: "t=1,v1=abcd", wantErr: "64 hex digits"},
		{name: "too many", give: "t=1" + strings.Repeat(",v1="+mac, maxSignatures+1), wantErr: "more than 8 v1= signatures"},
		{name: "long junk is clipped", give: strings.Repeat("x", 500), wantErr: `entry "` + strings.Repeat("x", 40) + `…" is not key=value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := parseSignature(tt.give, "v1")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(sig.macs) != tt.wantMACs || !sig.at.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("parseSignature = %d MACs at %s, %v; want %d", len(sig.macs), sig.at, err, tt.wantMACs)
			}
		})
	}
}

// FuzzParseSignature: any header parses or is refused, never panics, and
// what parses is signed text a MAC can be checked against.
func FuzzParseSignature(f *testing.F) {
	f.Add(Sign("", time.Unix(1700000000, 0), []byte("{}"), secretNew))
	f.Add(Sign("", time.Unix(1700000000, 0), []byte("{}"), secretNew, secretOld))
	f.Add("t=1,v1=,v1=00")
	f.Add("t=,v1")
	f.Fuzz(func(t *testing.T, header string) {
		sig, err := parseSignature(header, "v1")
		if err != nil {
			return
		}
		if len(sig.macs) == 0 || len(sig.macs) > maxSignatures || sig.timestamp == "" {
			t.Fatalf("parsed %q into %+v", header, sig)
		}
		for _, m := range sig.macs {
			if len(m) != sha256.Size {
				t.Fatalf("MAC of %d bytes from %q", len(m), header)
			}
		}
		_ = sig.matches([]byte("{}"), [][]byte{[]byte(secretNew)})
	})
}

// FuzzReceiver_Body: any signed body gets an answer the sender can act on,
// and the Accepter sees exactly the bodies acknowledged with 202.
func FuzzReceiver_Body(f *testing.F) {
	f.Add([]byte(validBody))
	f.Add([]byte(`{"data":{"id":[1],"updated_at":null}}`))
	f.Add([]byte(`{"data":[{"id":1}]}`))
	f.Add([]byte(`"just a string"`))
	f.Add([]byte(`{"type":"contact.updated","data":{"id":1e400,"updated_at":"x"}}`))
	f.Add([]byte("\xff\xfe"))
	acc := &fakeAccepter{}
	src := crmSource()
	src.MaxBody = 4096
	src.RateLimit = RateLimit{PerSecond: 1e9, Burst: 1 << 30}
	rcv, err := New([]Source{src}, testRegistry(f), acc)
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		n++
		before, _ := acc.counts()
		req := httptest.NewRequest(http.MethodPost, Path("crm"), bytes.NewReader(body))
		req.Header.Set(DefaultSignatureHeader, Sign("", time.Now(), body, secretNew))
		req.Header.Set(DefaultDeliveryHeader, "fuzz-"+strconv.Itoa(n))
		w := httptest.NewRecorder()
		rcv.ServeHTTP(w, req)
		after, _ := acc.counts()
		switch w.Code {
		case http.StatusAccepted:
			if after != before+1 {
				t.Fatalf("202 with %d Accept calls", after-before)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if after != before {
				t.Fatalf("%d after an Accept call", w.Code)
			}
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", w.Body)
		}
	})
}
