package httpsink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/activities/lib/httpclient"
)

// Record is one record to write.
type Record struct {
	// Key is the record's natural key, as the pipeline spells it. Records
	// with the same non-empty key in one Apply are collapsed: the last wins.
	Key string
	// Row is the record, sent as the JSON body (values as decoded with
	// UseNumber) and read by the path templates.
	Row map[string]any
	// ExternalID is the destination's id of the record when known (update),
	// or "" (create).
	ExternalID string
	// IdempotencyKey is sent with a create; "" derives one from Key and Row
	// alone. Derive it with IdempotencyKey from the run, the key and the
	// row, so that every retry of the run sends the same one.
	IdempotencyKey string
}

// Outcome is what happened to one record.
type Outcome string

// Outcomes of a record.
const (
	// OutcomeCreated: the destination created the record (or replayed the
	// creation under the same idempotency key).
	OutcomeCreated Outcome = "created"
	// OutcomeUpdated: the destination updated the record.
	OutcomeUpdated Outcome = "updated"
	// OutcomeConflict: the destination's state is not what the write
	// expected (409, 412; and 404/410 on an update: the record is gone).
	// Not a failure: the caller decides (read again, re-create, report).
	OutcomeConflict Outcome = "conflict"
	// OutcomeRejected: the destination refused the record's data (400,
	// 422), or the record cannot be sent (no value for its path): the
	// record is quarantine material, with the reason in Err.
	OutcomeRejected Outcome = "rejected"
	// OutcomeSuperseded: a later record of the same Apply has the same key;
	// only that one was sent.
	OutcomeSuperseded Outcome = "superseded"
)

// RecordResult is what happened to one record.
type RecordResult struct {
	// Key is the record's key.
	Key string
	// Outcome is what happened; "" when Apply returned an error before the
	// record's outcome was known (it may or may not have been applied:
	// retrying the whole Apply is safe).
	Outcome Outcome
	// ExternalID is the destination's id of the record: read at id_path
	// from a create's answer, or the known one of an update. Store it with
	// the record's key, so the next run updates instead of creating.
	ExternalID string
	// Status is the HTTP status of the record's answer (in batch mode, the
	// item's status).
	Status int
	// Err says why the record was rejected or conflicted, quoting the
	// destination's answer (without secrets).
	Err string
}

// Result is what happened to every record of an Apply, in their order:
// len(Records) = Created + Updated + Conflicts + Rejected + Superseded
// when Apply returns no error.
type Result struct {
	// Records has one entry per record passed in, in the same order.
	Records []RecordResult
	// Created, Updated, Conflicts, Rejected and Superseded count the
	// records by outcome.
	Created, Updated, Conflicts, Rejected, Superseded int
}

// errorTypes are the failure types of the Client's HTTP errors.
var errorTypes = httpclient.ErrorTypes{
	HTTP:        failure.TypeSinkHTTP,
	Auth:        failure.TypeSinkAuth,
	NotFound:    failure.TypeSinkNotFound,
	Throttled:   failure.TypeSinkThrottled,
	Unavailable: failure.TypeSinkUnavailable,
}

// Client writes records to one HTTP API. It is safe for concurrent use: one
// Client serves every activity of a worker, so its rate limit, its
// max_in_flight slots, its circuit breaker and its OAuth2 token are shared
// by all of them.
type Client struct {
	name string
	cfg  Config // with defaults
	base *url.URL

	createPath, updatePath, deletePath *pathTemplate
	batchURL                           *url.URL // nil: one request per record

	client   *httpclient.Client
	slots    chan struct{} // max_in_flight
	breaker  *gobreaker.CircuitBreaker[reply]
	openedAt atomic.Int64 // UnixNano when the circuit last opened
	log      *slog.Logger
	metrics  *destinationMetrics // nil: none (WithMetrics)

	// Taken by New for the metrics.
	metricsTo                *Metrics
	integration, destination string

	// Taken by New for the client.
	now       func() time.Time
	sleep     func(ctx context.Context, d time.Duration) error // nil = real timers
	transport http.RoundTripper
}

// Option changes how NewClient builds a Client.
type Option func(*Client)

// WithTransport sets the transport under the retries and the rate limit,
// for the API and the OAuth2 token endpoint alike (tests, proxies, mTLS;
// for an *http.Client, pass its Transport).
func WithTransport(rt http.RoundTripper) Option {
	return func(s *Client) {
		if rt != nil {
			s.transport = rt
		}
	}
}

