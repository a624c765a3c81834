package webhook

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/tetherflow/tether/activities/lib/schema"
)

// PathPrefix is where the receiver serves: POST PathPrefix + source name.
const PathPrefix = "/webhooks/"

// Defaults of the receiver's options.
const (
	// DefaultAcceptTimeout bounds one Accept call, well below the time
	// senders wait for an answer (GitHub: 10s).
	DefaultAcceptTimeout = 5 * time.Second
	// DefaultRetryAfter is the Retry-After of a 503 (Accept failed).
	DefaultRetryAfter = 5 * time.Second
	// DefaultMaxInFlight bounds the Accept calls running at once.
	DefaultMaxInFlight = 256
)

// maxProblems bounds the errors returned for and recorded with one event,
// so a large invalid body cannot make a large answer or event.
const maxProblems = 100

// maxDeliveryID bounds the length of a delivery id.
const maxDeliveryID = 200

// Path returns the path a source's webhooks are sent to.
func Path(source string) string { return PathPrefix + source }

// Receiver is the http.Handler of the webhook sources: it authenticates,
// limits, reads and validates each request, hands the event to its
// Accepter and answers once the Accepter has recorded it. It is safe for
// concurrent use and holds no global state.
type Receiver struct {
	sources map[string]*source
	names   []string // sorted
	acc     Accepter
	mux     *http.ServeMux

	log           *slog.Logger
	now           func() time.Time
	acceptTimeout time.Duration
	retryAfter    time.Duration
	inFlight      chan struct{} // one token per Accept running
}

// source is a Source ready to serve.
type source struct {
	cfg       Source            // with defaults
	secrets   [][]byte          // cfg.Secrets as bytes
	validator *schema.Validator // nil: no schema
	limiter   *limiter
}

// Option changes how New builds a Receiver.
type Option func(*Receiver)

// WithClock sets the clock used for timestamp tolerance, the rate limits
// and Event.ReceivedAt (tests).
func WithClock(now func() time.Time) Option {
	return func(r *Receiver) {
		if now != nil {
			r.now = now
		}
	}
}

// WithLogger sets where each answer is logged: source, delivery id,
// status, reason and size, never secrets, signatures' inputs or bodies.
// Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(r *Receiver) {
		if l != nil {
			r.log = l
		}
	}
}

// WithAcceptTimeout bounds one Accept call (default DefaultAcceptTimeout).
// An Accept that takes longer is answered 503.
func WithAcceptTimeout(d time.Duration) Option {
	return func(r *Receiver) {
		if d > 0 {
			r.acceptTimeout = d
		}
	}
}

// WithRetryAfter sets the Retry-After of a 503 (default DefaultRetryAfter).
func WithRetryAfter(d time.Duration) Option {
	return func(r *Receiver) {
		if d > 0 {
			r.retryAfter = d
		}
	}
}

// WithMaxInFlight bounds the Accept calls running at once (default
// DefaultMaxInFlight). Beyond it a delivery is answered 503 with a
// Retry-After of one second at once, having recorded nothing, rather than
// queueing until its Accept times out (when the sender could not tell
// whether it was recorded).
func WithMaxInFlight(n int) Option {
	return func(r *Receiver) {
		if n > 0 {
			r.inFlight = make(chan struct{}, n)
		}
	}
}

