package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

// syncBackend serializes the test backend: the front end's loop and
// net/http call it from their own goroutines.
type syncBackend struct {
	mu sync.Mutex
	b  *backend
	// hold, when set, makes Call wait for it to be closed.
	hold chan struct{}
}

func (s *syncBackend) Call(ctx context.Context, service, method string, body []byte, timeout time.Duration) ([]byte, error) {
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Call(ctx, service, method, body, timeout)
}
func (s *syncBackend) Admit(ctx context.Context, req AdmitRequest) Admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	adm := s.b.Admit(ctx, req)
	if done := adm.Done; done != nil {
		adm.Done = func(at time.Time) { s.mu.Lock(); done(at); s.mu.Unlock() }
	}
	return adm
}
func (s *syncBackend) ObserveRefusal(took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.ObserveRefusal(took)
}
func (s *syncBackend) Status() any      { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Status() }
func (s *syncBackend) Actors() []string { return s.b.Actors() }
func (s *syncBackend) Kill(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Kill(path)
}

// startFrontEnd serves b on a loopback port; the returned stop shuts it
// down (also run at cleanup).
func startFrontEnd(t *testing.T, b Backend, o Options, headerTimeout time.Duration) (string, *FrontEnd, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fe := NewFrontEnd(b, o, &http.Server{ReadHeaderTimeout: headerTimeout, ConnContext: ConnContext})
	served := make(chan error, 1)
	go func() { served <- fe.Serve(ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := fe.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), fe, stop
}

// answer is what a client sees of a response.
type answer struct {
	status                  int
	contentType, retryAfter string
	retryAfterMs            string
	timing, close, hasDate  bool
	body                    string
}

// exchange writes raw on a new connection and reads n responses.
func exchange(t *testing.T, addr, raw string, n int) []answer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// Written while the answers are read: a server may answer (and close)
	// before it has read all of a long request, as for a body too large.
	go func() { _, _ = io.WriteString(c, raw) }()
	br := bufio.NewReader(c)
	var out []answer
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading response %d of %q: %v", len(out)+1, raw, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, answer{
			status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
			retryAfter: resp.Header.Get("Retry-After"), retryAfterMs: resp.Header.Get(RetryAfterMsHeader),
			timing: resp.Header.Get(TimingHeader) != "", close: resp.Close, hasDate: resp.Header.Get("Date") != "",
			body: string(body),
		})
	}
	return out
}

const h11 = " HTTP/1.1\r\nHost: t\r\n"

