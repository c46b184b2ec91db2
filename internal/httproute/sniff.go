package httproute

import (
	"bufio"
	"fmt"
)

// Protocol is what Sniff found at the start of a connection.
type Protocol int

const (
	// NotHTTP: the first bytes are neither an HTTP/1.x request line nor the HTTP/2 preface.
	NotHTTP Protocol = iota
	// HTTP1: the connection starts with an HTTP/1.x request line.
	HTTP1
	// HTTP2: the connection starts with the HTTP/2 client preface (h2c with prior knowledge).
	HTTP2
)

func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "HTTP/1.x"
	case HTTP2:
		return "HTTP/2"
	default:
		return "not HTTP"
	}
}

// http2Preface is the client connection preface of RFC 9113 section 3.4.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Sniff classifies a connection by its first bytes, peeking at them without consuming them. It
// waits for one more byte only while the bytes so far could still begin an HTTP/1.x request line
// ("METHOD target HTTP/1.x" and a line end) or the HTTP/2 preface, so it returns NotHTTP as soon
// as they cannot, and HTTP1 as soon as the request line is complete. A request line longer than
// br's buffer counts as HTTP1 if the buffer ends inside the request target. An error (with NotHTTP) means the
// connection ended or failed before the bytes said which protocol it is.
func Sniff(br *bufio.Reader) (Protocol, error) {
	var line requestLineChecker
	maybePreface := true
	for n := 1; ; n++ {
		if n > br.Size() {
			// A long target is plausible, a method that fills the buffer is not.
			if line.state == lineBad || line.state == lineMethod {
				return NotHTTP, nil
			}
			return HTTP1, nil
		}
		b, err := br.Peek(n)
		if err != nil {
			return NotHTTP, fmt.Errorf("sniff protocol after %d bytes: %w", len(b), err)
		}
		c := b[n-1]
		maybePreface = maybePreface && n <= len(http2Preface) && c == http2Preface[n-1]
		if maybePreface && n == len(http2Preface) {
			return HTTP2, nil
		}
		line.feed(c)
		switch {
		case line.state == lineDone:
			return HTTP1, nil
		case line.state == lineBad && !maybePreface:
			return NotHTTP, nil
		}
	}
}

// Request line checker states, in the order the parts of a request line come.
const (
	lineMethod = iota
	lineTargetStart
	lineTarget
	lineVersion
	lineEnd
	lineLF
	lineDone
	lineBad
)

// requestLineChecker checks, one byte at a time, that bytes can be the start of an HTTP/1.x
// request line: method token, SP, request target, SP, "HTTP/1." DIGIT, CRLF or LF.
type requestLineChecker struct {
	state int
	n     int // bytes seen in the current state
}

func (l *requestLineChecker) feed(c byte) {
	const version = "HTTP/1."
	next := l.state
	switch l.state {
	case lineMethod:
		switch {
		case isTokenByte(c):
		case c == ' ' && l.n > 0:
			next = lineTargetStart
		default:
			next = lineBad
		}
	case lineTargetStart:
		next = lineTarget
		if !isTargetByte(c) {
			next = lineBad
		}
	case lineTarget:
		switch {
		case isTargetByte(c):
		case c == ' ':
			next = lineVersion
		default:
			next = lineBad
		}
	case lineVersion:
		switch {
		case l.n < len(version) && c == version[l.n]:
		case l.n == len(version) && c >= '0' && c <= '9':
			next = lineEnd
		default:
			next = lineBad
		}
	case lineEnd:
		switch c {
		case '\r':
			next = lineLF
		case '\n':
			next = lineDone
		default:
			next = lineBad
		}
	case lineLF:
		next = lineDone
		if c != '\n' {
			next = lineBad
		}
	}
	if next == l.state {
		l.n++
	} else {
		l.state, l.n = next, 0
	}
}

// isTargetByte reports whether c may appear in a request target: anything visible. (Clients
// should send only URI characters, but servers commonly accept more.)
func isTargetByte(c byte) bool {
	return c > ' ' && c != 0x7f
}
