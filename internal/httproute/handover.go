package httproute

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// ErrHandedOver is ServeHTTP1's answer when its Handover was asked for: the connection was
// given back between two requests, open, through the Handover.
var ErrHandedOver = errors.New("connection handed over between requests")

// Handover lets the caller take an HTTP/1 connection back, open, between two requests: once
// Request is called, ServeHTTP1 returns ErrHandedOver as soon as no request is in progress and
// no byte of the next one has arrived, without closing the client connection or the original
// upstream's. Conns then gives them. A Handover serves one ServeHTTP1 call.
//
// ServeHTTP2 cannot give a connection back (its header compression state is in the connection),
// so there a Handover asks the client to go: a GOAWAY, after which the streams in flight finish
// and the client opens a new connection for its next requests, which go where the rules then
// say. ServeHTTP2 returns once the client connection has ended.
type Handover struct {
	mu       sync.Mutex
	asked    bool
	waiting  net.Conn // the client connection while ServeHTTP1 waits for the next request
	client   net.Conn
	original net.Conn
	onAsk    []func() // run by Request
}

// Request asks for the connection back at the next boundary between requests (HTTP/1), or
// for the client to go (HTTP/2).
func (h *Handover) Request() {
	h.mu.Lock()
	h.asked = true
	if h.waiting != nil {
		h.waiting.SetReadDeadline(time.Unix(1, 0)) // wake the wait for the next request
	}
	fns := h.onAsk
	h.onAsk = nil
	h.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// whenAsked runs fn when Request is called, or now if it was.
func (h *Handover) whenAsked(fn func()) {
	h.mu.Lock()
	if !h.asked {
		h.onAsk = append(h.onAsk, fn)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	fn()
}

// Conns returns the client connection and the original upstream's (nil when no request went
// there yet) after ServeHTTP1 returned ErrHandedOver.
func (h *Handover) Conns() (client, original net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.client, h.original
}

func (h *Handover) isAsked() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.asked
}

// awaitRequest waits for the first byte of the next request; it reports true when the
// connection is to be handed over instead.
func (s *session1) awaitRequest(h *Handover) bool {
	if s.br.Buffered() > 0 {
		return false
	}
	h.mu.Lock()
	if h.asked {
		h.mu.Unlock()
		return true
	}
	h.waiting = s.client
	h.mu.Unlock()
	_, err := s.br.Peek(1)
	h.mu.Lock()
	h.waiting = nil
	asked := h.asked
	h.mu.Unlock()
	if asked && errors.Is(err, os.ErrDeadlineExceeded) && s.br.Buffered() == 0 {
		return true
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		s.client.SetReadDeadline(time.Time{}) // a request came first: serve it
	}
	return false
}

// handOver gives the connections to h and keeps closeAll off them.
func (s *session1) handOver(h *Handover) {
	s.client.SetReadDeadline(time.Time{})
	var orig net.Conn
	if u := s.up[original]; u != nil && u.stopWatch() {
		orig = u.conn
	}
	s.mu.Lock()
	if orig != nil {
		s.up[original] = nil
	}
	s.handedOver = true
	s.mu.Unlock()
	h.mu.Lock()
	h.client, h.original = s.client, orig
	h.mu.Unlock()
}