// TestFrontEndAnswersAsNetHTTP: every request, served by the front end's
// own loop or handed to net/http, gets the answer net/http alone gives it
// (the reference: Options.NetHTTPOnly), and the one the contract says.
func TestFrontEndAnswersAsNetHTTP(t *testing.T) {
	o := Options{MaxBodyBytes: 64}
	fast, fastFE, _ := startFrontEnd(t, &syncBackend{b: &backend{}}, o, time.Second)
	o.NetHTTPOnly = true
	ref, _, _ := startFrontEnd(t, &syncBackend{b: &backend{}}, o, time.Second)

	call := func(method, extra, body string) string {
		return "POST /v1/services/echo/" + method + h11 + extra + "Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	}
	big := strings.Repeat("x", 300<<10)
	cases := []struct {
		name     string
		raw      string
		statuses []int
		handled  bool // by the loop (else handed over)
	}{
		{"ok", call("say", "", `{"a":1}`), []int{200}, true},
		{"no body", "POST /v1/services/echo/say" + h11 + "\r\n", []int{200}, true},
		{"bad json", call("say", "", `{"a":`), []int{400}, true},
		{"too large", call("say", "", `{"a":"`+strings.Repeat("x", 100)+`"}`), []int{413}, true},
		{"unknown service", "POST /v1/services/nope/say" + h11 + "Content-Length: 2\r\n\r\n{}", []int{404}, true},
		{"unknown method", call("nope", "", `{}`), []int{404}, true},
		{"unmeetable", call("slow", "", `{}`), []int{503}, true},
		{"plain error", call("boom", "", `{}`), []int{500}, true},
		{"wrapped refusal from Call", call("busy", "", `{}`), []int{503}, true},
		{"timeout with a sign", call("say", TimeoutHeader+": +250\r\n", `{}`), []int{200}, true},
		{"zero timeout", call("say", TimeoutHeader+": 000\r\n", `{}`), []int{400}, true},
		{"huge timeout", call("say", TimeoutHeader+": 99999999999999999999\r\n", `{}`), []int{400}, true},
		{"largest plain timeout", call("say", TimeoutHeader+": 999999999999999999\r\n", `{}`), []int{200}, true},
		{"bad timeout", call("say", TimeoutHeader+": soon\r\n", `{}`), []int{400}, true},
		{"timing", call("say", TimingHeader+": 1\r\n", `{}`), []int{200}, true},
		{"refused, body unread", call("full", "", `{not json`), []int{503}, true},
		{"refused, then the next request", call("full", "", `{not json`) + call("say", "", `{"b":2}`), []int{503, 200}, true},
		{"refused, body too large to drain", call("full", "", big), []int{503}, true},
		{"too large, body still coming", call("say", "", strings.Repeat("y", 4<<20)), []int{413}, true},
		{"keep-alive", call("say", "Connection: keep-alive\r\n", `{}`), []int{200}, true},
		{"pipelined into other routes", call("say", "", `{}`) + "GET /v1/status" + h11 + "\r\n" + call("say", "", `{"c":3}`), []int{200, 200, 200}, true},
		{"status", "GET /v1/status" + h11 + "\r\n", []int{200}, false},
		{"wrong verb", "GET /v1/services/echo/say" + h11 + "\r\n", []int{405}, false},
		{"escaped name", "POST /v1/services/ec%68o/say" + h11 + "Content-Length: 2\r\n\r\n{}", []int{200}, false},
		{"query", "POST /v1/services/echo/say?x=1" + h11 + "Content-Length: 2\r\n\r\n{}", []int{200}, false},
		{"chunked", "POST /v1/services/echo/say" + h11 + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", []int{200}, false},
		{"connection close", call("say", "Connection: close\r\n", `{}`), []int{200}, false},
		{"HTTP/1.0", "POST /v1/services/echo/say HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", []int{200}, false},
		{"no host", "POST /v1/services/echo/say HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", []int{400}, false},
		{"two lengths", "POST /v1/services/echo/say" + h11 + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", []int{400}, false},
		{"bad header", "POST /v1/services/echo/say" + h11 + "Bad Header: x\r\n\r\n", []int{400}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fastFE.Stats()
			got := exchange(t, fast, c.raw, len(c.statuses))
			want := exchange(t, ref, c.raw, len(c.statuses))
			after := fastFE.Stats()
			for i := range got {
				if got[i].status != c.statuses[i] {
					t.Fatalf("answer %d: status %d, want %d (%s)", i+1, got[i].status, c.statuses[i], got[i].body)
				}
				if got[i] != want[i] {
					t.Fatalf("answer %d differs from net/http's:\n loop     %+v\n net/http %+v", i+1, got[i], want[i])
				}
				if c.handled && !got[i].hasDate { // net/http's own 400s have none
					t.Fatalf("answer %d has no Date", i+1)
				}
			}
			if served := after.Served - before.Served; (served > 0) != c.handled {
				t.Fatalf("served by the loop: %d requests, want the loop to serve it: %v", served, c.handled)
			}
		})
	}
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// TestFrontEndReadsHeadsAndBodiesInPieces: a head and a body that come in
// several writes are read whole; a head that does not complete within
// the header timeout gets the connection closed.
func TestFrontEndReadsHeadsAndBodiesInPieces(t *testing.T) {
	addr, fe, _ := startFrontEnd(t, &syncBackend{b: &backend{}}, Options{}, 200*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, piece := range []string{"POST /v1/services/ec", "ho/say HTTP/1.1\r\nHo", "st: t\r\nContent-Length: 8\r\n", "\r\n{\"a\"", ":12}"} {
		if _, err := io.WriteString(c, piece); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"a":12}` {
		t.Fatalf("pieces: %d %q, want 200 {\"a\":12}", resp.StatusCode, body)
	}
	if fe.Stats().Served != 1 {
		t.Fatalf("loop served %d, want 1", fe.Stats().Served)
	}
	// Half a head, then silence past the header timeout: closed.
	if _, err := io.WriteString(c, "POST /v1/services/echo/say HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("a head left unfinished past the header timeout got an answer; want the connection closed")
	}
}

// TestFrontEndShutdown: Shutdown closes idle connections at once, lets a
// request in flight be answered, and leaves no goroutine behind.
func TestFrontEndShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sb := &syncBackend{b: &backend{}, hold: make(chan struct{})}
	addr, _, stop := startFrontEnd(t, sb, Options{}, time.Second)

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// A request on the idle connection first, so it is the loop's.
	sb.mu.Lock()
	sb.hold = nil
	sb.mu.Unlock()
	if _, err := io.WriteString(idle, "POST /v1/services/echo/say"+h11+"\r\n"); err != nil {
		t.Fatal(err)
	}
	idleR := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	} else {
		_, _ = io.ReadAll(resp.Body)
	}
	hold := make(chan struct{})
	var release sync.Once
	defer release.Do(func() { close(hold) })
	sb.mu.Lock()
	sb.hold = hold
	sb.mu.Unlock()

	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := io.WriteString(busy, "POST /v1/services/echo/say"+h11+"Content-Length: 7\r\n\r\n{\"a\":1}"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the request reaches Call and waits there

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idleR.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection during shutdown: %v, want EOF (closed)", err)
	}
	select {
	case <-stopped:
		t.Fatal("shutdown returned with a request in flight")
	case <-time.After(50 * time.Millisecond):
	}
	release.Do(func() { close(hold) })
	_ = busy.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request in flight at shutdown: %v %v, want 200", resp, err)
	}
	<-stopped
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uo\te`, "ctl\x00\x1f\n\r\t", "ünï €", "bad\xffutf8"} {
		b := errorBody("c", s)
		var v struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if v.Error.Message != want || v.Error.Code != "c" {
			t.Fatalf("%q: decoded %q, want %q", s, v.Error.Message, want)
		}
	}
}

func FuzzErrorBody(f *testing.F) {
	f.Add("code", "message")
	f.Add("c", "ctl\x00\"\\\xff")
	f.Fuzz(func(t *testing.T, code, msg string) {
		var v struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(errorBody(code, msg), &v); err != nil {
			t.Fatalf("not JSON: %v", err)
		}
		if utf8.ValidString(msg) && v.Error.Message != msg || utf8.ValidString(code) && v.Error.Code != code {
			t.Fatalf("round trip: %q %q, want %q %q", v.Error.Code, v.Error.Message, code, msg)
		}
	})
}

// FuzzParseHead: a head the loop serves is one net/http reads the same
// way (method, path, length, the headers the loop uses), so serving it
// without net/http changes nothing; incomplete means no head end yet.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"POST /v1/services/echo/say HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/services/echo/say HTTP/1.1\r\nHost: t\r\nTempest-Timeout-Ms: 30\r\nTempest-Timing: 1\r\nConnection: keep-alive\r\n\r\n",
		"POST /v1/services/a/b HTTP/1.1\r\nhost:x\r\ncontent-length:  7 \r\n\r\n",
		"POST /v1/services/echo/say HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /v1/status HTTP/1.1\r\nHost: t\r\n\r\n",
		"POST /v1/services/echo/say HTTP/1.1\r\nHost: t\r\n",
		"POST /v1/services/echo/say HTTP/1.1\r\nHost: t\r\n X: folded\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, v := parseHead(b)
		switch v {
		case headIncomplete:
			if bytes.Contains(b, headEnd) || len(b) >= maxFastHead {
				t.Fatalf("incomplete, but the head is there or too long: %q", b)
			}
			return
		case headHandOver:
			return
		}
		if n > len(b) || !bytes.HasSuffix(b[:n], headEnd) {
			t.Fatalf("served head of %d bytes does not end the head: %q", n, b)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:n])))
		if err != nil {
			t.Fatalf("the loop serves %q, net/http rejects it: %v", b[:n], err)
		}
		if req.Method != http.MethodPost || req.URL.Path != "/v1/services/"+string(h.service)+"/"+string(h.method) ||
			req.URL.RawQuery != "" || req.URL.RawPath != "" {
			t.Fatalf("%q: loop routes to %s/%s, net/http reads %s %s", b[:n], h.service, h.method, req.Method, req.URL)
		}
		if req.ContentLength != h.contentLength || len(req.TransferEncoding) > 0 || req.Close || !req.ProtoAtLeast(1, 1) {
			t.Fatalf("%q: net/http reads length %d, TE %v, close %v, proto %s; loop: length %d",
				b[:n], req.ContentLength, req.TransferEncoding, req.Close, req.Proto, h.contentLength)
		}
		if got := req.Header.Get(TimeoutHeader); got != string(h.timeout) {
			t.Fatalf("%q: timeout %q, net/http reads %q", b[:n], h.timeout, got)
		}
		if _, ok := req.Header[TimingHeader]; ok != h.timing {
			t.Fatalf("%q: timing %v, net/http %v", b[:n], h.timing, ok)
		}
		if req.Header.Get("Expect") != "" {
			t.Fatalf("%q: served with Expect", b[:n])
		}
	})
}

