package httproute

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startH2CServer starts an h2c (prior knowledge) upstream and counts its connections.
func startH2CServer(t *testing.T, h http.HandlerFunc, conns *atomic.Int32) Dialer {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.Config.Protocols = h2cOnly()
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.Listener.Addr().String())
	}
}

// startH2Router serves one client connection: Sniff, then ServeHTTP2. It returns an h2c
// client whose connections go to it, the number of connections that client made, and the
// channel that gets ServeHTTP2's result.
func startH2Router(t *testing.T, ctx context.Context, r *Router) (*http.Client, *atomic.Int32, <-chan error) {
	t.Helper()
	addr, result := serveOne(t, func(c net.Conn) error {
		br := bufio.NewReader(c)
		proto, err := Sniff(br)
		if err != nil || proto != HTTP2 {
			c.Close()
			return fmt.Errorf("Sniff = %v, %v; want HTTP2", proto, err)
		}
		return r.ServeHTTP2(ctx, c, br)
	})
	var dials atomic.Int32
	tr := &http.Transport{
		Protocols: h2cOnly(),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, &dials, result
}

func TestServeHTTP2Routing(t *testing.T) {
	upstream := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(req.Body)
			w.Header().Set("X-Served-By", name)
			fmt.Fprintf(w, "%s got %s %s %s %s user=%q ua=%q %q", name, req.Proto, req.Method, req.Host, req.RequestURI,
				req.Header.Get("X-Debug-User"), req.Header.Get("User-Agent"), body)
		}
	}
	var programConns, originalConns atomic.Int32
	var routes routeLog
	r := &Router{
		Filter:    aliceFilter(),
		Program:   startH2CServer(t, upstream("program"), &programConns),
		Original:  startH2CServer(t, upstream("original"), &originalConns),
		OnRequest: routes.record,
	}
	client, dials, result := startH2Router(t, context.Background(), r)

	tests := []struct {
		method, path, user, body string
		want                     string
	}{
		{"GET", "/one?q=1", "alice", "", `program got HTTP/2.0 GET svc /one?q=1 user="alice" ua="" ""`},
		{"GET", "/two", "", "", `original got HTTP/2.0 GET svc /two user="" ua="" ""`},
		{"POST", "/three", "alice-in-chains", "payload", `program got HTTP/2.0 POST svc /three user="alice-in-chains" ua="" "payload"`},
		{"PUT", "/four", "bob", "more", `original got HTTP/2.0 PUT svc:8080 /four user="bob" ua="" "more"`},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(tc.method, "http://svc"+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header["User-Agent"] = nil // the upstream must see none, as the client sent none
		if tc.method == "PUT" {
			req.Host = "svc:8080" // :authority, which must reach the upstream unchanged
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
		if string(got) != tc.want || res.Proto != "HTTP/2.0" {
			t.Errorf("%s %s: got %s %q, want HTTP/2.0 %q", tc.method, tc.path, res.Proto, got, tc.want)
		}
	}
	client.CloseIdleConnections()
	if err := waitResult(t, result); err != nil {
		t.Errorf("ServeHTTP2: %v", err)
	}
	wantRoutes := []string{"program GET /one?q=1", "original GET /two", "program POST /three", "original PUT /four"}
	if diff := cmp.Diff(wantRoutes, routes.get()); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	got := []int32{dials.Load(), programConns.Load(), originalConns.Load()}
	if diff := cmp.Diff([]int32{1, 1, 1}, got); diff != "" {
		t.Errorf("connections (client, program, original) (-want +got):\n%s", diff)
	}
}

// grpcFrame frames a message the way gRPC does: compressed flag, big-endian length, message.
func grpcFrame(msg string) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

func readGRPCFrame(r io.Reader) (string, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return "", err
	}
	msg := make([]byte, binary.BigEndian.Uint32(head[1:]))
	_, err := io.ReadFull(r, msg)
	return string(msg), err
}

