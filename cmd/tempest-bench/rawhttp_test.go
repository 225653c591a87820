package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRawClientAgainstNetHTTP(t *testing.T) {
	var inFlight, most atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Tempest-Timeout-Ms") != "30" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "headers", 400)
			return
		}
		b := make([]byte, 64)
		n, _ := r.Body.Read(b)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"echo":` + string(b[:n]) + `}`))
	})
	mux.HandleFunc("/refuse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(503)
		_, _ = w.Write([]byte(`{"error":{"code":"overloaded"}}`))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("abc"))
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("defg"))
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte("bye"))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		_, _ = w.Write([]byte("late"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var dials atomic.Int64
	c := newRawClient(addr, 4, time.Second, &dials)
	defer c.closeIdle()
	ctx := context.Background()
	hdr := []string{"Tempest-Timeout-Ms", "30"}

	for i := range 5 {
		st, body, err := c.post(ctx, "/ok", hdr, []byte(`{"i":1}`))
		if err != nil || st != 200 || string(body) != `{"echo":{"i":1}}` {
			t.Fatalf("request %d: %d %q %v", i, st, body, err)
		}
	}
	if got := dials.Load(); got != 1 {
		t.Fatalf("5 sequential requests dialed %d connections, want 1 (keep-alive)", got)
	}
	if st, body, err := c.post(ctx, "/refuse", hdr, nil); err != nil || st != 503 || !strings.Contains(string(body), "overloaded") {
		t.Fatalf("503: %d %q %v", st, body, err)
	}
	if st, body, err := c.post(ctx, "/chunked", hdr, nil); err != nil || st != 200 || string(body) != "abcdefg" {
		t.Fatalf("chunked: %d %q %v", st, body, err)
	}
	d0 := dials.Load()
	if st, body, err := c.post(ctx, "/close", hdr, nil); err != nil || st != 200 || string(body) != "bye" {
		t.Fatalf("close: %d %q %v", st, body, err)
	}
	if _, _, err := c.post(ctx, "/ok", hdr, []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if dials.Load() != d0+1 {
		t.Fatalf("after Connection: close, dials %d, want a new one (%d)", dials.Load(), d0+1)
	}

	// At most maxConns connections: 12 concurrent slow requests over 4.
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, _, err := c.post(ctx, "/slow", hdr, nil); err != nil || st != 200 {
				t.Errorf("slow: %d %v", st, err)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > 4 {
		t.Fatalf("%d requests in flight at once over a pool of 4", m)
	}

	// A timeout is a net.Error with Timeout() true, and frees its slot.
	short := newRawClient(addr, 1, 10*time.Millisecond, &dials)
	_, _, err := short.post(ctx, "/slow", hdr, nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("slow answer past the timeout: %v, want a timeout", err)
	}
	short.timeout = time.Second
	if st, _, err := short.post(ctx, "/ok", hdr, []byte(`2`)); err != nil || st != 200 {
		t.Fatalf("after a timeout the pool still serves: %d %v", st, err)
	}
	short.closeIdle()
}

func TestReadResponseRejectsGarbage(t *testing.T) {
	for _, raw := range []string{
		"garbage\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffff\r\n",
	} {
		if _, _, _, _, err := readResponse(bufio.NewReader(strings.NewReader(raw))); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
}

func TestReadResponseTiming(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\ntempest-timing: 1,3,2\r\nContent-Length: 2\r\n\r\n{}"
	st, body, keep, timing, err := readResponse(bufio.NewReader(strings.NewReader(raw)))
	if err != nil || st != 200 || string(body) != "{}" || !keep || timing != "1,3,2" {
		t.Fatalf("got %d %q keep=%v timing=%q %v", st, body, keep, timing, err)
	}
}

// FuzzReadResponse: any bytes from the node give a response or an error,
// never a panic or a body longer than what was read.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nbody"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTempest-Timing: 1,2,3\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, body, _, _, err := readResponse(bufio.NewReader(strings.NewReader(string(raw))))
		if err == nil && len(body) > len(raw) {
			t.Fatalf("body of %d bytes from %d bytes of input", len(body), len(raw))
		}
	})
}

// TestPrefill: prefill opens the connections asked for (no more than the
// pool's cap), and the requests that follow use them without dialing.
func TestPrefill(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	var dials atomic.Int64
	c := newRawClient(strings.TrimPrefix(srv.URL, "http://"), 6, time.Second, &dials)
	defer c.closeIdle()
	ctx := context.Background()
	if err := c.prefill(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if got := dials.Load(); got != 4 {
		t.Fatalf("prefill 4: %d dials", got)
	}
	for range 8 {
		if st, _, err := c.post(ctx, "/", nil, nil); err != nil || st != 200 {
			t.Fatalf("%d %v", st, err)
		}
	}
	if got := dials.Load(); got != 4 {
		t.Fatalf("requests after prefill dialed: %d dials, want still 4", got)
	}
	if err := c.prefill(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if got := dials.Load(); got != 6 {
		t.Fatalf("prefill past the cap of 6: %d dials, want 6", got)
	}
}
