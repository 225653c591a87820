package gateway

import (
	"bytes"
)

// The front end's own HTTP/1.1 loop (FrontEnd) serves only service calls
// in their plainest form; parseHead sorts a request head into those and
// everything else, which net/http serves with its full handling of the
// protocol (and its own errors for what is malformed). Being strict here is
// safe: what parseHead does not fully understand is handed over, never
// refused.

// maxFastHead is the longest request head the loop reads itself; a longer
// one is handed over (net/http allows heads up to 1 MiB).
const maxFastHead = 4096

// headVerdict is what to do with the bytes at the start of a connection's
// buffer.
type headVerdict int

const (
	headIncomplete headVerdict = iota // read more
	headServe                         // a service call the loop serves
	headHandOver                      // anything else: net/http's
)

// fastHead is a service call's head as parseHead found it; its slices
// point into the buffer parsed.
type fastHead struct {
	service, method []byte
	contentLength   int64
	timeout         []byte // TimeoutHeader's value (the first), nil if absent
	timing          bool   // TimingHeader present
}

var (
	callPrefix = []byte("POST /v1/services/")
	headEnd    = []byte("\r\n\r\n")
	httpSuffix = []byte(" HTTP/1.1")
)

// parseHead looks at b, the unread bytes of a connection, and says whether
// they start with a complete head of a service call the loop serves
// (headServe, with the head and its length n including the blank line),
// with something else (headHandOver), or cannot tell yet
// (headIncomplete). Served: POST /v1/services/{service}/{method} HTTP/1.1
// with names of [A-Za-z0-9._~-] and no query; one Host; at most one
// Content-Length (digits); no Transfer-Encoding, Expect, Upgrade, or
// Connection other than keep-alive; every header line well formed
// (token, colon, value without control characters, CRLF endings).
func parseHead(b []byte) (h fastHead, n int, v headVerdict) {
	if k := min(len(b), len(callPrefix)); !bytes.Equal(b[:k], callPrefix[:k]) {
		return h, 0, headHandOver
	}
	end := bytes.Index(b, headEnd)
	if end < 0 {
		if len(b) >= maxFastHead {
			return h, 0, headHandOver
		}
		return h, 0, headIncomplete
	}
	if end+len(headEnd) > maxFastHead {
		return h, 0, headHandOver
	}
	n = end + len(headEnd)
	head := b[:end+2] // every line with its CRLF
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasSuffix(line, httpSuffix) {
		return h, 0, headHandOver
	}
	target := line[len(callPrefix) : len(line)-len(httpSuffix)]
	svc, meth, ok := bytes.Cut(target, []byte("/"))
	if !ok || !isName(svc) || !isName(meth) {
		return h, 0, headHandOver
	}
	h.service, h.method = svc, meth
	hosts, lengths := 0, 0
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return h, 0, headHandOver
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !isFieldValue(value) {
			return h, 0, headHandOver
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			lengths++
			cl, ok := parseLength(value)
			if !ok || lengths > 1 {
				return h, 0, headHandOver
			}
			h.contentLength = cl
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
			if !isHost(value) {
				return h, 0, headHandOver
			}
		case bytes.EqualFold(name, []byte(TimeoutHeader)):
			if h.timeout == nil {
				h.timeout = value[:len(value):len(value)]
			}
		case bytes.EqualFold(name, []byte(TimingHeader)):
			h.timing = true
		case bytes.EqualFold(name, []byte("Connection")):
			if !bytes.EqualFold(value, []byte("keep-alive")) {
				return h, 0, headHandOver
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")),
			bytes.EqualFold(name, []byte("Expect")),
			bytes.EqualFold(name, []byte("Upgrade")):
			return h, 0, headHandOver
		}
	}
	if hosts != 1 {
		return h, 0, headHandOver
	}
	return h, n, headServe
}

// isName: a service or method name the loop routes itself, without
// escapes or anything net/http's router might read differently.
func isName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return !bytes.Equal(b, []byte(".")) && !bytes.Equal(b, []byte(".."))
}

// isToken: an RFC 9110 token (a header name).
func isToken(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0) {
			return false
		}
	}
	return len(b) > 0
}

// isFieldValue: no control characters but tab (what net/http accepts).
func isFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isHost: a host[:port] of plain characters (anything else, net/http
// judges).
func isHost(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// parseLength: 1 to 15 decimal digits (a length past a petabyte is not a
// service call's; net/http may judge it).
func parseLength(b []byte) (int64, bool) { return parseDigits(b, 15) }

// parseMillis reads a timeout of plain decimal digits (at most 18: no
// overflow), above 0, without making a string of it; ok false leaves every
// other form to strconv.ParseInt and its error.
func parseMillis(b []byte) (int64, bool) {
	v, ok := parseDigits(b, 18)
	return v, ok && v > 0
}

// parseDigits reads 1 to maxDigits decimal digits and nothing else.
func parseDigits(b []byte, maxDigits int) (int64, bool) {
	if len(b) == 0 || len(b) > maxDigits {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
