package httproute

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// ServeHTTP1 serves one HTTP/1.x client connection whose bytes start in br (Sniff found
// HTTP1), routing each request to the program or the original upstream and relaying requests
// and responses byte for byte. Requests are handled one after the other, so pipelined
// responses keep their order. It returns when the client ends the connection, when a message
// says the connection closes after it, on the first error, or when ctx is cancelled, and it
// closes client and the upstream connections before returning. The error is nil when the
// connection ended as HTTP says it may.
//
// A request that cannot be parsed is answered 400 and one whose upstream cannot be reached
// 502; both close the connection. After a 101 Switching Protocols response (or a successful
// CONNECT), bytes are copied both ways between the client and that upstream until both ends
// have closed.
func (r *Router) ServeHTTP1(ctx context.Context, client net.Conn, br *bufio.Reader) error {
	s := &session1{r: r, ctx: ctx, client: client, br: br}
	stop := context.AfterFunc(ctx, s.closeAll)
	defer func() {
		stop()
		s.closeAll()
		for _, u := range s.up {
			if u != nil {
				u.stopWatch()
			}
		}
	}()
	for {
		if h := r.Handover; h != nil && s.awaitRequest(h) {
			s.handOver(h)
			return ErrHandedOver
		}
		keep, err := s.serveRequest()
		if ctx.Err() != nil {
			return fmt.Errorf("serve HTTP/1 client %s: %w", client.RemoteAddr(), context.Cause(ctx))
		}
		if err != nil {
			return fmt.Errorf("serve HTTP/1 client %s: %w", client.RemoteAddr(), err)
		}
		if !keep {
			return nil
		}
	}
}

// session1 is the state of one ServeHTTP1 call.
type session1 struct {
	r      *Router
	ctx    context.Context
	client net.Conn
	br     *bufio.Reader // the client's bytes

	// mu guards closed and the slots of up against closeAll, which may run on another
	// goroutine when ctx is cancelled. Only the serving goroutine changes up.
	mu         sync.Mutex
	closed     bool
	handedOver bool          // the client connection went to a Handover: closeAll leaves it
	up         [2]*upstream1 // indexed by side
}

// upstream1 is a kept-alive connection to one upstream.
type upstream1 struct {
	side side
	conn net.Conn
	br   *bufio.Reader
	// idle is set while the connection waits for the next request: a goroutine peeks at it
	// to notice when the upstream closes it (or sends bytes nobody asked for), and sends what
	// it saw here.
	idle chan error
}

// serveRequest relays one request and its response. keep says whether the client connection
// can carry another request.
func (s *session1) serveRequest() (keep bool, err error) {
	raw, err := readHead(s.br)
	if err == io.EOF {
		return false, nil // the client closed between requests
	}
	if err != nil {
		s.replyAndLinger(http.StatusBadRequest)
		return false, fmt.Errorf("read request head: %w", err)
	}
	req, err := parseRequestHead(raw)
	var body framing
	var n int64
	if err == nil {
		body, n, err = requestFraming(req)
	}
	if err != nil {
		s.replyAndLinger(http.StatusBadRequest)
		return false, fmt.Errorf("bad request: %w", err)
	}

	sd := s.r.route(req.method, req.target, req.header)
	u, err := s.upstream(sd)
	if err != nil {
		s.replyAndLinger(http.StatusBadGateway)
		return false, err
	}
	if _, err := u.conn.Write(raw); err != nil {
		s.drop(u)
		s.replyAndLinger(http.StatusBadGateway)
		return false, fmt.Errorf("send request head to %s: %w", sd, err)
	}

	// The body is copied while the response is read: the upstream may answer before it has
	// read the body (100 Continue, or an early final response).
	bodyDone := make(chan error, 1)
	go func() {
		err := copyBody(markWrites{u.conn}, s.br, body, n)
		bodyDone <- err
		if err != nil && !isWriteError(err) {
			u.conn.Close() // the upstream waits for a body that will not come: end its response
		}
	}()

	res, err := s.relayResponse(req, u)
	switch {
	case err != nil:
		return false, s.abort(u, res.wrote, err, bodyDone)
	case res.tunnel:
		if err := <-bodyDone; err != nil {
			return false, fmt.Errorf("copy request body to %s: %w", sd, err)
		}
		return false, s.splice(u)
	case !res.keep || !keepAlive(req.minor, req.header):
		s.drop(u) // also stops a body copy blocked on writing to it
		s.lingerClose(bodyDone)
		return false, nil
	}
	if err := <-bodyDone; err != nil {
		s.drop(u)
		return false, fmt.Errorf("copy request body to %s: %w", sd, err)
	}
	u.watch()
	return true, nil
}

// abort ends the connection after relaying a response from u failed with err. A client that
// has not been sent anything yet gets 400 if its own request body was at fault (which makes
// the upstream's answer fail too), and 502 otherwise. bodyDone gets the result of the request
// body copy.
func (s *session1) abort(u *upstream1, wrote bool, err error, bodyDone <-chan error) error {
	s.drop(u)
	select {
	case bodyErr := <-bodyDone:
		bodyDone = nil
		if bodyErr != nil && !isWriteError(bodyErr) {
			err = fmt.Errorf("copy request body to %s: %w", u.side, bodyErr)
			if !wrote {
				s.reply(http.StatusBadRequest)
				wrote = true
			}
		}
	default:
	}
	if !wrote {
		s.reply(http.StatusBadGateway)
	}
	s.lingerClose(bodyDone)
	return err
}

