package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testErr is a StatusError for the backend below.
type testErr struct {
	status    int
	code, msg string
}

func (e testErr) Error() string        { return e.msg }
func (e testErr) HTTPStatus() int      { return e.status }
func (e testErr) ErrorCode() string    { return e.code }
func (e testErr) ErrorMessage() string { return e.msg }

// backend answers like a node with one service "echo" whose method "say"
// echoes its body; it records the timeout it was given.
type backend struct {
	gotTimeout time.Duration
	arrived    time.Time // Arrival(ctx) of the last call
	called     time.Time // when the last call reached the backend
	admitted   int       // Admit successes
	done       int       // their done calls
	killed     string
	admitSaw   time.Time       // AdmitRequest.Arrived at the last Admit
	refusals   []time.Duration // ObserveRefusal's
	answered   time.Time       // given to the last done
}

func (b *backend) ObserveRefusal(took time.Duration) { b.refusals = append(b.refusals, took) }

func (b *backend) Call(ctx context.Context, service, method string, body []byte, timeout time.Duration) ([]byte, error) {
	b.gotTimeout = timeout
	b.arrived, _ = Arrival(ctx)
	b.called = time.Now()
	switch {
	case service != "echo":
		return nil, testErr{404, "unknown_service", "no " + service}
	case method == "slow":
		return nil, testErr{503, "deadline_unmeetable", "too slow"}
	case method == "boom":
		return nil, errors.New("plain failure")
	case method == "busy": // a wrapped refusal from Call, with a hint
		return nil, fmt.Errorf("clone 1: %w", retryErr{testErr{503, "overloaded", "queue full"}, 2500 * time.Millisecond})
	case method != "say":
		return nil, testErr{404, "unknown_method", "no " + method}
	}
	return body, nil
}
func (b *backend) Admit(ctx context.Context, req AdmitRequest) Admission {
	b.admitSaw = req.Arrived
	if req.Method == "full" {
		return Admission{Refused: fullErr, RetryAfter: 1500 * time.Millisecond}
	}
	b.admitted++
	return Admission{Ctx: WithArrivalAndHeaders(ctx, req.Arrived, req.Headers), Done: func(at time.Time) { b.done++; b.answered = at }}
}

// fullErr is the refusal of method "full", made once as a backend should.
var fullErr error = testErr{503, "overloaded", "at the limit"}

func (b *backend) Status() any { return map[string]string{"node": "t"} }

// retryErr is a refusal with a Retry-After hint.
type retryErr struct {
	testErr
	after time.Duration
}

func (e retryErr) RetryAfterHint() time.Duration { return e.after }
func (b *backend) Actors() []string              { return []string{"echo/1"} }
func (b *backend) Kill(path string) error {
	if path != "echo/1" {
		return testErr{404, "unknown_actor", path}
	}
	b.killed = path
	return nil
}

func do(t *testing.T, h http.Handler, method, path, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q", method, path, ct)
	}
	raw, _ := io.ReadAll(rec.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
	}
	return rec.Code, out
}

func errCode(t *testing.T, out map[string]any) string {
	t.Helper()
	e, ok := out["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %v", out)
	}
	if m, _ := e["message"].(string); m == "" {
		t.Fatalf("error without message: %v", out)
	}
	return e["code"].(string)
}

