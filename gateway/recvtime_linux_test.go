//go:build linux

package gateway

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestArrivalIsWhenTheBytesCame: a request whose bytes waited in the socket
// before the gateway read them gets a budget that started when they came,
// not when they were read (to within a kernel tick: at most 10 ms at
// 100 Hz).
func TestArrivalIsWhenTheBytesCame(t *testing.T) {
	client, server := tcpPair(t)

	const waited, tick = 60 * time.Millisecond, 10 * time.Millisecond
	if _, err := client.Write([]byte("POST / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(waited) // the bytes wait, unread
	headers := time.Now()
	got := headers.Sub(requestArrival(ConnContext(context.Background(), server), headers))
	if got < waited-tick || got > waited+tick+50*time.Millisecond {
		t.Fatalf("bytes that waited %v unread: arrival %v before the headers, want about %v", waited, got, waited)
	}

	// Read, answered: the next request's arrival is its own.
	buf := make([]byte, 64)
	if _, err := server.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Read(buf); err != nil {
		t.Fatal(err)
	}
	headers = time.Now()
	if got := headers.Sub(requestArrival(ConnContext(context.Background(), server), headers)); got > tick {
		t.Fatalf("bytes read at once: arrival %v before the headers, want at most a tick (%v)", got, tick)
	}
	// Without a connection (or not TCP), arrival is the headers.
	if a := requestArrival(context.Background(), headers); !a.Equal(headers) {
		t.Fatalf("no connection: arrival %v, want the headers' %v", a, headers)
	}
}

// TestRefusalTimeIsTheNodesOwn: a request whose bytes waited unread is
// admitted (or refused) with its arrival from the kernel, but the refusal
// time the backend observes is the node's own, from the headers read.
func TestRefusalTimeIsTheNodesOwn(t *testing.T) {
	client, server := tcpPair(t)
	if _, err := client.Write([]byte("POST / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	const waited = 60 * time.Millisecond
	time.Sleep(waited)

	b := &backend{}
	req := httptest.NewRequest(http.MethodPost, "/v1/services/echo/full", strings.NewReader(`{}`))
	req = req.WithContext(ConnContext(req.Context(), server))
	start := time.Now()
	rec := httptest.NewRecorder()
	New(b, DefaultOptions()).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want the 503 refusal", rec.Code)
	}
	if ago := start.Sub(b.admitSaw); ago < waited-10*time.Millisecond {
		t.Fatalf("Admit saw an arrival %v before the request was handled, want about %v (the bytes' wait)", ago, waited)
	}
	if len(b.refusals) != 1 || b.refusals[0] >= waited/2 {
		t.Fatalf("observed refusal times %v, want one, of the node's own time (not the %v the bytes waited)", b.refusals, waited)
	}
}

// tcpPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}
