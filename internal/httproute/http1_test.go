package httproute

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Requests and responses with unusual (but valid) spelling, so that any re-serialisation
// would show.
const (
	reqAlice = "GET /a?x=1 HTTP/1.1\r\nhost: svc\r\nx-debug-USER:  alice  \r\nAccept: */*\r\n\r\n"
	reqPlain = "GET /b HTTP/1.1\r\nHost: svc\r\nx-other: 1\r\n\r\n"
	reqBob   = "GET /d HTTP/1.1\r\nHost: svc\r\nX-Debug-User: bob\r\n\r\n"
	reqPost  = "POST /c HTTP/1.1\r\nHost: svc\r\nX-Debug-User: alice-2\r\nContent-Length: 11\r\n\r\nhello world"

	respProgram  = "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nX-From:   program  \r\n\r\nprogram"
	respOriginal = "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 8\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\noriginal"
	respOK       = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

	resp400 = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"
	resp502 = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n502 Bad Gateway\n"
)

func aliceFilter() *Filter {
	m, err := ParseHeaderMatch("X-Debug-User: ^alice")
	if err != nil {
		panic(err)
	}
	return &Filter{Headers: []HeaderMatch{m}}
}

func TestServeHTTP1(t *testing.T) {
	tests := []struct {
		name string
		// filter is the Router's filter; nil means aliceFilter.
		filter *Filter
		// program and original hold one script per connection the upstream must accept.
		program, original [][]step
		programDown       bool // the program cannot be dialed
		client            []step
		wantRoutes        []string
		wantErr           string // a substring of ServeHTTP1's error; "" for nil
	}{
		{
			name: "keep-alive with interleaved routing",
			client: []step{
				{send: reqAlice}, {expect: respProgram},
				{send: reqPlain}, {expect: respOriginal},
				{send: reqPost}, {expect: respProgram},
				{send: reqBob}, {expect: respOriginal},
			},
			program:    [][]step{{{expect: reqAlice}, {send: respProgram}, {expect: reqPost}, {send: respProgram}}},
			original:   [][]step{{{expect: reqPlain}, {send: respOriginal}, {expect: reqBob}, {send: respOriginal}}},
			wantRoutes: []string{"program GET /a?x=1", "original GET /b", "program POST /c", "original GET /d"},
		},
		{
			name: "pipelined requests in one write",
			client: []step{
				{send: reqAlice + reqPlain + reqPost + "\r\n" + reqBob},
				{expect: respProgram + respOriginal + respProgram + respOriginal},
			},
			program:    [][]step{{{expect: reqAlice}, {send: respProgram}, {expect: reqPost}, {send: respProgram}}},
			original:   [][]step{{{expect: reqPlain}, {send: respOriginal}, {expect: reqBob}, {send: respOriginal}}},
			wantRoutes: []string{"program GET /a?x=1", "original GET /b", "program POST /c", "original GET /d"},
		},
		{
			name: "chunked request and response with trailers",
			client: []step{
				{send: chunkedUpload}, {expect: chunkedResponse},
				{send: reqPlain}, {expect: respOriginal},
			},
			program:    [][]step{{{expect: chunkedUpload}, {send: chunkedResponse}}},
			original:   [][]step{{{expect: reqPlain}, {send: respOriginal}}},
			wantRoutes: []string{"program POST /upload", "original GET /b"},
		},
		{
			name: "HEAD response has no body",
			client: []step{
				{send: "HEAD /h HTTP/1.1\r\nHost: svc\r\n\r\n"},
				{expect: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nTransfer-Encoding: chunked\r\n\r\n"},
				{send: reqPlain}, {expect: respOK},
			},
			original: [][]step{{
				{expect: "HEAD /h HTTP/1.1\r\nHost: svc\r\n\r\n"},
				{send: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nTransfer-Encoding: chunked\r\n\r\n"},
				{expect: reqPlain}, {send: respOK},
			}},
			wantRoutes: []string{"original HEAD /h", "original GET /b"},
		},
		{
			name: "204 and 304 have no body",
			client: []step{
				{send: "DELETE /x HTTP/1.1\r\nHost: svc\r\n\r\n"},
				{expect: "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
				{send: "GET /y HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\n"},
				{expect: "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"e\"\r\n\r\n"},
				{send: reqPlain}, {expect: respOK},
			},
			original: [][]step{{
				{expect: "DELETE /x HTTP/1.1\r\nHost: svc\r\n\r\n"},
				{send: "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
				{expect: "GET /y HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\n"},
				{send: "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"e\"\r\n\r\n"},
				{expect: reqPlain}, {send: respOK},
			}},
			wantRoutes: []string{"original DELETE /x", "original GET /y", "original GET /b"},
		},
		{
			name:   "close-delimited response closes the client",
			client: []step{{send: reqPlain}, {expect: "HTTP/1.1 200 OK\r\n\r\nuntil the end"}, {expectEOF: true}},
			original: [][]step{{
				{expect: reqPlain}, {send: "HTTP/1.1 200 OK\r\n\r\nuntil"}, {pause: 10 * time.Millisecond},
				{send: " the end"}, {hangUp: true},
			}},
			wantRoutes: []string{"original GET /b"},
		},
		{
			name: "Expect 100-continue",
			client: []step{
				{send: "PUT /e HTTP/1.1\r\nHost: svc\r\nX-Debug-User: alice\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"},
				{expect: "HTTP/1.1 100 Continue\r\n\r\n"},
				{send: "data"},
				{expect: respProgram},
			},
			program: [][]step{{
				{expect: "PUT /e HTTP/1.1\r\nHost: svc\r\nX-Debug-User: alice\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"},
				{send: "HTTP/1.1 100 Continue\r\n\r\n"},
				{expect: "data"},
				{send: respProgram},
			}},
			wantRoutes: []string{"program PUT /e"},
		},
		{
			name: "early response while the client sends its body",
			client: []step{
				{send: "POST /big HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\n01234"},
				{expect: "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"},
				{send: "56789"},
				{send: reqPlain}, {expect: respOK},
			},
			original: [][]step{{
				{expect: "POST /big HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\n01234"},
				{send: "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"},
				{expect: "56789"},
				{expect: reqPlain}, {send: respOK},
			}},
			wantRoutes: []string{"original POST /big", "original GET /b"},
		},
		{
			name: "upgrade then raw bytes both ways",
			client: []step{
				{send: upgradeRequest + "early"},
				{expect: upgradeResponse + "pong"},
				{send: "ping"},
				{shutWrite: true},
				{expect: "bye"},
				{expectEOF: true},
			},
			original: [][]step{{
				{expect: upgradeRequest},
				{send: upgradeResponse},
				{expect: "early"},
				{send: "pong"},
				{expect: "ping"},
				{expectEOF: true},
				{send: "bye"},
				{hangUp: true},
			}},
			wantRoutes: []string{"original GET /ws"},
		},
		{
			name:       "upstream says close",
			client:     []step{{send: reqPlain}, {expect: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"}, {expectEOF: true}},
			original:   [][]step{{{expect: reqPlain}, {send: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"}}},
			wantRoutes: []string{"original GET /b"},
		},
		{
			name:       "client says close",
			client:     []step{{send: "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"}, {expect: respOK}, {expectEOF: true}},
			original:   [][]step{{{expect: "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"}, {send: respOK}}},
			wantRoutes: []string{"original GET /b"},
		},
		{
			name:       "HTTP/1.0 client without keep-alive",
			client:     []step{{send: "GET /b HTTP/1.0\r\n\r\n"}, {expect: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"}, {expectEOF: true}},
			original:   [][]step{{{expect: "GET /b HTTP/1.0\r\n\r\n"}, {send: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"}}},
			wantRoutes: []string{"original GET /b"},
		},
		{
			name: "upstream closed an idle connection: redial",
			client: []step{
				{send: reqPlain}, {expect: respOK},
				{pause: 50 * time.Millisecond}, // let the idle watcher see the close
				{send: reqBob}, {expect: respOriginal},
			},
			original: [][]step{
				{{expect: reqPlain}, {send: respOK}, {hangUp: true}},
				{{expect: reqBob}, {send: respOriginal}},
			},
			wantRoutes: []string{"original GET /b", "original GET /d"},
		},
		{
			name:        "502 when the upstream cannot be dialed",
			programDown: true,
			client:      []step{{send: reqAlice}, {expect: resp502}, {expectEOF: true}},
			wantRoutes:  []string{"program GET /a?x=1"},
			wantErr:     "dial program",
		},
		{
			name:       "502 when the upstream closes without answering",
			client:     []step{{send: reqPlain}, {expect: resp502}, {expectEOF: true}},
			original:   [][]step{{{expect: reqPlain}, {hangUp: true}}},
			wantRoutes: []string{"original GET /b"},
			wantErr:    "read response head from original",
		},
		{
			name:       "400 on garbage",
			client:     []step{{send: "\x16\x03\x01\x00\xa5garbage\r\n\r\n"}, {expect: resp400}, {expectEOF: true}},
			wantRoutes: nil,
			wantErr:    "malformed request line",
		},
		{
			name:    "400 on a header line without colon",
			client:  []step{{send: "GET / HTTP/1.1\r\nHost svc\r\n\r\n"}, {expect: resp400}, {expectEOF: true}},
			wantErr: "malformed MIME header",
		},
		{
			name:    "400 on a head over 64 KiB",
			client:  []step{{send: "GET / HTTP/1.1\r\n" + bigHeader + "\r\n"}, {expect: resp400}, {expectEOF: true}},
			wantErr: "larger than 64 KiB",
		},
		{
			name:    "400 on obs-fold",
			client:  []step{{send: "GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n"}, {expect: resp400}, {expectEOF: true}},
			wantErr: "obs-fold",
		},
		{
			name:    "400 on both Content-Length and Transfer-Encoding",
			client:  []step{{send: "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}, {expect: resp400}, {expectEOF: true}},
			wantErr: "both Transfer-Encoding and Content-Length",
		},
		{
			name: "400 on a bad chunk size",
			client: []step{
				{send: "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("abc") + "zz\r\n"},
				{expect: resp400}, {expectEOF: true},
			},
			original:   [][]step{{{expect: "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("abc")}}},
			wantRoutes: []string{"original POST /p"},
			wantErr:    "bad chunk size",
		},
		{
			name: "filter: path AND method AND header",
			filter: &Filter{
				Path:    regexp.MustCompile(`^/api/`),
				Methods: []string{"post", "PUT"},
				Headers: []HeaderMatch{{Name: "x-debug-user", Value: regexp.MustCompile(`^alice$`)}},
			},
			client: []step{
				{send: "POST /api/x HTTP/1.1\r\nX-Debug-User: alice\r\nContent-Length: 0\r\n\r\n"}, {expect: respProgram},
				{send: "POST /web/x HTTP/1.1\r\nX-Debug-User: alice\r\nContent-Length: 0\r\n\r\n"}, {expect: respOriginal},
				{send: "GET /api/x HTTP/1.1\r\nX-Debug-User: alice\r\n\r\n"}, {expect: respOriginal},
				{send: "PUT http://svc/api/y HTTP/1.1\r\nX-Debug-User: alice\r\nContent-Length: 0\r\n\r\n"}, {expect: respProgram},
				{send: "PUT /api/y HTTP/1.1\r\nX-Debug-User: alice2\r\nContent-Length: 0\r\n\r\n"}, {expect: respOriginal},
			},
			program: [][]step{{
				{expect: "POST /api/x HTTP/1.1\r\nX-Debug-User: alice\r\nContent-Length: 0\r\n\r\n"}, {send: respProgram},
				{expect: "PUT http://svc/api/y HTTP/1.1\r\nX-Debug-User: alice\r\nContent-Length: 0\r\n\r\n"}, {send: respProgram},
			}},
			original: [][]step{{
				{expect: "POST /web/x HTTP/1.1\r\nX-Debug-User: alice\r\nContent-Length: 0\r\n\r\n"}, {send: respOriginal},
				{expect: "GET /api/x HTTP/1.1\r\nX-Debug-User: alice\r\n\r\n"}, {send: respOriginal},
				{expect: "PUT /api/y HTTP/1.1\r\nX-Debug-User: alice2\r\nContent-Length: 0\r\n\r\n"}, {send: respOriginal},
			}},
			wantRoutes: []string{
				"program POST /api/x", "original POST /web/x", "original GET /api/x",
				"program PUT http://svc/api/y", "original PUT /api/y",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prog := startRawServer(t, "program", tc.program)
			orig := startRawServer(t, "original", tc.original)
			var routes routeLog
			r := &Router{Filter: tc.filter, Program: prog.dial, Original: orig.dial, OnRequest: routes.record}
			if r.Filter == nil {
				r.Filter = aliceFilter()
			}
			if tc.programDown {
				r.Program = failingDial
			}
			addr, result := serveOne(t, func(c net.Conn) error {
				return r.ServeHTTP1(context.Background(), c, bufio.NewReader(c))
			})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			runScript(t, "client", c, tc.client)
			c.Close()

			err = waitResult(t, result)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("ServeHTTP1: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("ServeHTTP1 returned %v, want an error containing %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantRoutes, routes.get()); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
}

const (
	chunkedUpload = "POST /upload HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip, chunked\r\nX-Debug-User: alice\r\n\r\n" +
		"5;name=value\r\nhello\r\n6 \r\n world\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n"
	chunkedResponse = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" +
		"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: done\r\n\r\n"
	upgradeRequest  = "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n"
	upgradeResponse = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n"
)

// TestServeHTTP1Cancel checks that cancelling the context ends a connection that waits for an
// upstream that never answers.
func TestServeHTTP1Cancel(t *testing.T) {
	orig := startRawServer(t, "original", [][]step{{{expect: reqPlain}}})
	r := &Router{Filter: aliceFilter(), Program: failingDial, Original: orig.dial}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, result := serveOne(t, func(c net.Conn) error {
		return r.ServeHTTP1(ctx, c, bufio.NewReader(c))
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runScript(t, "client", c, []step{{send: reqPlain}, {pause: 20 * time.Millisecond}})
	cancel()
	if err := waitResult(t, result); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("ServeHTTP1 returned %v, want context canceled", err)
	}
	runScript(t, "client", c, []step{{expectEOF: true}})
}

// TestServeHTTP1NetHTTP runs net/http clients and servers through the router: one client
// connection, one connection to each upstream, streamed chunked responses with trailers.
func TestServeHTTP1NetHTTP(t *testing.T) {
	upstream := func(name string, conns *atomic.Int32) *httptest.Server {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(req.Body)
			w.Header().Set("Trailer", "X-Served-By")
			w.WriteHeader(http.StatusOK)
			fmt.Fprintf(w, "%s got %s %s %q", name, req.Method, req.URL, body)
			http.NewResponseController(w).Flush() // makes the response chunked
			w.Header().Set("X-Served-By", name)
		}))
		s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				conns.Add(1)
			}
		}
		s.Start()
		t.Cleanup(s.Close)
		return s
	}
	var programConns, originalConns atomic.Int32
	prog, orig := upstream("program", &programConns), upstream("original", &originalConns)
	dialer := func(s *httptest.Server) Dialer {
		return func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", s.Listener.Addr().String())
		}
	}
	r := &Router{Filter: aliceFilter(), Program: dialer(prog), Original: dialer(orig)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, result := serveOne(t, func(c net.Conn) error {
		return r.ServeHTTP1(ctx, c, bufio.NewReader(c))
	})

	var clientConns atomic.Int32
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			clientConns.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		MaxConnsPerHost: 1,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	tests := []struct {
		method, path, user, body string
		want, wantServedBy       string
	}{
		{"GET", "/one", "alice", "", `program got GET /one ""`, "program"},
		{"GET", "/two", "", "", `original got GET /two ""`, "original"},
		{"POST", "/three", "alice", "payload", `program got POST /three "payload"`, "program"},
		{"POST", "/four", "bob", "more", `original got POST /four "more"`, "original"},
	}
	for _, tc := range tests {
		// A body of unknown length makes net/http send it chunked.
		var body io.Reader
		if tc.body != "" {
			body = io.MultiReader(strings.NewReader(tc.body))
		}
		req, err := http.NewRequest(tc.method, "http://svc"+tc.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if tc.user != "" {
			req.Header.Set("X-Debug-User", tc.user)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: read body: %v", tc.method, tc.path, err)
		}
		if string(got) != tc.want || res.Trailer.Get("X-Served-By") != tc.wantServedBy {
			t.Errorf("%s %s: got body %q, trailer %q; want %q, %q", tc.method, tc.path, got, res.Trailer.Get("X-Served-By"), tc.want, tc.wantServedBy)
		}
	}
	tr.CloseIdleConnections()
	if err := waitResult(t, result); err != nil {
		t.Errorf("ServeHTTP1: %v", err)
	}
	got := []int32{clientConns.Load(), programConns.Load(), originalConns.Load()}
	if diff := cmp.Diff([]int32{1, 1, 1}, got); diff != "" {
		t.Errorf("connections (client, program, original) (-want +got):\n%s", diff)
	}
}
