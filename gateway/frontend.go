package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// FrontEnd serves the gateway on a listener. Service calls in their
// plainest form (see parseHead) are read and answered by its own HTTP/1.1
// loop; any other request, and its connection from then on, goes to
// net/http (the http.Server given, serving New's handler).
//
// Why its own loop: under overload most requests are refused, and what a
// refusal costs in CPU decides how much is left for the requests admitted
// (ARCHITECTURE.md, "Overload: the front door"). Measured on one CPU at
// 6000 refusals/s, net/http's fixed cost per request (its request and
// response objects, header maps, a second flush, its router) was about
// half of the node's 60 µs per refusal; a loop that parses the head in
// place and writes the whole answer in one write costs about what the two
// system calls do. The loop serves only what it understands completely;
// the rest of HTTP is net/http's, so the protocol's corners (chunked
// bodies, 100-continue, pipelining into other routes, malformed heads and
// their 400s) keep net/http's behaviour.
type FrontEnd struct {
	h             *handler
	srv           *http.Server
	headerTimeout time.Duration

	mu      sync.Mutex
	ln      net.Listener
	handoff *handoffListener
	conns   map[*frontConn]struct{}
	// closing is set under mu (so setIdle and beginClose agree) and read
	// without it on every request's way out (isClosing).
	closing atomic.Bool
	wg      sync.WaitGroup

	served, handedOver atomic.Int64
}

// FrontEndStats count what the front end's loop did.
type FrontEndStats struct {
	// Served is the service calls the loop read and answered itself.
	Served int64 `json:"served"`
	// HandedOver is the connections given to net/http (with
	// Options.NetHTTPOnly: all of them).
	HandedOver int64 `json:"handed_over"`
}

// Plus is the sum of two counts (of front ends one after another).
func (s FrontEndStats) Plus(o FrontEndStats) FrontEndStats {
	return FrontEndStats{Served: s.Served + o.Served, HandedOver: s.HandedOver + o.HandedOver}
}

// Stats returns the loop's counts so far.
func (f *FrontEnd) Stats() FrontEndStats {
	return FrontEndStats{Served: f.served.Load(), HandedOver: f.handedOver.Load()}
}

// NewFrontEnd returns a front end for b; srv carries net/http's settings
// (its ReadHeaderTimeout also bounds the loop's wait for a head once its
// first bytes came) and gets New(b, o) as its handler unless it has one.
func NewFrontEnd(b Backend, o Options, srv *http.Server) *FrontEnd {
	h := &handler{b: b, o: o.normalized()}
	if srv.Handler == nil {
		srv.Handler = h.routes()
	}
	return &FrontEnd{h: h, srv: srv, headerTimeout: srv.ReadHeaderTimeout,
		conns: map[*frontConn]struct{}{}}
}

// Serve accepts connections on ln until Shutdown or Close (then it returns
// http.ErrServerClosed) or an accept error that is not temporary.
func (f *FrontEnd) Serve(ln net.Listener) error {
	hand := newHandoffListener(ln.Addr())
	f.mu.Lock()
	if f.closing.Load() || f.ln != nil {
		f.mu.Unlock()
		_ = ln.Close()
		return http.ErrServerClosed
	}
	f.ln, f.handoff = ln, hand
	f.mu.Unlock()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = f.srv.Serve(hand) // returns once hand is closed (below) or srv shut down
	}()
	defer func() {
		_ = hand.Close()
		<-served
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.isClosing() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if f.h.o.NetHTTPOnly {
			f.handedOver.Add(1)
			hand.give(c)
			continue
		}
		fc := &frontConn{c: c}
		if !f.track(fc) {
			_ = c.Close()
			return http.ErrServerClosed
		}
		go f.serveConn(fc)
	}
}

