package httproute

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A connection handed over between two requests is given back open: the client connection
// and the original upstream's go on carrying requests, and the program's is closed.
func TestHandover(t *testing.T) {
	original := httpServer(t, "original")
	program := httpServer(t, "program")
	client, server := tcpPair(t)
	h := &Handover{}
	r := &Router{Filter: aliceFilter(), Handover: h,
		Program:  func(ctx context.Context) (net.Conn, error) { return net.Dial("tcp", program) },
		Original: func(ctx context.Context) (net.Conn, error) { return net.Dial("tcp", original) }}
	done := make(chan error, 1)
	go func() { done <- r.ServeHTTP1(context.Background(), server, bufio.NewReader(server)) }()

	cr := bufio.NewReader(client)
	get := func(user string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://svc/", nil)
		if user != "" {
			req.Header.Set("X-Debug-User", user)
		}
		if err := req.Write(client); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(cr, req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if got := get("alice"); got != "program" {
		t.Fatalf("alice's request: %q", got)
	}
	if got := get(""); got != "original" {
		t.Fatalf("a plain request: %q", got)
	}
	time.Sleep(50 * time.Millisecond) // idle, waiting for the next request
	h.Request()
	select {
	case err := <-done:
		if !errors.Is(err, ErrHandedOver) {
			t.Fatalf("ServeHTTP1: %v, want ErrHandedOver", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeHTTP1 did not hand the connection over")
	}
	c, o := h.Conns()
	if c != server || o == nil {
		t.Fatalf("Conns: %v, %v", c, o)
	}
	// Relay the handed-over pair as the adopting agent would: alice's requests now reach the
	// original service too.
	go io.Copy(o, c)
	go io.Copy(c, o)
	if got := get("alice"); got != "original" {
		t.Errorf("after the handover alice's request reached %q, want the original", got)
	}
	o.Close()
}

// httpServer serves name as every answer on a loopback port until the test ends.
func httpServer(t *testing.T, name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// tcpPair returns the two ends of a TCP connection on loopback, closed when the test ends.
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
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}
