package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// BatchResult is one item of the answer to POST /v1/customers/batch, in the
// order of the request.
type BatchResult struct {
	// Status is the status a POST /v1/customers of the item would have
	// been answered: 201, 409 or 422.
	Status int `json:"status"`
	// Customer is the created customer (Status 201).
	Customer *Customer `json:"customer,omitempty"`
	// Error says why the item was refused (any other Status).
	Error *APIError `json:"error,omitempty"`
	// Replayed is true when the item's idempotency_key was known and its
	// first answer is repeated.
	Replayed bool `json:"replayed,omitempty"`
}

// createBatch is POST /v1/customers/batch: each item is created as by POST
// /v1/customers, under its own "idempotency_key" member if it has one; the
// batch is not atomic.
func (s *Server) createBatch(body []byte) reply {
	const want = "a JSON array of customers"
	if f := notJSON(body, want); f != nil {
		return f.reply()
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil || items == nil {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "", "body is %s: send %s", jsonKind(body), want).reply()
	}
	if len(items) == 0 || len(items) > MaxBatchSize {
		return failure(http.StatusUnprocessableEntity, ErrorTypeValidation, "",
			"a batch holds 1 to %d customers, got %d", MaxBatchSize, len(items)).reply()
	}
	results := make([]BatchResult, len(items))
	for i, raw := range items {
		results[i] = s.batchItem(raw)
		s.ws.stats.BatchItems[results[i].Status]++
	}
	return jsonReply(http.StatusOK, results)
}

// batchItem creates one item of a batch. Its key shares the namespace of
// Idempotency-Key headers, and an item and a POST /v1/customers of the same
// customer are the same request: either replays the other.
func (s *Server) batchItem(raw json.RawMessage) BatchResult {
	fail := func(f *apiFailure) BatchResult { return BatchResult{Status: f.status, Error: &f.err} }
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return fail(failure(http.StatusUnprocessableEntity, ErrorTypeValidation, "", "item is %s: send a customer object", jsonKind(raw)))
	}
	var key string
	if v, ok := doc["idempotency_key"]; ok {
		if err := json.Unmarshal(v, &key); err != nil || key == "" || len(key) > MaxIdempotencyKeyLen {
			return fail(failure(http.StatusUnprocessableEntity, ErrorTypeValidation, "idempotency_key",
				"idempotency_key: must be a string of 1 to %d characters, got %s", MaxIdempotencyKeyLen, abbreviate(v)))
		}
		delete(doc, "idempotency_key")
	}
	item, err := json.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("sandbox: re-encode a parsed object: %v", err)) // its members are valid JSON
	}
	rep, replayed := s.idempotent(key, http.MethodPost+" /v1/"+ResourceCustomers, item, func() reply {
		return s.createCustomer(doc)
	})
	res := BatchResult{Status: rep.status, Replayed: replayed}
	if rep.status == http.StatusCreated {
		var c Customer
		if err := json.Unmarshal(rep.body, &c); err != nil {
			panic(fmt.Sprintf("sandbox: decode a customer the API encoded: %v", err))
		}
		res.Customer = &c
		return res
	}
	var e struct {
		Error APIError `json:"error"`
	}
	if err := json.Unmarshal(rep.body, &e); err != nil {
		panic(fmt.Sprintf("sandbox: decode an error the API encoded: %v", err))
	}
	res.Error = &e.Error
	return res
}
