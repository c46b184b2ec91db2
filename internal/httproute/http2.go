package httproute

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// ServeHTTP2 serves one h2c client connection (HTTP/2 with prior knowledge: Sniff found
// HTTP2) whose bytes start in br. Each stream is routed by the filter and forwarded over h2c
// to its upstream: request and response bodies are streamed in both directions as they come,
// every response chunk is flushed at once, and trailers are passed on, so gRPC works. Unlike
// ServeHTTP1 this is not byte-exact: frames and header encoding are the HTTP/2 libraries'
// own, though header fields, bodies and trailers are passed on unchanged.
//
// A stream whose upstream cannot be reached gets 502; a response body that breaks off resets
// the client's stream. It returns when the client connection ends or ctx is cancelled, after
// closing client and the upstream connections.
//
// Both sides use the standard library's HTTP/2 (net/http with Protocols set to unencrypted
// HTTP/2 only), not golang.org/x/net/http2, which needs golang.org/x/text as well.
func (r *Router) ServeHTTP2(ctx context.Context, client net.Conn, br *bufio.Reader) error {
	ups := [2]*upstream2{newUpstream2(r, original), newUpstream2(r, program)}
	var handlers handlerGroup
	handler := func(w http.ResponseWriter, req *http.Request) {
		if !handlers.start() {
			return
		}
		defer handlers.done()
		sd := r.route(req.Method, req.RequestURI, req.Header)
		ups[sd].forward(w, req)
	}

	ln := newOneConnListener(bufferedConn{client, br})
	var served atomic.Bool
	ended := make(chan struct{})
	srv := &http.Server{
		Protocols:   h2cOnly(),
		Handler:     http.HandlerFunc(handler),
		ErrorLog:    slog.NewLogLogger(r.logger().Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, state http.ConnState) {
			switch state {
			case http.StateNew:
				served.Store(true)
			case http.StateClosed:
				ln.Close() // the one connection is done: make Serve return
				close(ended)
			}
		},
	}
	if h := r.Handover; h != nil {
		h.whenAsked(func() {
			// GOAWAY; the server closes the connection once its streams are done.
			go func() {
				sctx, cancel := context.WithTimeout(ctx, goAwayWait)
				defer cancel()
				srv.Shutdown(sctx)
			}()
		})
	}
	stop := context.AfterFunc(ctx, func() { client.Close() })
	srv.Serve(ln) // returns when the listener is closed (the connection's end, or Shutdown)
	if served.Load() {
		select {
		case <-ended:
		case <-ctx.Done():
		}
	}
	stop()
	client.Close()
	// The server has cancelled the streams' contexts but does not wait for their handlers.
	handlers.wait()
	for _, u := range ups {
		u.close()
	}
	if ctx.Err() != nil {
		return fmt.Errorf("serve HTTP/2 client %s: %w", client.RemoteAddr(), context.Cause(ctx))
	}
	return nil
}

// goAwayWait bounds how long a connection asked to go (Handover) may keep its streams.
const goAwayWait = 30 * time.Second

// h2cOnly is the protocol set of unencrypted HTTP/2 with prior knowledge.
func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// bufferedConn reads through the bufio.Reader holding the bytes Sniff peeked at.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// oneConnListener makes one connection servable by http.Server: Accept returns it once, then
// blocks until Close.
type oneConnListener struct {
	conns chan net.Conn
	addr  net.Addr
	once  sync.Once
	done  chan struct{}
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{conns: make(chan net.Conn, 1), addr: c.LocalAddr(), done: make(chan struct{})}
	l.conns <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// handlerGroup waits for the stream handlers of one connection. Once wait has been called,
// start refuses new handlers, so that no Add races with Wait.
type handlerGroup struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *handlerGroup) start() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *handlerGroup) done() { g.wg.Done() }

func (g *handlerGroup) wait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// upstream2 is the h2c client for one upstream, for one client connection. It remembers the
// connections it dials so that close can close them all, idle or not.
type upstream2 struct {
	side   side
	logger *slog.Logger
	tr     *http.Transport

	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

func newUpstream2(r *Router, sd side) *upstream2 {
	u := &upstream2{side: sd, logger: r.logger()}
	dial := r.dialer(sd)
	u.tr = &http.Transport{
		Protocols:          h2cOnly(),
		DisableCompression: true, // pass Accept-Encoding and encoded bodies on as they are
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if dial == nil {
				return nil, fmt.Errorf("dial %s: no dialer configured", sd)
			}
			conn, err := dial(ctx)
			if err != nil {
				return nil, fmt.Errorf("dial %s: %w", sd, err)
			}
			u.mu.Lock()
			defer u.mu.Unlock()
			if u.closed {
				conn.Close()
				return nil, fmt.Errorf("dial %s: %w", sd, net.ErrClosed)
			}
			u.conns = append(u.conns, conn)
			return conn, nil
		},
	}
	return u
}

func (u *upstream2) close() {
	u.tr.CloseIdleConnections()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for _, c := range u.conns {
		c.Close()
	}
}

// forward sends one request to the upstream and streams its response back.
func (u *upstream2) forward(w http.ResponseWriter, in *http.Request) {
	// 1xx responses other than 100 Continue (which the server sends on its own when the
	// request body is first read) are passed on as they arrive.
	ctx := httptrace.WithClientTrace(in.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
			if code != http.StatusContinue {
				h := w.Header()
				maps.Copy(h, http.Header(header))
				w.WriteHeader(code)
				clear(h)
			}
			return nil
		},
	})
	out := in.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.Host = u.side.String() // the transport's pool key; :authority comes from out.Host
	out.Trailer = in.Trailer       // the server fills it in when the client's body ends
	if _, ok := in.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // send none rather than the transport's default
	}

	res, err := u.tr.RoundTrip(out)
	if err != nil {
		u.logger.Debug("forward HTTP/2 request", "upstream", u.side, "method", in.Method, "target", in.RequestURI, "error", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer res.Body.Close()

	maps.Copy(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	flush := http.NewResponseController(w).Flush
	flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client's stream is gone
			}
			flush()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			u.logger.Debug("forward HTTP/2 response body", "upstream", u.side, "target", in.RequestURI, "error", err)
			panic(http.ErrAbortHandler) // reset the client's stream: its body is incomplete
		}
	}
	for k, vv := range res.Trailer {
		w.Header()[http.TrailerPrefix+k] = vv
	}
}