// WithLogger sets where retries, circuit changes and token refreshes are
// logged (never with credentials). Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(s *Client) {
		if l != nil {
			s.log = l
		}
	}
}

// WithClock sets the clock used to read Retry-After and X-RateLimit-Reset.
func WithClock(now func() time.Time) Option {
	return func(s *Client) {
		if now != nil {
			s.now = now
		}
	}
}

// NewClient validates cfg, parses its path templates and builds the Client of the
// named integration. A bad configuration is a permanent failure.TypeConfig
// error listing every problem.
func NewClient(name string, cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("http sink %q: %w", name, err))
	}
	cfg = cfg.withDefaults()
	s := &Client{
		name:  name,
		cfg:   cfg,
		slots: make(chan struct{}, cfg.MaxInFlight),
		log:   slog.New(slog.DiscardHandler),
		now:   time.Now,
	}
	var err error
	// Validate parsed these already: errors here are unreachable.
	s.base, err = url.Parse(cfg.BaseURL)
	if err == nil {
		s.createPath, err = parsePath("create.path", cfg.Create.Path)
	}
	if err == nil {
		s.updatePath, err = parsePath("update.path", cfg.Update.Path)
	}
	if err == nil {
		s.deletePath, err = parsePath("delete.path", cfg.Delete.Path)
	}
	if err == nil && cfg.Batch.Path != "" {
		s.batchURL, err = resolve(s.base, cfg.Batch.Path)
	}
	if err != nil {
		return nil, failure.Permanent(failure.TypeConfig, fmt.Errorf("http sink %q: %w", name, err))
	}
	s.integration = name
	for _, o := range opts {
		o(s)
	}
	if s.metricsTo != nil {
		s.metrics = s.metricsTo.forDestination(s.integration, s.destination)
	}
	s.client = httpclient.New(httpclient.Options{
		Name:        name,
		Auth:        cfg.Auth,
		RateLimit:   cfg.RateLimit,
		Retry:       cfg.Retry,
		Timeout:     cfg.Timeout,
		Headers:     cfg.Headers,
		UserAgent:   "tether-httpsink",
		Types:       errorTypes,
		NoRedirects: true,
		Transport:   s.transport,
		Logger:      s.log,
		Now:         s.now,
		Sleep:       s.sleep,
	})
	s.breaker = s.newBreaker()
	return s, nil
}

// String names the destination (its base URL, without secrets).
func (s *Client) String() string { return httpclient.RedactURL(s.cfg.BaseURL) }

// job is one request's worth of records: one record, or a batch of creates.
type job struct {
	idx   []int
	batch bool
}

// Apply writes records: a record without ExternalID is created (with its
// idempotency key), one with ExternalID is updated, up to max_in_flight
// at once. What happened to each is in the Result; a record the
// destination refuses is rejected or conflicted there, not an error.
//
// The error, when there is one, is classified (package failure) and
// returned as it is: permanent for credentials, missing endpoints,
// redirects and unreadable answers; throttled (with the wait the server
// asked for) for 429/503 and an open circuit; transient for network
// errors and 5xx. The remaining records are then not sent; retrying the
// whole Apply is safe, as creates carry idempotency keys and updates are
// idempotent.
func (s *Client) Apply(ctx context.Context, records []Record) (Result, error) {
	res := Result{Records: make([]RecordResult, len(records))}
	for i, r := range records {
		res.Records[i].Key = r.Key
	}
	jobs := s.plan(records, &res)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		// stopped: the circuit refused a call, so no more are sent; the
		// calls in flight (a half-open circuit's probe among them) finish,
		// so their outcome is known and the breaker can close.
		stopped atomic.Bool
	)
	queue := make(chan job)
	for range min(len(jobs), s.cfg.MaxInFlight) {
		wg.Go(func() {
			for j := range queue {
				if ctx.Err() != nil || stopped.Load() {
					continue // an earlier call failed: the rest is not sent
				}
				if err := s.run(ctx, records, j, &res); err != nil {
					mu.Lock()
					if errorRank(err) > errorRank(firstErr) {
						firstErr = err
					}
					mu.Unlock()
					if failure.IsType(err, failure.TypeCircuitOpen) {
						stopped.Store(true)
					} else {
						cancel()
					}
				}
			}
		})
	}
	for _, j := range jobs {
		if ctx.Err() != nil || stopped.Load() {
			break
		}
		queue <- j
	}
	close(queue)
	wg.Wait()

	for _, r := range res.Records {
		switch r.Outcome {
		case OutcomeCreated:
			res.Created++
		case OutcomeUpdated:
			res.Updated++
		case OutcomeConflict:
			res.Conflicts++
		case OutcomeRejected:
			res.Rejected++
		case OutcomeSuperseded:
			res.Superseded++
		}
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("http sink %q: %w", s.name, context.Cause(ctx))
	}
	s.log.DebugContext(ctx, "applied records", "integration", s.name, "records", len(records),
		"created", res.Created, "updated", res.Updated, "conflicts", res.Conflicts,
		"rejected", res.Rejected, "superseded", res.Superseded, "error", firstErr)
	return res, firstErr
}