// Shutdown stops accepting, closes idle connections, lets the requests in
// flight be answered and waits for them, or until ctx is done: then it
// closes every connection and returns ctx's error without waiting for
// the calls still in the backend (as net/http's Shutdown does).
func (f *FrontEnd) Shutdown(ctx context.Context) error {
	ln := f.beginClose(false)
	if ln != nil {
		_ = ln.Close()
	}
	err := f.srv.Shutdown(ctx)
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.beginClose(true)
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// Close closes the listener and every connection at once; calls in the
// backend finish on their own (by their deadlines).
func (f *FrontEnd) Close() error {
	ln := f.beginClose(true)
	if ln != nil {
		_ = ln.Close()
	}
	return f.srv.Close()
}

// beginClose marks the front end closing and wakes its idle connections
// (all of them when hard), so their loops end.
func (f *FrontEnd) beginClose(hard bool) net.Listener {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing.Store(true)
	for fc := range f.conns {
		if hard {
			_ = fc.c.Close()
		} else if fc.idle {
			_ = fc.c.SetReadDeadline(time.Unix(1, 0))
		}
	}
	return f.ln
}

func (f *FrontEnd) isClosing() bool { return f.closing.Load() }

func (f *FrontEnd) track(fc *frontConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return false
	}
	f.conns[fc] = struct{}{}
	f.wg.Add(1)
	return true
}

func (f *FrontEnd) untrack(fc *frontConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
	f.wg.Done()
}

// setIdle marks fc waiting for a request (true) or reading one; it
// refuses to wait (false) once the front end is closing.
func (f *FrontEnd) setIdle(fc *frontConn, idle bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if idle && f.closing.Load() {
		return false
	}
	fc.idle = idle
	return true
}

// frontConn is a connection the loop serves.
type frontConn struct {
	c    net.Conn
	idle bool // guarded by FrontEnd.mu
}

// drainLimit is how much of a request body nobody read the loop reads
// and drops to keep the connection (net/http's figure); past it the
// connection is closed after the answer.
const drainLimit = 256 << 10

// serveConn is the loop of one connection: read a head, serve it, write
// the answer in one write; hand the connection to net/http at the first
// request it does not serve itself.
func (f *FrontEnd) serveConn(fc *frontConn) {
	defer f.untrack(fc)
	c := fc.c
	buf := make([]byte, maxFastHead)
	out := make([]byte, 0, 512)
	var scratch []byte // an error answer's body, before its head is written
	names := make(nameCache)
	r, w := 0, 0
	headDeadline := false
	clock := newRecvClock(c) // nil: not TCP, the budget starts at the head
	for {
		h, n, v := parseHead(buf[r:w])
		switch v {
		case headIncomplete:
			if r > 0 {
				w = copy(buf, buf[r:w])
				r = 0
			}
			idle := w == 0
			if idle {
				if !f.setIdle(fc, true) {
					_ = c.Close()
					return
				}
			} else if !headDeadline && f.headerTimeout > 0 {
				_ = c.SetReadDeadline(time.Now().Add(f.headerTimeout))
				headDeadline = true
			}
			m, err := c.Read(buf[w:])
			if idle {
				f.setIdle(fc, false)
			}
			w += m
			if err != nil && m == 0 {
				_ = c.Close()
				return
			}
			continue
		case headHandOver:
			if headDeadline {
				_ = c.SetReadDeadline(time.Time{})
			}
			f.handOver(c, buf[r:w])
			return
		}
		if headDeadline {
			_ = c.SetReadDeadline(time.Time{})
			headDeadline = false
		}
		headersAt := time.Now()
		head := callHead{service: names.intern(h.service), method: names.intern(h.method), headers: headersAt, arrived: headersAt}
		if h.timeout != nil {
			if ms, ok := parseMillis(h.timeout); ok {
				head.timeoutMs = ms
			} else {
				head.timeout = string(h.timeout) // bad, or a form left to strconv
			}
		}
		if clock != nil {
			if ago, ok := clock.ago(); ok && ago > 0 {
				head.arrived = headersAt.Add(-ago)
			}
		}
		timing := h.timing
		r += n
		unread := h.contentLength // body bytes still to consume
		broken := false           // the body could not be read: close
		rep, done := f.h.serveCall(context.Background(), head, func() ([]byte, error) {
			if unread > f.h.o.MaxBodyBytes {
				return nil, &http.MaxBytesError{Limit: f.h.o.MaxBodyBytes}
			}
			body := make([]byte, unread)
			k := copy(body, buf[r:w])
			r += k
			if _, err := io.ReadFull(c, body[k:]); err != nil {
				broken = true
				return nil, err
			}
			unread = 0
			return body, nil
		})
		// An unread body is read and dropped after the answer (so a
		// refusal does not wait for it), up to drainLimit.
		closeAfter := broken || unread > drainLimit || rep.status == http.StatusRequestEntityTooLarge
		answered := time.Now()
		out, scratch = appendAnswer(out[:0], scratch, rep, timing, head, answered, closeAfter)
		f.served.Add(1) // before the write: a client that has the answer sees it counted
		_, err := c.Write(out)
		f.h.finish(rep, done, answered)
		if err != nil {
			_ = c.Close()
			return
		}
		if closeAfter {
			closeUnread(c)
			return
		}
		if unread > 0 {
			k := min(unread, int64(w-r))
			r += int(k)
			unread -= k
			if unread > 0 {
				if _, err := io.CopyN(io.Discard, c, unread); err != nil {
					_ = c.Close()
					return
				}
			}
		}
		if f.isClosing() {
			_ = c.Close()
			return
		}
	}
}