// New checks every source and builds the Receiver. schemas compiles the
// sources' Schema files (it may be nil when no source names one); acc
// records the accepted events. The error lists every problem of every
// source, each naming the source and the field.
func New(sources []Source, schemas *schema.Registry, acc Accepter, opts ...Option) (*Receiver, error) {
	var errs []error
	if len(sources) == 0 {
		errs = append(errs, errors.New("webhook: no sources"))
	}
	if acc == nil {
		errs = append(errs, errors.New("webhook: no Accepter"))
	}
	r := &Receiver{
		sources:       make(map[string]*source, len(sources)),
		acc:           acc,
		log:           slog.New(slog.DiscardHandler),
		now:           time.Now,
		acceptTimeout: DefaultAcceptTimeout,
		retryAfter:    DefaultRetryAfter,
		inFlight:      make(chan struct{}, DefaultMaxInFlight),
	}
	for i, s := range sources {
		prefix := fmt.Sprintf("webhook sources[%d] (%s)", i, s.Name)
		var problems []error
		if err := s.Validate(); err != nil {
			problems = append(problems, err)
		}
		if _, dup := r.sources[s.Name]; dup && s.Name != "" {
			problems = append(problems, fmt.Errorf("name: %q is already the name of another source", s.Name))
		}
		src := &source{cfg: s.withDefaults()}
		if s.Schema != "" {
			if schemas == nil {
				problems = append(problems, fmt.Errorf("schema: %q named but no schema registry given", s.Schema))
			} else if v, err := schemas.Get(s.Schema); err != nil {
				problems = append(problems, fmt.Errorf("schema: %w", err))
			} else {
				src.validator = v
			}
		}
		if len(problems) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w", prefix, errors.Join(problems...)))
			continue
		}
		for _, sec := range s.Secrets {
			src.secrets = append(src.secrets, []byte(sec))
		}
		src.limiter = newLimiter(src.cfg.RateLimit)
		r.sources[s.Name] = src
		r.names = append(r.names, s.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(r.names)
	for _, o := range opts {
		o(r)
	}
	r.mux = http.NewServeMux()
	r.mux.HandleFunc(PathPrefix+"{source}", r.serveSource)
	r.mux.HandleFunc("GET "+OpenAPIPath, serveOpenAPI)
	r.mux.HandleFunc("/", r.serveUnknown)
	return r, nil
}

// Sources returns the names of the sources served, sorted.
func (r *Receiver) Sources() []string { return slices.Clone(r.names) }

// ServeHTTP serves POST /webhooks/{source}.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mux.ServeHTTP(w, req)
}

// answer is what the receiver says to one request, and what it logs.
type answer struct {
	status     int
	body       any
	level      slog.Level
	reason     string // for the log: never a secret or body content
	delivery   string
	retryAfter time.Duration // 503
}

// errorBody is the JSON of every refusal.
type errorBody struct {
	Error   string   `json:"error"`
	Errors  []string `json:"errors,omitempty"`
	Sources []string `json:"sources,omitempty"`
}

// statusBody is the JSON of an acknowledgement.
type statusBody struct {
	Status   string   `json:"status"` // accepted, quarantined, duplicate
	Delivery string   `json:"delivery"`
	Errors   []string `json:"errors,omitempty"`
}

func refuse(status int, level slog.Level, reason, message string) answer {
	return answer{status: status, level: level, reason: reason, body: errorBody{Error: message}}
}

// serveUnknown answers every path that is not a source's.
func (r *Receiver) serveUnknown(w http.ResponseWriter, req *http.Request) {
	a := answer{
		status: http.StatusNotFound,
		level:  slog.LevelInfo,
		reason: "no such path",
		body:   errorBody{Error: "no such endpoint: webhooks are received at POST " + PathPrefix + "{source}", Sources: r.names},
	}
	r.write(w, req, "", a, r.now())
}

// serveSource answers one request to a source's path.
func (r *Receiver) serveSource(w http.ResponseWriter, req *http.Request) {
	start := r.now()
	name := req.PathValue("source")
	src, ok := r.sources[name]
	if !ok {
		r.write(w, req, "", answer{
			status: http.StatusNotFound,
			level:  slog.LevelInfo,
			reason: "unknown source",
			body:   errorBody{Error: fmt.Sprintf("no webhook source %q", clip(name)), Sources: r.names},
		}, start)
		return
	}
	q := src.limiter.take(start)
	q.setHeaders(w.Header())
	var a answer
	switch {
	case !q.allowed:
		a = refuse(http.StatusTooManyRequests, slog.LevelInfo, "rate limited",
			fmt.Sprintf("rate limit of source %q exceeded (%g requests/s, bursts of %d); retry after %ds", name, src.cfg.RateLimit.PerSecond, src.cfg.RateLimit.Burst, ceilSeconds(q.retryAfter)))
	case req.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		a = refuse(http.StatusMethodNotAllowed, slog.LevelInfo, "method "+req.Method, "webhooks are received with POST")
	default:
		a = r.receive(w, req, src, start)
	}
	r.write(w, req, name, a, start)
}

