package main

import (
	"crypto/hmac"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/schema"
	"github.com/tetherflow/tether/workers/webhook"
)

// baseline is the floor without Temporal: it checks the same signature,
// validates the record against the integration's JSON Schema, and upserts
// the row with the same version guard in one statement, committed before
// it answers. It does what an event costs at the least, and keeps none of
// tether's promises (no delivery log, no quarantine, no retry once the
// sender has its answer, no ordering beyond the version guard).
type baseline struct {
	db        *sql.DB
	secret    string
	validator *schema.Validator
}

func newBaseline(db *sql.DB, secret string, v *schema.Validator) *baseline {
	return &baseline{db: db, secret: secret, validator: v}
}

// baselineUpsert writes one contact unless the table has a newer version.
const baselineUpsert = `INSERT INTO ` + baselineTable + ` AS t
	(id, uuid, first_name, last_name, full_name, email, status, score, created_at, updated_at)
VALUES ($1, $2, $3, $4, $3 || ' ' || $4, $5, $6, $7, $8, $9)
ON CONFLICT (id) DO UPDATE SET
	uuid = EXCLUDED.uuid, first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
	full_name = EXCLUDED.full_name, email = EXCLUDED.email, status = EXCLUDED.status,
	score = EXCLUDED.score, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
WHERE t.updated_at IS NULL OR t.updated_at < EXCLUDED.updated_at`

type contactEvent struct {
	Type string `json:"type"`
	Data struct {
		ID        int64     `json:"id"`
		UUID      string    `json:"uuid"`
		FirstName string    `json:"first_name"`
		LastName  string    `json:"last_name"`
		Email     string    `json:"email"`
		Status    string    `json:"status"`
		Score     int       `json:"score"`
		CreatedAt time.Time `json:"created_at"`
		UpdatedAt time.Time `json:"updated_at"`
	} `json:"data"`
}

func (b *baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != webhook.Path(sourceName) {
		http.Error(w, `{"error":"no such endpoint"}`, http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.DefaultMaxBody))
	if err != nil {
		http.Error(w, `{"error":"reading the body"}`, http.StatusBadRequest)
		return
	}
	if !b.authentic(r.Header.Get(webhook.DefaultSignatureHeader), body, time.Now()) {
		http.Error(w, `{"error":"signature"}`, http.StatusUnauthorized)
		return
	}
	if r.Header.Get(webhook.DefaultDeliveryHeader) == "" {
		http.Error(w, `{"error":"no delivery id"}`, http.StatusBadRequest)
		return
	}
	doc, err := schema.Decode(body)
	m, ok := doc.(map[string]any)
	if err != nil || !ok {
		http.Error(w, `{"error":"body is not a JSON object"}`, http.StatusBadRequest)
		return
	}
	if errs := b.validator.Validate(m["data"]); len(errs) > 0 {
		http.Error(w, `{"error":"schema"}`, http.StatusUnprocessableEntity)
		return
	}
	var ev contactEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, `{"error":"body"}`, http.StatusBadRequest)
		return
	}
	d := ev.Data
	if _, err := b.db.ExecContext(r.Context(), baselineUpsert, d.ID, d.UUID, d.FirstName, d.LastName,
		strings.ToLower(strings.TrimSpace(d.Email)), d.Status, d.Score, d.CreatedAt, d.UpdatedAt); err != nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"the event could not be recorded"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"accepted"}`)
}

// authentic checks "t=<unix>,v1=<hex>" as the receiver does: the HMAC of
// the timestamp and body under the secret, compared in constant time, and
// the timestamp within the default tolerance.
func (b *baseline) authentic(header string, body []byte, now time.Time) bool {
	ts, _, ok := strings.Cut(strings.TrimPrefix(header, "t="), ",")
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	at := time.Unix(n, 0)
	if d := now.Sub(at); d > webhook.DefaultTolerance || -d > webhook.DefaultTolerance {
		return false
	}
	return hmac.Equal([]byte(webhook.Sign("v1", at, body, b.secret)), []byte(header))
}
