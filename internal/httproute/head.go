package httproute

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// maxHeadBytes bounds a message head (start line and header fields), and a chunked body's
// trailer section.
const maxHeadBytes = 64 << 10

var errHeadTooLarge = errors.New("message head larger than 64 KiB")

// readHead reads one message head from br, through the empty line that ends it, and returns it
// exactly as received. Empty lines before the start line are skipped (RFC 9112 section 2.2).
// It returns io.EOF if br ends before any byte of a head, io.ErrUnexpectedEOF if it ends inside
// one. Header lines folded onto several lines (obs-fold) are refused: the head is forwarded
// raw, and the next hop might unfold them differently.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	skipped := 0
	for {
		line, err := readLine(br, maxHeadBytes-len(head)-skipped)
		if err != nil {
			if err == io.EOF && len(head) == 0 && skipped == 0 && len(line) == 0 {
				return nil, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch {
		case len(head) == 0 && isEmptyLine(line):
			skipped += len(line)
		case isEmptyLine(line):
			return append(head, line...), nil
		case len(head) > 0 && (line[0] == ' ' || line[0] == '\t'):
			return nil, fmt.Errorf("header line starts with white space (obs-fold): %q", trimLine(line))
		default:
			head = append(head, line...)
		}
	}
}

// readLine reads one line, with its line end, of at most limit bytes. Its result is valid
// until the next read from br. A line that ends without a line feed is returned with the read
// error.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var long []byte // only used for lines longer than br's buffer
	for {
		frag, err := br.ReadSlice('\n')
		if len(long)+len(frag) > limit {
			return nil, errHeadTooLarge
		}
		if err == bufio.ErrBufferFull {
			long = append(long, frag...)
			continue
		}
		if long != nil {
			frag = append(long, frag...)
		}
		return frag, err
	}
}

func isEmptyLine(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}

// trimLine removes the line end.
func trimLine(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// requestHead is a parsed request head; raw is what the client sent.
type requestHead struct {
	raw    []byte
	method string
	target string
	minor  int // HTTP/1.minor
	header http.Header
}

// responseHead is a parsed response head; raw is what the upstream sent.
type responseHead struct {
	raw    []byte
	status int
	minor  int
	header http.Header
}

// parseRequestHead parses a head returned by readHead.
func parseRequestHead(raw []byte) (*requestHead, error) {
	first, rest, _ := bytes.Cut(raw, []byte("\n"))
	line := string(trimLine(first))
	method, line, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" || !isTarget(target) {
		return nil, fmt.Errorf("malformed request line %q", trimLine(first))
	}
	minor, err := parseVersion(version)
	if err != nil {
		return nil, fmt.Errorf("request line %q: %w", trimLine(first), err)
	}
	h, err := parseHeader(rest)
	if err != nil {
		return nil, err
	}
	return &requestHead{raw: raw, method: method, target: target, minor: minor, header: h}, nil
}

// parseResponseHead parses a head returned by readHead.
func parseResponseHead(raw []byte) (*responseHead, error) {
	first, rest, _ := bytes.Cut(raw, []byte("\n"))
	line := string(trimLine(first))
	version, line, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(line, " ") // the reason phrase may be empty or missing
	minor, err := parseVersion(version)
	if err != nil {
		return nil, fmt.Errorf("status line %q: %w", trimLine(first), err)
	}
	status, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 || status < 100 {
		return nil, fmt.Errorf("status line %q: malformed status code", trimLine(first))
	}
	h, err := parseHeader(rest)
	if err != nil {
		return nil, err
	}
	return &responseHead{raw: raw, status: status, minor: minor, header: h}, nil
}

// parseVersion accepts HTTP/1.0 and HTTP/1.1 (and other HTTP/1.x) and returns the minor version.
func parseVersion(v string) (int, error) {
	if len(v) != len("HTTP/1.1") || !strings.HasPrefix(v, "HTTP/1.") || v[7] < '0' || v[7] > '9' {
		return 0, fmt.Errorf("unsupported protocol version %q", v)
	}
	return int(v[7] - '0'), nil
}

func isTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTargetByte(s[i]) {
			return false
		}
	}
	return true
}

// parseHeader parses header field lines ending with an empty line, into a copy.
func parseHeader(block []byte) (http.Header, error) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(block)))
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("parse header fields: %w", err)
	}
	for name := range h {
		// textproto accepts names with spaces ("Host : x"); the next hop might not.
		if !isToken(name) {
			return nil, fmt.Errorf("parse header fields: invalid field name %q", name)
		}
	}
	return http.Header(h), nil
}

// framing says how a message body is delimited.
type framing int

const (
	noBody      framing = iota
	lengthBody          // Content-Length bytes
	chunkedBody         // Transfer-Encoding: chunked
	closeBody           // until the connection closes (responses only)
)

// requestFraming applies RFC 9112 section 6.3 to a request. Requests whose framing two
// recipients could read differently (both Content-Length and Transfer-Encoding, conflicting
// lengths, a final coding other than chunked) are refused, since they are forwarded raw.
func requestFraming(req *requestHead) (framing, int64, error) {
	te := req.header.Values("Transfer-Encoding")
	_, hasLength := req.header["Content-Length"]
	if len(te) > 0 {
		switch {
		case req.minor == 0:
			return 0, 0, errors.New("transfer-encoding in an HTTP/1.0 request")
		case hasLength:
			return 0, 0, errors.New("request has both Transfer-Encoding and Content-Length")
		case !lastCodingIsChunked(te):
			return 0, 0, fmt.Errorf("request transfer-encoding %q does not end with chunked", strings.Join(te, ", "))
		}
		return chunkedBody, 0, nil
	}
	if hasLength {
		n, err := contentLength(req.header)
		if err != nil {
			return 0, 0, err
		}
		return lengthBody, n, nil
	}
	return noBody, 0, nil
}

// responseFraming applies RFC 9112 section 6.3 to a final (non-1xx) response to a request with
// the given method.
func responseFraming(method string, resp *responseHead) (framing, int64, error) {
	if method == http.MethodHead || resp.status == http.StatusNoContent || resp.status == http.StatusNotModified {
		return noBody, 0, nil
	}
	if te := resp.header.Values("Transfer-Encoding"); len(te) > 0 {
		if lastCodingIsChunked(te) {
			return chunkedBody, 0, nil
		}
		return closeBody, 0, nil
	}
	if _, ok := resp.header["Content-Length"]; ok {
		n, err := contentLength(resp.header)
		if err != nil {
			return 0, 0, err
		}
		return lengthBody, n, nil
	}
	return closeBody, 0, nil
}

// contentLength parses Content-Length, which may be repeated (or a list) if all values agree.
func contentLength(h http.Header) (int64, error) {
	var n int64 = -1
	for _, field := range h.Values("Content-Length") {
		for _, v := range strings.Split(field, ",") {
			v = strings.TrimSpace(v)
			m, err := strconv.ParseInt(v, 10, 64)
			if v == "" || strings.Trim(v, "0123456789") != "" || err != nil || (n >= 0 && m != n) {
				return 0, fmt.Errorf("invalid Content-Length %q", strings.Join(h.Values("Content-Length"), ", "))
			}
			n = m
		}
	}
	return n, nil
}

func lastCodingIsChunked(te []string) bool {
	codings := strings.Split(strings.Join(te, ","), ",")
	return strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked")
}

// hasToken reports whether a comma-separated header (like Connection) lists token.
func hasToken(h http.Header, name, token string) bool {
	for _, field := range h.Values(name) {
		for _, v := range strings.Split(field, ",") {
			if strings.EqualFold(strings.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

// keepAlive reports whether the sender of a message with this version and header expects the
// connection to stay open after it (RFC 9112 section 9.3).
func keepAlive(minor int, h http.Header) bool {
	if hasToken(h, "Connection", "close") {
		return false
	}
	return minor >= 1 || hasToken(h, "Connection", "keep-alive")
}