// receive reads, authenticates and checks a POST, and hands its event to
// the Accepter.
func (r *Receiver) receive(w http.ResponseWriter, req *http.Request, src *source, now time.Time) answer {
	cfg := src.cfg
	body, a, ok := readBody(w, req, cfg.MaxBody)
	if !ok {
		return a
	}
	signedAt, secret, reason, ok := src.authenticate(req.Header.Get(cfg.SignatureHeader), body, now)
	if !ok {
		return refuse(http.StatusUnauthorized, slog.LevelWarn, reason, reason)
	}
	delivery := req.Header.Get(cfg.DeliveryHeader)
	if !validDeliveryID(delivery) {
		msg := fmt.Sprintf("header %s is required: the delivery id, 1 to %d visible ASCII characters", cfg.DeliveryHeader, maxDeliveryID)
		return refuse(http.StatusBadRequest, slog.LevelInfo, "missing or bad delivery id", msg)
	}
	doc, err := schema.Decode(body)
	if err != nil {
		a := refuse(http.StatusBadRequest, slog.LevelInfo, "body is not JSON", "body is not JSON: "+err.Error())
		a.delivery = delivery
		return a
	}

	ev := Event{
		Source:     cfg.Name,
		DeliveryID: delivery,
		ReceivedAt: now.UTC(),
		SignedAt:   signedAt.UTC(),
		Sender:     sender(cfg.Name, secret, req.RemoteAddr),
		Body:       body,
	}
	var schemaErrs, pathErrs []string
	if src.validator != nil {
		for _, fe := range src.validator.Validate(doc) {
			schemaErrs = append(schemaErrs, fe.String())
		}
	}
	var problem string
	if ev.EntityKey, problem = scalarAt(doc, cfg.KeyPath, "entity key"); problem != "" {
		pathErrs = append(pathErrs, problem)
	}
	if cfg.VersionPath != "" {
		if ev.Version, problem = scalarAt(doc, cfg.VersionPath, "version"); problem != "" {
			pathErrs = append(pathErrs, problem)
		}
	}
	if cfg.TypePath != "" {
		if t, ok := valueAt(doc, cfg.TypePath); ok {
			ev.Type, _ = t.(string)
		}
		ev.Delete = slices.Contains(cfg.DeleteTypes, ev.Type)
	}
	ev.Record = body
	if cfg.RecordPath != "" {
		ev.Record = nil
		if rec, ok := valueAt(doc, cfg.RecordPath); ok && rec != nil {
			ev.Record, _ = json.Marshal(rec) // decoded from JSON: it encodes
		} else if !ev.Delete {
			pathErrs = append(pathErrs, cfg.RecordPath+": record is missing or null")
		}
	}
	ev.Invalid = capProblems(append(schemaErrs, pathErrs...))

	if ev.Quarantined() && cfg.OnInvalid == OnInvalidReject {
		a := answer{status: http.StatusUnprocessableEntity, level: slog.LevelInfo, delivery: delivery,
			reason: fmt.Sprintf("schema-invalid, rejected (%d errors)", len(schemaErrs)),
			body:   errorBody{Error: fmt.Sprintf("body does not match schema %s", cfg.Schema), Errors: ev.Invalid},
		}
		if len(pathErrs) > 0 {
			a.status = http.StatusBadRequest
			a.reason = "no entity key or version, rejected"
			a.body = errorBody{Error: "cannot read the entity key or version from the body", Errors: ev.Invalid}
		}
		return a
	}
	return r.accept(req.Context(), ev)
}

// accept hands ev to the Accepter and says what its answer means for the
// sender.
func (r *Receiver) accept(ctx context.Context, ev Event) answer {
	// The sender hanging up must not cut a recording half-way: the
	// outcome would be unknown to both sides.
	select {
	case r.inFlight <- struct{}{}:
		defer func() { <-r.inFlight }()
	default:
		return answer{status: http.StatusServiceUnavailable, level: slog.LevelWarn, reason: "overloaded: too many deliveries being recorded", delivery: ev.DeliveryID,
			retryAfter: time.Second,
			body:       errorBody{Error: fmt.Sprintf("overloaded: %d deliveries are being recorded; nothing was recorded for this one, deliver it again after Retry-After", cap(r.inFlight))}}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.acceptTimeout)
	defer cancel()
	err := r.acc.Accept(ctx, ev)
	switch {
	case errors.Is(err, ErrDuplicate):
		return answer{status: http.StatusOK, level: slog.LevelDebug, reason: "duplicate delivery", delivery: ev.DeliveryID,
			body: statusBody{Status: "duplicate", Delivery: ev.DeliveryID}}
	case err != nil:
		return answer{status: http.StatusServiceUnavailable, level: slog.LevelError, reason: "accept: " + err.Error(), delivery: ev.DeliveryID,
			retryAfter: r.retryAfter,
			body:       errorBody{Error: "the event could not be recorded; deliver it again later"}}
	case ev.Quarantined():
		return answer{status: http.StatusAccepted, level: slog.LevelInfo, reason: fmt.Sprintf("quarantined (%d errors)", len(ev.Invalid)), delivery: ev.DeliveryID,
			body: statusBody{Status: "quarantined", Delivery: ev.DeliveryID, Errors: ev.Invalid}}
	default:
		return answer{status: http.StatusAccepted, level: slog.LevelDebug, reason: "accepted", delivery: ev.DeliveryID,
			body: statusBody{Status: "accepted", Delivery: ev.DeliveryID}}
	}
}

