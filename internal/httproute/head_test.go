package httproute

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRequest(t *testing.T) {
	type result struct {
		Method, Target string
		Minor          int
		Header         http.Header
		Framing        framing
		Length         int64
	}
	tests := []struct {
		name    string
		in      string
		want    result
		wantErr string
	}{
		{
			name: "GET",
			in:   "\r\nGET /a HTTP/1.1\r\nhost: x\r\nX-A:  1 \r\nx-a: 2\r\n\r\n",
			want: result{Method: "GET", Target: "/a", Minor: 1, Header: http.Header{"Host": {"x"}, "X-A": {"1", "2"}}},
		},
		{
			name: "content-length, repeated equal",
			in:   "POST / HTTP/1.0\nContent-Length: 5\nContent-Length: 5, 5\n\n",
			want: result{Method: "POST", Target: "/", Header: http.Header{"Content-Length": {"5", "5, 5"}}, Framing: lengthBody, Length: 5},
		},
		{
			name: "chunked",
			in:   "PUT * HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n",
			want: result{Method: "PUT", Target: "*", Minor: 1, Header: http.Header{"Transfer-Encoding": {"gzip", "Chunked"}}, Framing: chunkedBody},
		},
		{name: "conflicting lengths", in: "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", wantErr: "invalid Content-Length"},
		{name: "signed length", in: "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", wantErr: "invalid Content-Length"},
		{name: "empty length", in: "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", wantErr: "invalid Content-Length"},
		{name: "huge length", in: "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", wantErr: "invalid Content-Length"},
		{name: "chunked not last", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", wantErr: "does not end with chunked"},
		{name: "TE in HTTP/1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: "HTTP/1.0"},
		{name: "CL and TE", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", wantErr: "both"},
		{name: "HTTP/2 request line", in: "GET / HTTP/2.0\r\n\r\n", wantErr: "unsupported protocol version"},
		{name: "missing version", in: "GET /\r\n\r\n", wantErr: "malformed request line"},
		{name: "space in name", in: "GET / HTTP/1.1\r\nHost : x\r\n\r\n", wantErr: "invalid field name"},
		{name: "bare CR in value", in: "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", wantErr: "malformed MIME header"},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", wantErr: "obs-fold"},
		{name: "unexpected EOF", in: "GET / HTTP/1.1\r\nX: a\r\n", wantErr: "unexpected EOF"},
		{name: "too large", in: "GET / HTTP/1.1\r\n" + bigHeader + "\r\n", wantErr: "larger than 64 KiB"},
		{name: "too many empty lines", in: strings.Repeat("\r\n", 40<<10) + "GET / HTTP/1.1\r\n\r\n", wantErr: "larger than 64 KiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := readHead(bufio.NewReader(strings.NewReader(tc.in)))
			var req *requestHead
			if err == nil {
				req, err = parseRequestHead(raw)
			}
			var got result
			if err == nil {
				got = result{Method: req.method, Target: req.target, Minor: req.minor, Header: req.header}
				got.Framing, got.Length, err = requestFraming(req)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !strings.HasSuffix(tc.in, string(raw)) {
				t.Errorf("raw head %q is not what was read", raw)
			}
		})
	}
}

func TestResponseFraming(t *testing.T) {
	tests := []struct {
		method, in  string
		wantFraming framing
		wantLength  int64
		wantKeep    bool
		wantErr     bool
	}{
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", lengthBody, 3, true, false},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", noBody, 0, true, false},
		{"GET", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", noBody, 0, true, false},
		{"GET", "HTTP/1.1 304\r\n\r\n", noBody, 0, true, false},
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", chunkedBody, 0, true, false},
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", closeBody, 0, true, false},
		{"GET", "HTTP/1.1 200 OK\r\n\r\n", closeBody, 0, true, false},
		{"GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", lengthBody, 0, false, false},
		{"GET", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", lengthBody, 0, false, false},
		{"GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", lengthBody, 0, true, false},
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 0, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.in, func(t *testing.T) {
			raw, err := readHead(bufio.NewReader(strings.NewReader(tc.in)))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := parseResponseHead(raw)
			if err != nil {
				t.Fatal(err)
			}
			f, n, err := responseFraming(tc.method, resp)
			if tc.wantErr {
				if err == nil {
					t.Errorf("responseFraming = %v, %d; want an error", f, n)
				}
				return
			}
			got := []any{f, n, keepAlive(resp.minor, resp.header), err}
			want := []any{tc.wantFraming, tc.wantLength, tc.wantKeep, nil}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("framing, length, keep-alive, error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCopyChunked(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "chunks and trailers", in: "5\r\nhello\r\n1;a=b;c\r\n!\r\nA \t; x\r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n"},
		{name: "empty", in: "0\r\n\r\n"},
		{name: "leading zeros", in: "0005\r\nhello\r\n000\r\n\r\n"},
		{name: "no size", in: ";x\r\n", wantErr: "bad chunk size"},
		{name: "negative", in: "-1\r\n", wantErr: "bad chunk size"},
		{name: "0x prefix", in: "0x5\r\nhello\r\n", wantErr: "bad chunk size"},
		{name: "overflow", in: "fffffffffffffffff\r\n", wantErr: "bad chunk size"},
		{name: "bare LF", in: "5\nhello\r\n0\r\n\r\n", wantErr: "does not end with CRLF"},
		{name: "short data", in: "ff\r\nhel", wantErr: "unexpected EOF"},
		{name: "data too long", in: "5\r\nhello!\r\n0\r\n\r\n", wantErr: "not followed by CRLF"},
		{name: "control character in extension", in: "5;a\rb\r\nhello\r\n0\r\n\r\n", wantErr: "control character"},
		{name: "no end of trailers", in: "0\r\nX: 1\r\n", wantErr: "unexpected EOF"},
		{name: "long size line", in: "5;" + strings.Repeat("x", 5000) + "\r\n", wantErr: "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := copyChunked(&out, bufio.NewReader(strings.NewReader(tc.in+"NEXT")))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("copyChunked = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.in {
				t.Errorf("copied %q, want %q", out.String(), tc.in)
			}
		})
	}
}

// FuzzReadRequestHead checks that any input is either refused or parsed into a head that is
// exactly a part of the input, without panicking.
func FuzzReadRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\nPOST /a?b HTTP/1.0\nContent-Length: 3\n\nabc",
		"PUT * HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
		"\x16\x03\x01\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		raw, err := readHead(bufio.NewReaderSize(bytes.NewReader(in), 16))
		if err != nil {
			return
		}
		if !bytes.Contains(in, raw) || len(raw) > maxHeadBytes {
			t.Fatalf("head %q is not part of the input", raw)
		}
		req, err := parseRequestHead(raw)
		if err != nil {
			return
		}
		if !isToken(req.method) || req.target == "" {
			t.Fatalf("parsed %q as method %q target %q", raw, req.method, req.target)
		}
		f, n, err := requestFraming(req)
		if err == nil && (n < 0 || f == closeBody) {
			t.Fatalf("request framing %v, %d", f, n)
		}
	})
}

// FuzzReadResponseHead does the same for response heads.
func FuzzReadResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.0 404\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		raw, err := readHead(bufio.NewReaderSize(bytes.NewReader(in), 16))
		if err != nil {
			return
		}
		resp, err := parseResponseHead(raw)
		if err != nil {
			return
		}
		if resp.status < 100 || resp.status > 999 {
			t.Fatalf("status %d", resp.status)
		}
		if _, n, err := responseFraming("GET", resp); err == nil && n < 0 {
			t.Fatalf("negative length %d", n)
		}
	})
}

// FuzzChunked checks that copyChunked copies exactly the bytes it consumes, and never panics.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"1;ext=\"v\"\r\nx\r\n0\r\nTrailer: v\r\n\r\nNEXT",
		"fffffffffffffff\r\n",
		"0\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		var out bytes.Buffer
		err := copyChunked(&out, br)
		rest, _ := io.ReadAll(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				t.Fatalf("copyChunked returned a bare EOF: %v", err)
			}
			return
		}
		if got := out.String() + string(rest); got != string(in) {
			t.Fatalf("copied %q and left %q, from %q", out.Bytes(), rest, in)
		}
	})
}
