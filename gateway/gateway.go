// Package gateway is Tempest's HTTP front end: it turns HTTP requests into
// calls on a Backend (the node) and the Backend's answers and errors into
// JSON responses. The contract, which later versions keep:
//
//	POST /v1/services/{service}/{method}   JSON body in, JSON answer out
//	     header Tempest-Timeout-Ms: the request's deadline budget (optional)
//	GET  /v1/status                        node, clones and supervision state
//	GET  /v1/admin/actors                  actor paths the chaos API accepts
//	POST /v1/admin/kill {"actor":"cart/1"} kill an actor (only with chaos enabled)
//	GET  /healthz                          200 while the node serves
//
// Errors are {"error":{"code":"…","message":"…"}} with a fitting status:
// 400 bad JSON or header, 404 unknown service/method/route, 405 wrong HTTP
// method, 413 body too large, 503 deadline cannot be met / overloaded /
// no clone ready, 504 deadline exceeded.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// Backend is what the gateway serves.
type Backend interface {
	// Admit decides, before the request's body is read, whether the
	// backend takes a request (see AdmitRequest and Admission). It runs for
	// every request, refused or not, and is on the path that must stay
	// cheap under overload: a refusal should not allocate.
	Admit(ctx context.Context, req AdmitRequest) Admission
	// Call runs a method; timeout 0 means the method's default deadline.
	// The budget runs from Arrival(ctx) when ctx carries one.
	Call(ctx context.Context, service, method string, body []byte, timeout time.Duration) ([]byte, error)
	// Status returns a JSON-encodable view of the node.
	Status() any
	// Actors lists the actor paths Kill accepts.
	Actors() []string
	// Kill crashes the actor at path (chaos API).
	Kill(path string) error
}

// AdmitRequest is what admission knows of a request: its head.
type AdmitRequest struct {
	Service, Method string
	// Timeout is the request's budget as it will be given to Call (0: the
	// method's default).
	Timeout time.Duration
	// Arrived is when the request's bytes reached the node: its budget's
	// start (see requestArrival). Headers is when its head was read. Both
	// are zero when the caller does not know them (not from a gateway).
	Arrived, Headers time.Time
}

// Admission is Admit's decision.
type Admission struct {
	// Refused, when not nil, is the refusal to answer at once (a
	// StatusError). Backends return a value made beforehand, not one
	// built per refusal: under overload refusals are most requests, and
	// each allocation on their path is a chance to be held by the garbage
	// collector (an assist) with the CPU already saturated.
	Refused error
	// RetryAfter, with Refused, is how long the client should wait before
	// it tries again (Retry-After); 0 sends none.
	RetryAfter time.Duration
	// Ctx carries the admission and the request's arrival: pass it to Call
	// (nil: Admit's own context is passed).
	Ctx context.Context
	// Done (never nil when admitted) is to be called once the answer is
	// handed on to be written (net/http's buffer, or the front end's write
	// call), with when: the backend may count answers that left after
	// their deadline.
	Done func(answered time.Time)
}

// StatusError is implemented by errors that know their HTTP status and code.
type StatusError interface {
	error
	HTTPStatus() int
	ErrorCode() string
	ErrorMessage() string
}

// RetryAfterHinter is implemented by errors that say how long the client
// should wait before it tries again.
type RetryAfterHinter interface {
	RetryAfterHint() time.Duration
}

// RefusalObserver is implemented by backends that want to know how long
// each refusal at admission took, from the request's headers read to the
// answer written: the node's own time (the wait before the headers were
// read is the arrival's, see requestArrival).
type RefusalObserver interface {
	ObserveRefusal(took time.Duration)
}

// RetryAfterMsHeader carries a refusal's Retry-After in milliseconds
// (Retry-After itself has whole seconds only).
const RetryAfterMsHeader = "Tempest-Retry-After-Ms"

// Options configure the gateway.
type Options struct {
	// MaxBodyBytes is the largest request body accepted; larger gets 413.
	MaxBodyBytes int64
	// MaxTimeout caps Tempest-Timeout-Ms.
	MaxTimeout time.Duration
	// NetHTTPOnly makes a FrontEnd hand every connection to net/http at
	// once instead of serving service calls on its own loop: the reference
	// the loop is tested against, and a way around it.
	NetHTTPOnly bool
}

// normalized fills in the defaults of zero fields.
func (o Options) normalized() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultOptions().MaxBodyBytes
	}
	if o.MaxTimeout <= 0 {
		o.MaxTimeout = DefaultOptions().MaxTimeout
	}
	return o
}

// DefaultOptions: 1 MiB bodies, timeouts up to one minute.
func DefaultOptions() Options {
	return Options{MaxBodyBytes: 1 << 20, MaxTimeout: time.Minute}
}

