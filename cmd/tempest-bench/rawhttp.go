package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// timingHeader is gateway.TimingHeader: asked for on every request, it
// brings back when the node started the budget and wrote the answer. (The
// bench talks to the node over HTTP only and does not import gateway.)
const timingHeader = "Tempest-Timing"

// rawClient is the open-loop generator's HTTP/1.1 client: keep-alive
// connections from a bounded pool, one request in flight per connection,
// requests written in one write and answers parsed from a buffered reader.
// net/http's client costs about 80-100 µs of CPU per request here (a
// goroutine pair per connection, header maps, body wrappers); on the one
// CPU the generator gets, that capped it near 5000 requests/s, below three
// times the node's capacity. This one costs a fraction of that, so the
// overload runs measure the node, not the generator. It speaks only what
// the gateway answers: a status line, headers, and a Content-Length or
// chunked body.
type rawClient struct {
	addr    string
	host    string
	timeout time.Duration // per request: write and whole answer
	idle    chan *rawConn // kept-alive connections
	tokens  chan struct{} // one per open connection, at most maxConns
	dials   *atomic.Int64
	dialer  net.Dialer
}

type rawConn struct {
	c net.Conn
	r *bufio.Reader
}

func newRawClient(addr string, maxConns int, timeout time.Duration, dials *atomic.Int64) *rawClient {
	return &rawClient{
		addr: addr, host: addr, timeout: timeout,
		idle:   make(chan *rawConn, maxConns),
		tokens: make(chan struct{}, maxConns),
		dials:  dials,
		dialer: net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second},
	}
}

// errRawTimeout is a request that got no whole answer within the timeout.
type errRawTimeout struct{ err error }

func (e errRawTimeout) Error() string { return "client timeout: " + e.err.Error() }
func (e errRawTimeout) Timeout() bool { return true }

// Temporary completes net.Error.
func (e errRawTimeout) Temporary() bool { return true }

// get takes an idle connection, or opens one if fewer than maxConns are
// open, or waits for one to come back.
func (c *rawClient) get(ctx context.Context) (*rawConn, error) {
	select {
	case rc := <-c.idle:
		return rc, nil
	default:
	}
	select {
	case rc := <-c.idle:
		return rc, nil
	case c.tokens <- struct{}{}:
		return c.dial(ctx)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prefill opens connections until n are open (at most maxConns), each
// put in the idle pool, as a client expecting that much traffic keeps
// them: a run that must dial hundreds in its first second measures the
// generator's start, not the node (seen: 511 dials and a 40 ms send lag
// in the first second of a 2x run, and 1,000 answers late on their way
// back to the client).
func (c *rawClient) prefill(ctx context.Context, n int) error {
	for len(c.tokens) < min(n, cap(c.tokens)) {
		select {
		case c.tokens <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		rc, err := c.dial(ctx)
		if err != nil {
			return err
		}
		c.idle <- rc
	}
	return nil
}

// dial opens a connection for a token already taken; on failure the
// token is given back.
func (c *rawClient) dial(ctx context.Context) (*rawConn, error) {
	c.dials.Add(1)
	conn, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		<-c.tokens
		return nil, err
	}
	return &rawConn{c: conn, r: bufio.NewReaderSize(conn, 4096)}, nil
}

func (c *rawClient) discard(rc *rawConn) {
	_ = rc.c.Close()
	<-c.tokens
}

// rawAnswer is one answer of postTimed.
type rawAnswer struct {
	status  int
	body    []byte
	written time.Time // when the request was written (after waiting for a connection)
	timing  string    // the answer's Tempest-Timing header, if any
}

// post sends a POST with a JSON body and returns the status and body.
func (c *rawClient) post(ctx context.Context, path string, headers []string, body []byte) (int, []byte, error) {
	a, err := c.postTimed(ctx, path, headers, body)
	return a.status, a.body, err
}

// postTimed is post, with when the request was written and the answer's
// Tempest-Timing header.
func (c *rawClient) postTimed(ctx context.Context, path string, headers []string, body []byte) (rawAnswer, error) {
	rc, err := c.get(ctx)
	if err != nil {
		return rawAnswer{}, err
	}
	var req bytes.Buffer
	req.Grow(256 + len(body))
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, c.host, len(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.WriteString(headers[i])
		req.WriteString(": ")
		req.WriteString(headers[i+1])
		req.WriteString("\r\n")
	}
	req.WriteString("\r\n")
	req.Write(body)
	written := time.Now()
	_ = rc.c.SetDeadline(written.Add(c.timeout))
	if _, err := rc.c.Write(req.Bytes()); err != nil {
		c.discard(rc)
		return rawAnswer{written: written}, classify(err)
	}
	status, out, keep, timing, err := readResponse(rc.r)
	if err != nil {
		c.discard(rc)
		return rawAnswer{written: written}, classify(err)
	}
	if keep {
		c.idle <- rc // never blocks: at most maxConns are open
	} else {
		c.discard(rc)
	}
	return rawAnswer{status: status, body: out, written: written, timing: timing}, nil
}

func classify(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errRawTimeout{err}
	}
	return err
}

// closeIdle closes the kept-alive connections.
func (c *rawClient) closeIdle() {
	for {
		select {
		case rc := <-c.idle:
			c.discard(rc)
		default:
			return
		}
	}
}

// maxRawBody bounds an answer's body: the gateway's are small, and a bad
// length must not make the generator allocate gigabytes.
const maxRawBody = 16 << 20

// readResponse reads one HTTP/1.1 response: status, headers, body (by
// Content-Length or chunked), whether the connection may be reused, and
// the Tempest-Timing header.
func readResponse(r *bufio.Reader) (status int, body []byte, keep bool, timing string, err error) {
	line, err := readLine(r)
	if err != nil {
		return 0, nil, false, "", err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, nil, false, "", fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, "", fmt.Errorf("bad status line %q", line)
	}
	keep = line[7] == '1'
	length, chunked := -1, false
	for {
		h, err := readLine(r)
		if err != nil {
			return 0, nil, false, "", err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, false, "", fmt.Errorf("bad header %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 || length > maxRawBody {
				return 0, nil, false, "", fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte(timingHeader)):
			timing = string(value)
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case chunked:
		body, err = readChunked(r)
	case length >= 0:
		body = make([]byte, length)
		_, err = io.ReadFull(r, body)
	default: // no length: the body runs to the connection's end
		body, err = io.ReadAll(io.LimitReader(r, maxRawBody+1))
		if err == nil && len(body) > maxRawBody {
			err = fmt.Errorf("body over %d bytes", maxRawBody)
		}
		keep = false
	}
	return status, body, keep && err == nil, timing, err
}

func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
		if err != nil {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, then the blank line
				t, err := readLine(r)
				if err != nil {
					return nil, err
				}
				if len(t) == 0 {
					return body, nil
				}
			}
		}
		if uint64(len(body))+n > maxRawBody {
			return nil, fmt.Errorf("chunked body over %d bytes", maxRawBody)
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(r, body[start:]); err != nil {
			return nil, err
		}
		if crlf, err := readLine(r); err != nil || len(crlf) != 0 {
			return nil, fmt.Errorf("chunk not followed by CRLF: %v", err)
		}
	}
}

// readLine reads a CRLF- (or LF-) terminated line without its terminator.
// Lines longer than the reader's buffer are an error: no header of the
// gateway's is that long.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("header line too long")
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