// authenticate checks the signature header of body and returns the time
// it was signed and which of the source's secrets signed it (0 the
// current one); on a refusal it returns the reason, which names no secret.
func (s *source) authenticate(header string, body []byte, now time.Time) (time.Time, int, string, bool) {
	name := s.cfg.SignatureHeader
	if header == "" {
		return time.Time{}, -1, "missing " + name + " header", false
	}
	sig, err := parseSignature(header, s.cfg.SignatureScheme)
	if err != nil {
		return time.Time{}, -1, "malformed " + name + " header: " + err.Error(), false
	}
	secret := sig.matches(body, s.secrets)
	if secret < 0 {
		return time.Time{}, -1, "signature does not match: wrong secret, or the body or timestamp changed after signing", false
	}
	// Checked after the signature, so only a signer learns about timing.
	tol := s.cfg.Tolerance
	switch age := now.Sub(sig.at); {
	case age > tol:
		return time.Time{}, -1, fmt.Sprintf("timestamp is %s old, beyond the tolerance of %s: a replayed or delayed request", age.Truncate(time.Second), tol), false
	case -age > tol:
		return time.Time{}, -1, fmt.Sprintf("timestamp is %s in the future, beyond the tolerance of %s: check the sender's clock", (-age).Truncate(time.Second), tol), false
	}
	return sig.at, secret, "", true
}

// sender is the authenticated ingress of a delivery, as the audit names
// it: the source whose secret (1 the current, 2 the previous while
// rotating) signed it, and the address it came from (the connection's
// peer: a proxy's forwarding headers are not evidence).
func sender(source string, secret int, remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	return fmt.Sprintf("webhook %s (secret %d) from %s", source, secret+1, host)
}

// readBody reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, req *http.Request, limit int64) ([]byte, answer, bool) {
	tooLarge := refuse(http.StatusRequestEntityTooLarge, slog.LevelInfo, "body too large",
		fmt.Sprintf("body is larger than the limit of %d bytes", limit))
	if req.ContentLength > limit {
		return nil, tooLarge, false
	}
	size := req.ContentLength
	if size < 0 {
		size = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(size+1, limit+1)))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge, false
		}
		return nil, refuse(http.StatusBadRequest, slog.LevelInfo, "reading the body: "+err.Error(), "reading the body: "+err.Error()), false
	}
	return buf.Bytes(), answer{}, true
}

// validDeliveryID reports whether id is 1 to maxDeliveryID visible ASCII
// characters: safe in a log line and a workflow id.
func validDeliveryID(id string) bool {
	if id == "" || len(id) > maxDeliveryID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// capProblems keeps the first maxProblems problems and says how many more
// there were.
func capProblems(p []string) []string {
	if len(p) <= maxProblems {
		return p
	}
	return append(p[:maxProblems:maxProblems], fmt.Sprintf("… and %d more errors", len(p)-maxProblems))
}

// write sends a and logs it once.
func (r *Receiver) write(w http.ResponseWriter, req *http.Request, source string, a answer, start time.Time) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if a.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(a.retryAfter), 10))
	}
	w.WriteHeader(a.status)
	if err := json.NewEncoder(w).Encode(a.body); err != nil {
		a.reason += "; writing the answer: " + err.Error()
	}
	r.log.Log(req.Context(), a.level, "webhook",
		slog.String("source", source),
		slog.String("delivery", a.delivery),
		slog.Int("status", a.status),
		slog.String("reason", a.reason),
		slog.Int64("bytes", req.ContentLength),
		slog.Duration("took", r.now().Sub(start)),
		slog.String("remote", req.RemoteAddr),
	)
}

// OpenAPIPath is where the receiver serves its OpenAPI document.
const OpenAPIPath = "/openapi.yaml"

// OpenAPI is the receiver's OpenAPI 3 document (openapi.yaml): its paths,
// headers, answers and their bodies.
//
//go:embed openapi.yaml
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(OpenAPI)
}