// TimeoutHeader carries a request's deadline budget in milliseconds.
const TimeoutHeader = "Tempest-Timeout-Ms"

// TimingHeader, sent with any value on a service call, asks the gateway to
// answer with the same header set to "ARRIVED,ANSWERED,HEADERS": Unix
// nanoseconds of the request's arrival (the budget's start, see Arrival),
// of when the gateway began writing the answer, and of when it had read
// the request's headers. A client on the same machine (same clock) can
// then split each request's latency into the time before the node had it,
// the node's own time, and the way back: where lateness comes from
// (tempest-bench http reports it).
const TimingHeader = "Tempest-Timing"

// New returns the gateway's handler.
func New(b Backend, o Options) http.Handler {
	return (&handler{b: b, o: o.normalized()}).routes()
}

// routes is the gateway's HTTP routes, served by g.
func (g *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/services/{service}/{method}", only(http.MethodPost, g.call))
	mux.HandleFunc("/v1/status", only(http.MethodGet, g.status))
	mux.HandleFunc("/v1/admin/actors", only(http.MethodGet, g.actors))
	mux.HandleFunc("/v1/admin/kill", only(http.MethodPost, g.kill))
	mux.HandleFunc("/healthz", only(http.MethodGet, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// only answers 405 (as JSON) to any HTTP method but the one given.
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s not allowed on %s; use %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	}
}

type handler struct {
	b Backend
	o Options
}

// arrivalKey is the context key of a request's arrival times.
type arrivalKey struct{}

type arrival struct{ arrived, headers time.Time }

// WithArrival returns ctx carrying t as the time the request arrived: its
// budget runs from t, not from when the backend is called. Its headers are
// taken to have been read then too (see WithArrivalAndHeaders).
func WithArrival(ctx context.Context, t time.Time) context.Context {
	return WithArrivalAndHeaders(ctx, t, t)
}

// WithArrivalAndHeaders returns ctx carrying when the request arrived (its
// bytes reached the node: the budget's start) and when its headers were
// read (where the node's own measurements of its queueing start: the
// arrival comes from the kernel at the granularity of its ticks, a few
// milliseconds, too coarse for those).
func WithArrivalAndHeaders(ctx context.Context, arrived, headers time.Time) context.Context {
	return context.WithValue(ctx, arrivalKey{}, arrival{arrived, headers})
}

// connKey is the context key of a request's connection (ConnContext).
type connKey struct{}

// ConnContext is an http.Server ConnContext that lets the gateway see each
// request's connection, to start its budget when its bytes arrived rather
// than when its headers were read (requestArrival). Servers of the
// gateway's handler should install it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// requestArrival is when a request whose headers were read at headers
// arrived: when the kernel received its bytes, if its connection says
// (receivedAgo), else headers. Under CPU saturation the difference is
// large: Go's scheduler polls the network only when its run queues are
// empty, or every 10 ms from sysmon, so a request's bytes can wait tens of
// milliseconds before net/http reads them (measured at 3x overload on one
// CPU: p99 8 ms, max 29 ms of 30 ms budgets). Its client counts that wait;
// a budget started at the headers would not, and answers on time by the
// node's clock would still reach the client late. The kernel's figure is
// in scheduler ticks, so a request can be taken to have waited up to a
// tick longer than it did: its answer comes that much early, never late.
func requestArrival(ctx context.Context, headers time.Time) time.Time {
	c, ok := ctx.Value(connKey{}).(net.Conn)
	if !ok {
		return headers
	}
	for {
		u, ok := c.(interface{ NetConn() net.Conn }) // a FrontEnd's prefixConn
		if !ok {
			break
		}
		c = u.NetConn()
	}
	if ago, ok := receivedAgo(c); ok && ago > 0 {
		return headers.Add(-ago)
	}
	return headers
}

// Arrival returns the arrival time WithArrival put in ctx.
func Arrival(ctx context.Context) (time.Time, bool) {
	a, ok := ctx.Value(arrivalKey{}).(arrival)
	return a.arrived, ok
}

// HeadersRead returns when the request's headers were read, as
// WithArrivalAndHeaders put it in ctx.
func HeadersRead(ctx context.Context) (time.Time, bool) {
	a, ok := ctx.Value(arrivalKey{}).(arrival)
	return a.headers, ok
}

func (g *handler) call(w http.ResponseWriter, r *http.Request) {
	// The handler runs once the headers are read. The budget starts before
	// that, when the request's bytes reached the node (see requestArrival),
	// and before the body is read, so a slow body counts against it.
	headers := time.Now()
	head := callHead{
		service: r.PathValue("service"), method: r.PathValue("method"),
		timeout: r.Header.Get(TimeoutHeader),
		arrived: requestArrival(r.Context(), headers), headers: headers,
	}
	bodyW := w // MaxBytesReader must see net/http's own writer
	if r.Header.Get(TimingHeader) != "" {
		w = &timingWriter{ResponseWriter: w, arrived: head.arrived, headers: headers}
	}
	rep, done := g.serveCall(r.Context(), head, func() ([]byte, error) {
		return io.ReadAll(http.MaxBytesReader(bodyW, r.Body, g.o.MaxBodyBytes))
	})
	// A refusal: net/http drains a small unread body before it writes this
	// answer (to keep the connection); it does not decode it.
	rep.writeTo(w)
	g.finish(rep, done, time.Now())
}

// callHead is a service call's request line and headers, whichever
// transport read them (net/http, or the front end's own loop).
type callHead struct {
	service, method string
	timeout         string // TimeoutHeader's value, "" if absent
	// timeoutMs > 0 is timeout already parsed (the front end's loop reads
	// it from the head's bytes without making a string of them).
	timeoutMs int64
	// arrived is the budget's start (requestArrival); headers is when the
	// head was read.
	arrived, headers time.Time
}

// reply is an answer to a service call, whichever transport writes it.
type reply struct {
	status int
	body   []byte
	// errCode and errMsg, when errCode is set, are an error answer whose
	// body (errorBody) is built by the writer: the front end's loop
	// appends it to its buffer, so a refusal costs no allocation.
	errCode, errMsg string
	retryAfter      time.Duration // > 0: Retry-After and RetryAfterMsHeader
	// refused is a refusal at admission, observed by a RefusalObserver
	// once written; headers is when that request's head was read.
	refused bool
	headers time.Time
}

// serveCall is a service call, transport aside: the timeout header's
// check, admission (before the body is read: a refusal costs only the
// head's parsing and the answer), the body (read by readBody, within
// MaxBodyBytes), its check, and the backend's call. done (never nil) is
// to be called once the answer is handed on to be written, with when.
func (g *handler) serveCall(ctx context.Context, h callHead, readBody func() ([]byte, error)) (reply, func(time.Time)) {
	nop := func(time.Time) {}
	ms := h.timeoutMs
	if ms <= 0 && h.timeout != "" {
		var err error
		ms, err = strconv.ParseInt(h.timeout, 10, 64)
		if err != nil || ms <= 0 {
			return errorReply(http.StatusBadRequest, "bad_timeout", fmt.Sprintf("%s must be a positive integer, got %q", TimeoutHeader, h.timeout)), nop
		}
	}
	timeout := time.Duration(0)
	if ms > 0 {
		timeout = g.o.MaxTimeout
		if ms < int64(g.o.MaxTimeout/time.Millisecond) {
			timeout = time.Duration(ms) * time.Millisecond
		}
	}
	adm := g.b.Admit(ctx, AdmitRequest{Service: h.service, Method: h.method, Timeout: timeout, Arrived: h.arrived, Headers: h.headers})
	if adm.Refused != nil {
		rep := statusReply(adm.Refused)
		rep.retryAfter = adm.RetryAfter
		rep.refused, rep.headers = true, h.headers
		return rep, nop
	}
	done := adm.Done
	if done == nil {
		done = nop
	}
	if adm.Ctx == nil { // a backend that keeps no admission in the context
		adm.Ctx = ctx
	}
	body, bad := g.checkBody(readBody())
	if bad != nil {
		return *bad, done
	}
	out, err := g.b.Call(adm.Ctx, h.service, h.method, body, timeout)
	if err != nil {
		return replyOf(err), done
	}
	return reply{status: http.StatusOK, body: out}, done
}

// finish reports a refusal's time to a RefusalObserver and releases an
// admitted call. answered is when the answer was handed on to be written
// (net/http's buffer, or the write system call): the node's own time runs
// from the head read (not the wait unread before) to then, and not
// through the write, after which a goroutine on a busy CPU may wait for
// its turn with the answer already delivered.
func (g *handler) finish(rep reply, done func(time.Time), answered time.Time) {
	if rep.refused {
		if o, ok := g.b.(RefusalObserver); ok {
			o.ObserveRefusal(answered.Sub(rep.headers))
		}
	}
	done(answered)
}

// writeTo writes rep through net/http.
func (rep reply) writeTo(w http.ResponseWriter) {
	h := w.Header()
	if rep.retryAfter > 0 {
		h.Set("Retry-After", retryAfterSeconds(rep.retryAfter))
		h.Set(RetryAfterMsHeader, retryAfterMs(rep.retryAfter))
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	if rep.errCode != "" {
		_, _ = w.Write(appendErrorBody(nil, rep.errCode, rep.errMsg))
		return
	}
	_, _ = w.Write(rep.body)
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(retryAfterSecondsOf(d), 10)
}

func retryAfterMs(d time.Duration) string { return strconv.FormatInt(retryAfterMsOf(d), 10) }

// retryAfterSecondsOf is d in whole seconds, rounded up (Retry-After).
func retryAfterSecondsOf(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// retryAfterMsOf is d in milliseconds, at least 1 (RetryAfterMsHeader).
func retryAfterMsOf(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// replyOf is the answer to a backend's error: its StatusError's status,
// code and message (500 internal otherwise) and its Retry-After hint.
func replyOf(err error) reply {
	rep := statusReply(err)
	rep.retryAfter = retryAfterHint(err)
	return rep
}

// statusReply is replyOf without the hint (an Admission carries its
// own). A StatusError itself (not wrapped) costs no allocation: refusals
// are.
func statusReply(err error) reply {
	se, ok := asStatusError(err)
	if !ok {
		return errorReply(http.StatusInternalServerError, "internal", err.Error())
	}
	return errorReply(se.HTTPStatus(), se.ErrorCode(), se.ErrorMessage())
}

// asStatusError and retryAfterHint find their interface in err: by a type
// assertion first, which allocates nothing, then in its wrapped errors.
// errors.As's target escapes, so it is declared only on that second path.
func asStatusError(err error) (StatusError, bool) {
	if se, ok := err.(StatusError); ok {
		return se, true
	}
	var se StatusError
	ok := errors.As(err, &se)
	return se, ok
}

func retryAfterHint(err error) time.Duration {
	if ra, ok := err.(RetryAfterHinter); ok {
		return ra.RetryAfterHint()
	}
	var ra RetryAfterHinter
	if errors.As(err, &ra) {
		return ra.RetryAfterHint()
	}
	return 0
}

// errorReply is {"error":{"code":code,"message":msg}} with status.
func errorReply(status int, code, msg string) reply {
	return reply{status: status, errCode: code, errMsg: msg}
}

// errorBody is the error object's JSON, one line: built by hand because
// refusals are the one answer written most under overload (a reflective,
// indenting encoder cost 5 µs of each).
func errorBody(code, msg string) []byte { return appendErrorBody(nil, code, msg) }

// appendErrorBody appends errorBody(code, msg) to b.
func appendErrorBody(b []byte, code, msg string) []byte {
	b = append(b, `{"error":{"code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, msg)
	return append(b, "}}\n"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD (as
// encoding/json does).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// timingWriter stamps TimingHeader on the answer as it is written.
type timingWriter struct {
	http.ResponseWriter
	arrived, headers time.Time
	stamped          bool
}

func (t *timingWriter) stamp() {
	if !t.stamped {
		t.stamped = true
		t.Header().Set(TimingHeader, strconv.FormatInt(t.arrived.UnixNano(), 10)+","+
			strconv.FormatInt(time.Now().UnixNano(), 10)+","+strconv.FormatInt(t.headers.UnixNano(), 10))
	}
}

func (t *timingWriter) WriteHeader(status int) {
	t.stamp()
	t.ResponseWriter.WriteHeader(status)
}

func (t *timingWriter) Write(b []byte) (int, error) {
	t.stamp()
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (t *timingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// readBody reads a JSON body within the size limit, answering its errors
// on w; an empty body is {}.
func (g *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, bad := g.checkBody(io.ReadAll(http.MaxBytesReader(w, r.Body, g.o.MaxBodyBytes)))
	if bad != nil {
		bad.writeTo(w)
		return nil, false
	}
	return body, true
}

// checkBody judges a body as read: within MaxBodyBytes (413), read whole
// (400 bad_body), JSON (400 bad_json); an empty body is {}. A non-nil
// reply is the error answer.
func (g *handler) checkBody(body []byte, err error) ([]byte, *reply) {
	var bad reply
	switch {
	case err != nil:
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			bad = errorReply(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds %d bytes", g.o.MaxBodyBytes))
		} else {
			bad = errorReply(http.StatusBadRequest, "bad_body", "reading body: "+err.Error())
		}
	case len(body) == 0:
		return []byte("{}"), nil
	case !json.Valid(body):
		bad = errorReply(http.StatusBadRequest, "bad_json", "request body is not valid JSON")
	default:
		return body, nil
	}
	return nil, &bad
}

func (g *handler) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, g.b.Status())
}

func (g *handler) actors(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"actors": g.b.Actors()})
}

func (g *handler) kill(w http.ResponseWriter, r *http.Request) {
	body, ok := g.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Actor string `json:"actor"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Actor == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", `body must be {"actor":"<path>"}, see GET /v1/admin/actors`)
		return
	}
	if err := g.b.Kill(req.Actor); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"killed": req.Actor})
}

func writeErr(w http.ResponseWriter, err error) { replyOf(err).writeTo(w) }

// WriteError writes {"error":{"code":code,"message":msg}} with status.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	errorReply(status, code, msg).writeTo(w)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