// relayResult is what relayResponse did.
type relayResult struct {
	wrote  bool // some bytes went to the client
	tunnel bool // the response switched protocols (101, or 2xx to CONNECT)
	keep   bool // the upstream keeps the connection open after this response
}

// relayResponse copies the responses to req from u to the client: any 1xx informational
// responses, then the final one.
func (s *session1) relayResponse(req *requestHead, u *upstream1) (relayResult, error) {
	var res relayResult
	client := markWrites{s.client}
	for {
		raw, err := readHead(u.br)
		if err != nil {
			return res, fmt.Errorf("read response head from %s: %w", u.side, err)
		}
		resp, err := parseResponseHead(raw)
		if err != nil {
			return res, fmt.Errorf("response from %s: %w", u.side, err)
		}
		res.tunnel = resp.status == http.StatusSwitchingProtocols ||
			req.method == http.MethodConnect && resp.status >= 200 && resp.status < 300
		informational := resp.status < 200
		var body framing
		var n int64
		if !informational && !res.tunnel {
			body, n, err = responseFraming(req.method, resp)
			if err != nil {
				return res, fmt.Errorf("response from %s: %w", u.side, err)
			}
		}
		if _, err := client.Write(raw); err != nil {
			return res, fmt.Errorf("send response head to client: %w", err)
		}
		res.wrote = true
		if res.tunnel {
			return res, nil
		}
		if informational {
			continue
		}
		if err := copyBody(client, u.br, body, n); err != nil {
			return res, fmt.Errorf("relay response body from %s: %w", u.side, err)
		}
		res.keep = body != closeBody && keepAlive(resp.minor, resp.header)
		return res, nil
	}
}

// splice copies bytes both ways between the client and u until both directions have ended.
// Each direction that reaches the end of its input shuts down writing on its output.
func (s *session1) splice(u *upstream1) error {
	errs := make(chan error, 2)
	copyOneWay := func(dst net.Conn, src io.Reader) {
		_, err := io.Copy(dst, src)
		if err == nil {
			err = closeWrite(dst)
		}
		if err != nil {
			s.closeAll() // end the other direction too
		}
		errs <- err
	}
	go copyOneWay(u.conn, s.br)
	go copyOneWay(s.client, u.br)
	err1, err2 := <-errs, <-errs
	if err1 != nil {
		return fmt.Errorf("splice client and %s: %w", u.side, err1)
	}
	if err2 != nil {
		return fmt.Errorf("splice client and %s: %w", u.side, err2)
	}
	return nil
}

// upstream returns the connection to sd, dialing it if there is none or the upstream has
// closed the one there was.
func (s *session1) upstream(sd side) (*upstream1, error) {
	if u := s.up[sd]; u != nil {
		if u.stopWatch() {
			return u, nil
		}
		s.drop(u)
	}
	dial := s.r.dialer(sd)
	if dial == nil {
		return nil, fmt.Errorf("dial %s: no dialer configured", sd)
	}
	conn, err := dial(s.ctx)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", sd, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		conn.Close()
		return nil, fmt.Errorf("dial %s: %w", sd, net.ErrClosed)
	}
	u := &upstream1{side: sd, conn: conn, br: bufio.NewReader(conn)}
	s.up[sd] = u
	return u, nil
}

// drop closes u and forgets it, so that the next request to its side dials again.
func (s *session1) drop(u *upstream1) {
	s.mu.Lock()
	u.conn.Close()
	if s.up[u.side] == u {
		s.up[u.side] = nil
	}
	s.mu.Unlock()
	u.stopWatch()
}

// closeAll closes the client and upstream connections. It may run on any goroutine.
func (s *session1) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if !s.handedOver {
		s.client.Close()
	}
	for _, u := range s.up {
		if u != nil {
			u.conn.Close()
		}
	}
}

// reply sends a minimal response of its own to the client. It is only used when the
// connection closes afterwards.
func (s *session1) reply(code int) {
	text := fmt.Sprintf("%d %s\n", code, http.StatusText(code))
	fmt.Fprintf(s.client, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(text), text)
}

// Bounds of the wait for the client to close after a reply (see replyAndLinger).
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

// replyAndLinger replies, then closes the client connection gently (see lingerClose). It must
// not be called while a request body is being copied.
func (s *session1) replyAndLinger(code int) {
	s.reply(code)
	s.lingerClose(nil)
}

// lingerClose shuts down the writing side of the client connection, then reads and discards
// what the client still sends until it closes the connection (within limits). Closing a
// socket with unread bytes sends a TCP reset, which can destroy the last response before the
// client has read it. bodyDone, if not nil, gets the result of a request body copy that may
// still be running; the read deadline set here ends it too.
func (s *session1) lingerClose(bodyDone <-chan error) {
	closeWrite(s.client)
	s.client.SetReadDeadline(time.Now().Add(lingerTime))
	if bodyDone != nil {
		<-bodyDone
	}
	io.Copy(io.Discard, io.LimitReader(s.br, lingerBytes))
}

// watch starts watching the idle connection.
func (u *upstream1) watch() {
	idle := make(chan error, 1)
	u.idle = idle
	go func() {
		_, err := u.br.Peek(1)
		idle <- err
	}()
}

// stopWatch stops the idle watcher, if any, and reports whether the connection is still fit
// for a request: the upstream has neither closed it nor sent anything.
func (u *upstream1) stopWatch() bool {
	if u.idle == nil {
		return true
	}
	if err := u.conn.SetReadDeadline(time.Now()); err != nil {
		u.conn.Close()
	}
	err := <-u.idle
	u.idle = nil
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return u.conn.SetReadDeadline(time.Time{}) == nil
}
