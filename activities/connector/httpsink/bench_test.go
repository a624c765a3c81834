package httpsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	cleanhttp "github.com/hashicorp/go-cleanhttp"
)

// benchRecords is the batch every benchmark writes: 100 customer rows.
func benchRecords() []Record {
	recs := make([]Record, 100)
	for i := range recs {
		r := map[string]any{
			"email": fmt.Sprintf("user%d@example.com", i), "name": fmt.Sprintf("User Number %d", i),
			"company": map[string]any{"id": json.Number(fmt.Sprint(i % 50)), "name": "Acme"},
			"tags":    []any{"a", "b"}, "updated_at": "2024-05-01T10:00:00Z", "score": json.Number("12.5"),
		}
		recs[i] = Record{Key: fmt.Sprint(i), Row: r, IdempotencyKey: IdempotencyKey("bench", fmt.Sprint(i), r)}
	}
	return recs
}

// benchServer answers every create at once: 201 with an id, or for the
// batch path one created item per item sent.
func benchServer(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/batch") {
			var items []json.RawMessage
			_ = json.Unmarshal(body, &items)
			w.WriteHeader(http.StatusOK)
			var out bytes.Buffer
			out.WriteByte('[')
			for i := range items {
				if i > 0 {
					out.WriteByte(',')
				}
				fmt.Fprintf(&out, `{"status":201,"id":"cus_%d"}`, i)
			}
			out.WriteByte(']')
			_, _ = w.Write(out.Bytes())
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"cus_1","email":"x"}`))
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkApply writes 100-record batches through the Client: one POST per
// record (4 in flight), or one batch request.
func BenchmarkApply(b *testing.B) {
	for _, mode := range []string{"per_record", "batch"} {
		b.Run(mode, func(b *testing.B) {
			srv := benchServer(b)
			cfg := testConfig()
			cfg.BaseURL = srv.URL
			if mode == "batch" {
				cfg.Batch = Batch{Path: "/v1/customers/batch"}
			}
			s, err := NewClient("bench", cfg)
			if err != nil {
				b.Fatal(err)
			}
			recs := benchRecords()
			b.ReportAllocs()
			for b.Loop() {
				res, err := s.Apply(context.Background(), recs)
				if err != nil || res.Created != len(recs) {
					b.Fatalf("%+v %v", res.Created, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
		})
	}
}

// BenchmarkPlainPost is the baseline of BenchmarkApply/per_record: the same
// 100 POSTs with net/http alone, 4 at once, reading each id.
func BenchmarkPlainPost(b *testing.B) {
	srv := benchServer(b)
	client := &http.Client{Transport: cleanhttp.DefaultPooledTransport()}
	recs := benchRecords()
	b.ReportAllocs()
	for b.Loop() {
		jobs := make(chan Record)
		var wg sync.WaitGroup
		for range DefaultMaxInFlight {
			wg.Go(func() {
				for rec := range jobs {
					if err := plainPost(client, srv.URL+"/v1/customers", rec); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for _, rec := range recs {
			jobs <- rec
		}
		close(jobs)
		wg.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

func plainPost(client *http.Client, url string, rec Record) error {
	body, err := json.Marshal(rec.Row)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", rec.IdempotencyKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var created struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&created); err != nil || resp.StatusCode != http.StatusCreated || created.ID == "" {
		return fmt.Errorf("status %d, id %q: %v", resp.StatusCode, created.ID, err)
	}
	return nil
}