// rstAvoidance is how long a connection closed with a request body
// unread stays half open (net/http's figure): closing a socket with
// unread input sends a reset, and a client still writing the body would
// get the reset instead of the answer written before it.
const rstAvoidance = 500 * time.Millisecond

// closeUnread closes c after its answer when input may be left unread:
// our side first (the client reads the answer, then end of stream),
// then the whole socket after rstAvoidance.
func closeUnread(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		time.Sleep(rstAvoidance)
	}
	_ = c.Close()
}

// handOver gives c to net/http with the bytes already read from it.
func (f *FrontEnd) handOver(c net.Conn, read []byte) {
	f.mu.Lock()
	hand := f.handoff
	f.mu.Unlock()
	f.handedOver.Add(1)
	hand.give(&prefixConn{Conn: c, pre: append([]byte(nil), read...)})
}

// appendAnswer appends rep as an HTTP/1.1 response: what net/http would
// write for it, in one piece. An error answer's body is built in scratch
// (returned for reuse) to know its length before the head is written.
func appendAnswer(b, scratch []byte, rep reply, timing bool, head callHead, now time.Time, closeAfter bool) ([]byte, []byte) {
	body := rep.body
	if rep.errCode != "" {
		scratch = appendErrorBody(scratch[:0], rep.errCode, rep.errMsg)
		body = scratch
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(rep.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(rep.status)...)
	b = append(b, "\r\nContent-Type: application/json\r\n"...)
	if rep.retryAfter > 0 {
		b = append(b, "Retry-After: "...)
		b = strconv.AppendInt(b, retryAfterSecondsOf(rep.retryAfter), 10)
		b = append(b, "\r\n"+RetryAfterMsHeader+": "...)
		b = strconv.AppendInt(b, retryAfterMsOf(rep.retryAfter), 10)
		b = append(b, "\r\n"...)
	}
	if timing {
		b = append(b, TimingHeader+": "...)
		b = strconv.AppendInt(b, head.arrived.UnixNano(), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, now.UnixNano(), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, head.headers.UnixNano(), 10)
		b = append(b, "\r\n"...)
	}
	if closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "Date: "...)
	b = append(b, httpDate(now)...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...), scratch
}

// nameCache interns one connection's service and method names: a map
// lookup by a byte slice's string makes no string, so a name seen before
// costs no allocation. Bounded: names past the bound are made each time.
type nameCache map[string]string

const nameCacheMax = 64

func (m nameCache) intern(b []byte) string {
	if s, ok := m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(m) < nameCacheMax {
		m[s] = s
	}
	return s
}

// dateLine caches the Date header's value for one second.
type dateLine struct {
	sec int64
	s   string
}

var lastDate atomic.Pointer[dateLine]

func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &dateLine{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d.s
}

// handoffListener is the listener net/http serves: connections the loop
// hands over.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give hands c to net/http, or closes it when net/http has stopped.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// prefixConn is a connection whose first bytes were already read: Read
// returns them first.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// NetConn is the connection underneath (what requestArrival asks).
func (p *prefixConn) NetConn() net.Conn { return p.Conn }

// CloseWrite half-closes a TCP connection: net/http does before it closes
// one with a request body unread (see rstAvoidance), and the embedded
// net.Conn would hide the method.
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}
