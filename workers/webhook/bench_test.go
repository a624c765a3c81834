package webhook

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/schemas"
)

// benchContact is a sandbox-like contact, valid against contacts.schema.json.
const benchContact = `{"id":4711,"uuid":"6f1c2a3e-9b7d-4c1e-8f2a-0d3b5e7c9a11","first_name":"Carol","last_name":"Nguyen",` +
	`"email":"carol.nguyen@example.com","phone":"+44 20 7946 0958","company_id":12,"status":"customer","score":87,` +
	`"opt_in":true,"opt_in_at":"2026-10-01T08:00:00Z","website":"https://example.com/carol",` +
	`"address":{"street":"1 High Street","city":"London","country":"GB"},"tags":["vip","newsletter"],` +
	`"created_at":"2025-03-14T09:26:53Z","updated_at":"2026-11-23T10:15:00Z"}`

// nopAccepter accepts everything at once.
type nopAccepter struct{}

func (nopAccepter) Accept(context.Context, Event) error { return nil }

// BenchmarkReceiver measures the accept path of one webhook (the sender
// signs; the receiver verifies, parses, validates against
// contacts.schema.json, reads key and version, and calls a no-op
// Accepter) beside a bare handler that only reads the body and answers
// 202, in the same run: in process (ServeHTTP) and over loopback HTTP.
// "receiver-noschema" is the receiver without a schema, which separates
// the cost of JSON Schema validation from the rest.
func BenchmarkReceiver(b *testing.B) {
	reg, err := schema.NewRegistry(schemas.FS())
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(benchContact)
	src := Source{
		Name: "crm", Secrets: []string{secretNew, secretOld}, Schema: "contacts.schema.json",
		KeyPath: "id", VersionPath: "updated_at", RateLimit: RateLimit{PerSecond: 1e9, Burst: 1 << 30},
	}
	rcv, err := New([]Source{src}, reg, nopAccepter{})
	if err != nil {
		b.Fatal(err)
	}
	noSchema := src
	noSchema.Schema = ""
	rcvNoSchema, err := New([]Source{noSchema}, reg, nopAccepter{})
	if err != nil {
		b.Fatal(err)
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	contenders := []struct {
		name string
		h    http.Handler
		sign bool
	}{
		{name: "bare", h: bare},
		{name: "receiver", h: rcv, sign: true},
		{name: "receiver-noschema", h: rcvNoSchema, sign: true},
	}

	for _, c := range contenders {
		b.Run("handler/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				req := httptest.NewRequest(http.MethodPost, Path("crm"), bytes.NewReader(body))
				setBenchHeaders(req, body, n, c.sign)
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				if w.Code != http.StatusAccepted {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
	for _, c := range contenders {
		b.Run("loopback/"+c.name, func(b *testing.B) {
			srv := newServer(b, c.h)
			client := srv.Client()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				req, err := http.NewRequest(http.MethodPost, srv.URL+Path("crm"), bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				setBenchHeaders(req, body, n, c.sign)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

func setBenchHeaders(req *http.Request, body []byte, n int, sign bool) {
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(DefaultDeliveryHeader, "bench-"+strconv.Itoa(n))
	if sign {
		req.Header.Set(DefaultSignatureHeader, Sign("", time.Now(), body, secretNew))
	}
}