// errorRank orders the errors of one Apply's calls by which one it
// returns: a permanent failure first (it needs a person), then an open
// circuit (the run waits on a timer rather than retrying), then the first
// of the others.
func errorRank(err error) int {
	switch {
	case err == nil:
		return 0
	case failure.IsPermanent(err):
		return 3
	case failure.IsType(err, failure.TypeCircuitOpen):
		return 2
	}
	return 1
}

// plan collapses records with the same key (the last wins) and groups the
// rest into requests: batches of creates in batch mode, one each otherwise.
func (s *Client) plan(records []Record, res *Result) []job {
	last := make(map[string]int, len(records))
	for i, r := range records {
		if r.Key != "" {
			last[r.Key] = i
		}
	}
	var jobs []job
	var creates []int
	for i, r := range records {
		if r.Key != "" && last[r.Key] != i {
			res.Records[i].Outcome = OutcomeSuperseded
			res.Records[i].Err = fmt.Sprintf("superseded by record %d with the same key", last[r.Key])
			continue
		}
		if s.batchURL != nil && r.ExternalID == "" {
			creates = append(creates, i)
			continue
		}
		jobs = append(jobs, job{idx: []int{i}})
	}
	for len(creates) > 0 {
		n := min(len(creates), s.cfg.Batch.MaxRecords)
		jobs = append(jobs, job{idx: creates[:n:n], batch: true})
		creates = creates[n:]
	}
	return jobs
}

// run sends one job and fills in its records' results.
func (s *Client) run(ctx context.Context, records []Record, j job, res *Result) error {
	if j.batch {
		return s.createBatch(ctx, records, j.idx, res.Records)
	}
	i := j.idx[0]
	r, err := s.applyOne(ctx, records[i])
	r.Key = records[i].Key
	res.Records[i] = r
	return err
}

// applyOne creates or updates one record.
func (s *Client) applyOne(ctx context.Context, rec Record) (RecordResult, error) {
	create := rec.ExternalID == ""
	tmpl, method := s.updatePath, s.cfg.Update.Method
	if create {
		tmpl, method = s.createPath, s.cfg.Create.Method
	}
	u, body, problem := s.prepare(tmpl, rec.Row, rec.ExternalID)
	if problem != "" {
		return RecordResult{Outcome: OutcomeRejected, Err: problem}, nil
	}
	header := http.Header{"Content-Type": {"application/json"}}
	if create {
		header.Set(s.cfg.IdempotencyHeader, idempotencyKey(rec))
	}
	rep, err := s.send(ctx, method, u, body, header)
	if err != nil {
		return RecordResult{}, err
	}
	r := RecordResult{Status: rep.status, ExternalID: rec.ExternalID}
	switch code := rep.status; {
	case code >= 200 && code <= 299 && create:
		id, err := s.createdID(rep)
		if err != nil {
			return r, failure.Permanent(failure.TypeSinkMalformed,
				fmt.Errorf("%s %s: status %d: created, but %v: check id_path", method, httpclient.RedactURL(u.String()), code, err),
				httpclient.ErrorDetails{StatusCode: code, URL: httpclient.RedactURL(u.String())})
		}
		r.Outcome, r.ExternalID = OutcomeCreated, id
	case code >= 200 && code <= 299:
		r.Outcome = OutcomeUpdated
	case code == http.StatusConflict, code == http.StatusPreconditionFailed,
		!create && (code == http.StatusNotFound || code == http.StatusGone):
		r.Outcome, r.Err = OutcomeConflict, s.refusal(rep)
	case code == http.StatusBadRequest, code == http.StatusUnprocessableEntity:
		r.Outcome, r.Err = OutcomeRejected, s.refusal(rep)
	default:
		return r, s.statusError(method, u, rep)
	}
	return r, nil
}

