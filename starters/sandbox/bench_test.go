package sandbox

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func BenchmarkNew_100k(b *testing.B) {
	for b.Loop() {
		if _, err := New(Options{Seed: 42, Contacts: 100_000}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServer_Page1000(b *testing.B) {
	s, err := New(Options{Seed: 42, Contacts: 100_000})
	if err != nil {
		b.Fatal(err)
	}
	tests := []struct{ name, query string }{
		{"page", "/v1/contacts?page=50&per_page=1000"},
		{"updated_since", "/v1/contacts?page=2&per_page=1000&updated_since=2023-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, tt.query, nil)
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.Handler().ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
				b.SetBytes(int64(rec.Body.Len()))
			}
		})
	}
}