// TestTooLargeBodyStillComing: a client still writing a body past the
// limit when the 413 is written gets the answer, not a reset (the
// connection closes half first, as net/http's does).
func TestTooLargeBodyStillComing(t *testing.T) {
	// The loop's own path, net/http's (NetHTTPOnly), and net/http's on a
	// connection the loop handed over (after a status request).
	for _, way := range []struct {
		netHTTP, handedOver bool
	}{{false, false}, {true, false}, {false, true}} {
		netHTTP := way.netHTTP
		addr, _, _ := startFrontEnd(t, &syncBackend{b: &backend{}}, Options{MaxBodyBytes: 64, NetHTTPOnly: netHTTP}, time.Second)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		if way.handedOver {
			if _, err := io.WriteString(c, "GET /v1/status"+h11+"\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status first: %v %v", resp, err)
			}
			_, _ = io.ReadAll(resp.Body)
		}
		chunk := strings.Repeat("y", 16<<10)
		if _, err := io.WriteString(c, "POST /v1/services/echo/say"+h11+"Content-Length: 1000000\r\n\r\n"+chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the 413 is written and the server closes
		if _, err := io.WriteString(c, chunk); err != nil {
			t.Fatalf("%+v: writing the rest of the body after the 413: %v, want the connection still half open", way, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
			t.Fatalf("%+v: %v %v, want 413 with Connection: close", way, resp, err)
		}
		_, _ = io.ReadAll(resp.Body)
		// Half closed at once: the client sees the end of the stream now,
		// not when the socket is closed after rstAvoidance.
		start := time.Now()
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) || time.Since(start) > rstAvoidance/2 {
			t.Fatalf("%+v: after the 413, %v after %v; want EOF at once (the server's side half closed)", way, err, time.Since(start))
		}
	}
}