func TestCallContract(t *testing.T) {
	b := &backend{}
	h := New(b, Options{MaxBodyBytes: 64})
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"ok", "POST", "/v1/services/echo/say", `{"a":1}`, nil, 200, ""},
		{"empty body is {}", "POST", "/v1/services/echo/say", ``, nil, 200, ""},
		{"bad json", "POST", "/v1/services/echo/say", `{"a":`, nil, 400, "bad_json"},
		{"too large", "POST", "/v1/services/echo/say", `{"a":"` + strings.Repeat("x", 100) + `"}`, nil, 413, "too_large"},
		{"unknown service", "POST", "/v1/services/nope/say", `{}`, nil, 404, "unknown_service"},
		{"unknown method", "POST", "/v1/services/echo/nope", `{}`, nil, 404, "unknown_method"},
		{"unmeetable", "POST", "/v1/services/echo/slow", `{}`, nil, 503, "deadline_unmeetable"},
		{"plain error is 500", "POST", "/v1/services/echo/boom", `{}`, nil, 500, "internal"},
		{"wrapped refusal from Call", "POST", "/v1/services/echo/busy", `{}`, nil, 503, "overloaded"},
		{"timeout with a sign", "POST", "/v1/services/echo/say", `{}`, map[string]string{TimeoutHeader: "+250"}, 200, ""},
		{"zero timeout", "POST", "/v1/services/echo/say", `{}`, map[string]string{TimeoutHeader: "000"}, 400, "bad_timeout"},
		{"huge timeout", "POST", "/v1/services/echo/say", `{}`, map[string]string{TimeoutHeader: "99999999999999999999"}, 400, "bad_timeout"},
		{"bad timeout", "POST", "/v1/services/echo/say", `{}`, map[string]string{TimeoutHeader: "soon"}, 400, "bad_timeout"},
		{"negative timeout", "POST", "/v1/services/echo/say", `{}`, map[string]string{TimeoutHeader: "-5"}, 400, "bad_timeout"},
		{"wrong verb", "GET", "/v1/services/echo/say", ``, nil, 405, "method_not_allowed"},
		{"no route", "GET", "/nope", ``, nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, out := do(t, h, c.method, c.path, c.body, c.hdr)
			if status != c.status {
				t.Fatalf("status %d, want %d (%v)", status, c.status, out)
			}
			if c.code != "" {
				if got := errCode(t, out); got != c.code {
					t.Fatalf("code %q, want %q", got, c.code)
				}
			}
		})
	}
}

func TestTimeoutHeaderIsPassedAndCapped(t *testing.T) {
	b := &backend{}
	h := New(b, Options{MaxTimeout: time.Second})
	do(t, h, "POST", "/v1/services/echo/say", `{}`, map[string]string{TimeoutHeader: "250"})
	if b.gotTimeout != 250*time.Millisecond {
		t.Fatalf("timeout %v", b.gotTimeout)
	}
	do(t, h, "POST", "/v1/services/echo/say", `{}`, map[string]string{TimeoutHeader: "99999"})
	if b.gotTimeout != time.Second {
		t.Fatalf("timeout not capped: %v", b.gotTimeout)
	}
	do(t, h, "POST", "/v1/services/echo/say", `{}`, nil)
	if b.gotTimeout != 0 {
		t.Fatalf("no header should mean default (0), got %v", b.gotTimeout)
	}
}

func TestStatusAndKill(t *testing.T) {
	b := &backend{}
	h := New(b, DefaultOptions())
	if status, out := do(t, h, "GET", "/v1/status", ``, nil); status != 200 || out["node"] != "t" {
		t.Fatalf("status: %d %v", status, out)
	}
	if status, out := do(t, h, "POST", "/v1/admin/kill", `{"actor":"echo/1"}`, nil); status != 202 || b.killed != "echo/1" {
		t.Fatalf("kill: %d %v", status, out)
	}
	if status, out := do(t, h, "POST", "/v1/admin/kill", `{"actor":"zz"}`, nil); status != 404 || errCode(t, out) != "unknown_actor" {
		t.Fatalf("kill unknown: %d %v", status, out)
	}
	if status, out := do(t, h, "POST", "/v1/admin/kill", `{}`, nil); status != 400 || errCode(t, out) != "bad_request" {
		t.Fatalf("kill without actor: %d %v", status, out)
	}
}