// prepare renders a record's URL and encodes its body; a problem with
// either is the reason the record is rejected.
func (s *Client) prepare(tmpl *pathTemplate, row map[string]any, externalID string) (*url.URL, []byte, string) {
	rendered, err := tmpl.render(row, externalID)
	if err != nil {
		return nil, nil, err.Error()
	}
	u, err := resolve(s.base, rendered)
	if err != nil {
		return nil, nil, fmt.Sprintf("%s: %v", tmpl.field, err)
	}
	body, err := json.Marshal(row)
	if err != nil {
		return nil, nil, fmt.Sprintf("row is not JSON: %v", err)
	}
	return u, body, ""
}

// createdID reads the created object's id at id_path; an empty answer
// falls back on the last segment of its Location header.
func (s *Client) createdID(rep reply) (string, error) {
	if len(rep.body) == 0 {
		if loc := rep.header.Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil && path.Base(u.Path) != "/" && path.Base(u.Path) != "." {
				return path.Base(u.Path), nil
			}
		}
		return "", fmt.Errorf("the answer is empty (no id at %q, no Location)", s.cfg.IDPath)
	}
	v, err := decodeJSON(rep.body)
	if err != nil {
		return "", fmt.Errorf("the answer is not JSON (%v): %s", err, s.client.Quote(rep.body))
	}
	return idAt(v, s.cfg.IDPath)
}

// refusal describes a refused record: the status and the start of the
// destination's answer.
func (s *Client) refusal(rep reply) string {
	return fmt.Sprintf("status %d %s: %s", rep.status, http.StatusText(rep.status), s.client.Quote(rep.body))
}

// Delete deletes the record the destination knows as externalID, for
// compensation; row fills the rest of the delete path. A record already
// gone (404, 410) counts as deleted, so Delete is idempotent.
func (s *Client) Delete(ctx context.Context, externalID string, row map[string]any) error {
	if externalID == "" {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("http sink %q: delete: no destination id", s.name))
	}
	rendered, err := s.deletePath.render(row, externalID)
	if err != nil {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("http sink %q: delete %s: %v", s.name, externalID, err))
	}
	u, err := resolve(s.base, rendered)
	if err != nil {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("http sink %q: delete %s: %v", s.name, externalID, err))
	}
	method := s.cfg.Delete.Method
	rep, err := s.send(ctx, method, u, nil, nil)
	if err != nil {
		return err
	}
	switch code := rep.status; {
	case code >= 200 && code <= 299, code == http.StatusNotFound, code == http.StatusGone:
		return nil
	default:
		return s.statusError(method, u, rep)
	}
}

// Restore puts before, the record as it was, back under externalID with a
// PUT to the update path, compensating an update. A record that is gone or
// refuses the before-image is a permanent failure.TypeCompensation error.
func (s *Client) Restore(ctx context.Context, externalID string, before map[string]any) error {
	if externalID == "" {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("http sink %q: restore: no destination id", s.name))
	}
	u, body, problem := s.prepare(s.updatePath, before, externalID)
	if problem != "" {
		return failure.Permanent(failure.TypeCompensation, fmt.Errorf("http sink %q: restore %s: %s", s.name, externalID, problem))
	}
	rep, err := s.send(ctx, http.MethodPut, u, body, http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return err
	}
	switch code := rep.status; {
	case code >= 200 && code <= 299:
		return nil
	case code == http.StatusNotFound, code == http.StatusGone, code == http.StatusConflict,
		code == http.StatusPreconditionFailed, code == http.StatusBadRequest, code == http.StatusUnprocessableEntity:
		return failure.Permanent(failure.TypeCompensation,
			fmt.Errorf("PUT %s: the before-image of %s was not restored: %s", httpclient.RedactURL(u.String()), externalID, s.refusal(rep)),
			httpclient.ErrorDetails{StatusCode: code, URL: httpclient.RedactURL(u.String())})
	default:
		return s.statusError(http.MethodPut, u, rep)
	}
}

// idempotencyKey is the record's key for a create.
func idempotencyKey(rec Record) string {
	if rec.IdempotencyKey != "" {
		return rec.IdempotencyKey
	}
	return IdempotencyKey("", rec.Key, rec.Row)
}