// refusingBackend refuses every call at admission, as a node at its limit
// does: with a refusal made beforehand.
type refusingBackend struct {
	backend
	observed atomic.Int64
}

func (r *refusingBackend) Admit(context.Context, AdmitRequest) Admission {
	return Admission{Refused: fullErr, RetryAfter: 1500 * time.Millisecond}
}
func (r *refusingBackend) ObserveRefusal(time.Duration) { r.observed.Add(1) }

// Under overload most requests are refused, and an allocation on their
// path is where a goroutine is made to assist the garbage collector (a
// stall of milliseconds with the CPU saturated). The loop's refusal, from
// the head read to the answer written, must allocate nothing: names are
// interned per connection, the timeout is parsed from the bytes, the
// error's body is appended to the connection's buffer.
func TestFrontEndRefusalDoesNotAllocate(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := &refusingBackend{}
	addr, fe, stop := startFrontEnd(t, b, Options{}, time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	req := []byte("POST /v1/services/echo/full HTTP/1.1\r\nHost: x\r\n" + TimeoutHeader + ": 30\r\nContent-Length: 2\r\n\r\n{}")
	buf := make([]byte, 1024)
	var last []byte
	once := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], []byte("}}\n")) {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
		last = buf[:n]
	}
	allocs := testing.AllocsPerRun(500, once)
	if !bytes.HasPrefix(last, []byte("HTTP/1.1 503 ")) || !bytes.Contains(last, []byte("Retry-After: 2\r\n")) {
		t.Fatalf("answer %q, want a 503 with Retry-After", last)
	}
	if got := b.observed.Load(); got != 501 {
		t.Fatalf("%d refusals observed, want 501", got)
	}
	if got := fe.Stats().Served; got != 501 {
		t.Fatalf("the loop served %d, want 501", got)
	}
	_ = c.Close()
	stop()
	if allocs > 0 {
		t.Fatalf("a refusal made %.2f allocations (client and server), want 0", allocs)
	}
}