// TestServeHTTP2GRPCLike runs a bidirectional stream the way gRPC does: each request message
// is answered before the next one is sent, so neither direction may be buffered, and the
// status comes in trailers, one declared and one not.
func TestServeHTTP2GRPCLike(t *testing.T) {
	echo := func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Te") != "trailers" || req.Header.Get("Content-Type") != "application/grpc" {
			http.Error(w, "not gRPC", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		flush := http.NewResponseController(w).Flush
		flush()
		n := 0
		for {
			msg, err := readGRPCFrame(req.Body)
			if err != nil {
				break
			}
			n++
			w.Write(grpcFrame("echo " + msg))
			flush()
		}
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", fmt.Sprintf("echoed %d", n))
	}
	var programConns, originalConns atomic.Int32
	r := &Router{
		Filter:   aliceFilter(),
		Program:  startH2CServer(t, echo, &programConns),
		Original: startH2CServer(t, http.NotFound, &originalConns),
	}
	client, _, result := startH2Router(t, context.Background(), r)

	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", "http://svc/echo.Echo/Stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Debug-User", "alice")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %s", res.Status)
	}
	var got []string
	for _, msg := range []string{"one", "two", "three"} {
		if _, err := pw.Write(grpcFrame(msg)); err != nil {
			t.Fatal(err)
		}
		reply, err := readGRPCFrame(res.Body)
		if err != nil {
			t.Fatalf("read reply to %q: %v", msg, err)
		}
		got = append(got, reply)
	}
	pw.Close()
	if rest, err := io.ReadAll(res.Body); err != nil || len(rest) > 0 {
		t.Errorf("after the last reply: read %q, %v; want EOF", rest, err)
	}
	if diff := cmp.Diff([]string{"echo one", "echo two", "echo three"}, got); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
	wantTrailer := http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {"echoed 3"}}
	if diff := cmp.Diff(wantTrailer, res.Trailer); diff != "" {
		t.Errorf("trailer (-want +got):\n%s", diff)
	}
	res.Body.Close()
	client.CloseIdleConnections()
	if err := waitResult(t, result); err != nil {
		t.Errorf("ServeHTTP2: %v", err)
	}
}

// TestServeHTTP2Failures checks that an unreachable upstream fails only its own streams, and
// that cancelling the context ends the connection while a stream waits for its upstream.
func TestServeHTTP2Failures(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	var originalConns atomic.Int32
	r := &Router{
		Filter:  aliceFilter(),
		Program: failingDial,
		Original: startH2CServer(t, func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/hang" {
				arrived <- struct{}{}
				select {
				case <-release:
				case <-req.Context().Done():
				}
			}
			io.WriteString(w, "original")
		}, &originalConns),
	}
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, _, result := startH2Router(t, ctx, r)

	get := func(path, user string) (int, string, error) {
		req, _ := http.NewRequest("GET", "http://svc"+path, nil)
		if user != "" {
			req.Header.Set("X-Debug-User", user)
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		return res.StatusCode, string(body), err
	}
	if code, _, err := get("/p", "alice"); err != nil || code != http.StatusBadGateway {
		t.Errorf("request to the unreachable program: %d, %v; want 502", code, err)
	}
	if code, body, err := get("/o", ""); err != nil || code != http.StatusOK || body != "original" {
		t.Errorf("request to the original: %d %q, %v; want 200 \"original\"", code, body, err)
	}

	hung := make(chan error, 1)
	go func() {
		code, body, err := get("/hang", "")
		if err == nil && code != http.StatusBadGateway {
			err = fmt.Errorf("got %d %q", code, body)
		} else {
			err = nil // the stream failed, or the router answered 502 while shutting down
		}
		hung <- err
	}()
	<-arrived
	cancel()
	if err := waitResult(t, result); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("ServeHTTP2 returned %v, want context canceled", err)
	}
	if err := <-hung; err != nil {
		t.Errorf("the hanging request: %v, want a failure", err)
	}
}

// TestServeHTTP2Handover asks a connection to go while a response streams on it: the stream
// finishes whole, the client opens a new connection for its next request (GOAWAY), and
// ServeHTTP2 returns once the first connection has ended.
func TestServeHTTP2Handover(t *testing.T) {
	release := make(chan struct{})
	slow := func(w http.ResponseWriter, req *http.Request) {
		flush := http.NewResponseController(w).Flush
		io.WriteString(w, "first ")
		flush()
		if req.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "last")
	}
	var programConns, originalConns atomic.Int32
	h := &Handover{}
	r := &Router{
		Filter:   aliceFilter(),
		Program:  startH2CServer(t, slow, &programConns),
		Original: startH2CServer(t, slow, &originalConns),
		Handover: h,
	}
	client, dials, result := startH2Router(t, context.Background(), r)
	// A request that ends first, so the connection has been idle once.
	if res, err := client.Get("http://svc/quick"); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	res, err := client.Get("http://svc/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, len("first "))
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	h.Request()
	time.Sleep(300 * time.Millisecond) // the stream goes on for a while after the GOAWAY
	close(release)
	rest, err := io.ReadAll(res.Body)
	if err != nil || string(buf)+string(rest) != "first last" {
		t.Fatalf("the stream in flight got %q, %v; want it whole", string(buf)+string(rest), err)
	}
	if err := waitResult(t, result); err != nil {
		t.Errorf("ServeHTTP2: %v", err)
	}
	// The client was told to go: its next request dials again (and, the router being gone,
	// finds nobody: serveOne served one connection).
	client.Get("http://svc/next")
	if n := dials.Load(); n != 2 {
		t.Errorf("the client dialled %d times, want 2 (a new connection after GOAWAY)", n)
	}
}