// TestBudgetStartsWhenTheHeadersAreRead: the request's arrival, from which
// its budget runs, is taken before its body is read, so a slow body counts
// against the budget instead of being invisible to it.
func TestBudgetStartsWhenTheHeadersAreRead(t *testing.T) {
	b := &backend{}
	srv := httptest.NewServer(New(b, DefaultOptions()))
	defer srv.Close()
	pr, pw := io.Pipe()
	bodySent := make(chan time.Time, 1)
	go func() {
		time.Sleep(30 * time.Millisecond) // the headers are on their way; the body comes later
		bodySent <- time.Now()
		_, _ = pw.Write([]byte(`{"x":1}`))
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/services/echo/say", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(TimeoutHeader, "500")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	sent := <-bodySent
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if b.arrived.IsZero() {
		t.Fatal("the backend got no arrival time in its context")
	}
	if !b.arrived.Before(sent) {
		t.Fatalf("arrival %v is not before the body was sent (%v): the budget started after the body was read", b.arrived, sent)
	}
	if !b.called.After(sent) {
		t.Fatalf("the backend was called at %v, before the body was sent at %v", b.called, sent)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestRefusedBeforeTheBodyIsDecoded: a request the backend does not admit
// is answered 503 with Retry-After without its body being decoded (a body
// that is not JSON gets the refusal, not a 400) and never reaches Call; an
// admitted request is released once answered.
func TestRefusedBeforeTheBodyIsDecoded(t *testing.T) {
	b := &backend{}
	h := New(b, DefaultOptions())
	req := httptest.NewRequest(http.MethodPost, "/v1/services/echo/full", strings.NewReader("{not json"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body struct{ Error struct{ Code string } }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusServiceUnavailable || body.Error.Code != "overloaded" {
		t.Fatalf("refusal of a request with a bad body: %d %s, want 503 overloaded (the body must not be decoded)", rec.Code, rec.Body)
	}
	if rec.Header().Get("Retry-After") != "2" || rec.Header().Get(RetryAfterMsHeader) != "1500" {
		t.Fatalf("Retry-After %q, %s %q; want 2 and 1500", rec.Header().Get("Retry-After"), RetryAfterMsHeader, rec.Header().Get(RetryAfterMsHeader))
	}
	if !b.called.IsZero() {
		t.Fatal("a refused request reached Call")
	}
	before := time.Now()
	if code, _ := do(t, h, http.MethodPost, "/v1/services/echo/say", `{"a":1}`, nil); code != http.StatusOK || b.admitted != 1 || b.done != 1 {
		t.Fatalf("admitted call: status %d, admitted %d, done %d; want 200, 1, 1", code, b.admitted, b.done)
	}
	if b.answered.Before(before) || b.answered.After(time.Now()) {
		t.Fatalf("done got %v as the answer's hand-off, want a time during the call", b.answered)
	}
}

// TestTimingHeader: asked for, the answer carries when the request arrived
// and when its answer was written, in that order and around the call, for
// successes and refusals alike; not asked for, it is absent.
func TestTimingHeader(t *testing.T) {
	b := &backend{}
	h := New(b, DefaultOptions())
	for _, path := range []string{"/v1/services/echo/say", "/v1/services/echo/full"} {
		before := time.Now().UnixNano()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"a":1}`))
		req.Header.Set(TimingHeader, "1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		after := time.Now().UnixNano()
		f := strings.Split(rec.Header().Get(TimingHeader), ",")
		var v [3]int64
		var bad error
		for i := range f[:min(len(f), 3)] {
			if v[i], bad = strconv.ParseInt(f[i], 10, 64); bad != nil {
				break
			}
		}
		arrived, answered, headers := v[0], v[1], v[2]
		if len(f) != 3 || bad != nil || !(before <= arrived && arrived <= headers && headers <= answered && answered <= after) {
			t.Fatalf("%s (%d): %s %q, want ARRIVED,ANSWERED,HEADERS within [%d, %d], arrived <= headers <= answered", path, rec.Code, TimingHeader, rec.Header().Get(TimingHeader), before, after)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/services/echo/say", strings.NewReader(`{}`)))
	if v := rec.Header().Get(TimingHeader); rec.Code != http.StatusOK || v != "" {
		t.Fatalf("not asked for: status %d, %s %q; want 200 and no header", rec.Code, TimingHeader, v)
	}
}

// bareBackend admits everything with an empty Admission: no context, no
// Done. The gateway must still call it with a context and answer.
type bareBackend struct{ backend }

func (b *bareBackend) Admit(context.Context, AdmitRequest) Admission { return Admission{} }

func TestEmptyAdmissionIsCalledWithAdmitsContext(t *testing.T) {
	h := New(&bareBackend{}, Options{})
	status, out := do(t, h, "POST", "/v1/services/echo/say", `{"a":1}`, nil)
	if status != 200 || out["a"] != float64(1) {
		t.Fatalf("status %d, body %v: want 200 with the echo", status, out)
	}
}
