package incoming

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/httproute"
)

// When a session ends while others go on, the connections it passes on (mirrored ones, and
// those it does not take) may belong to the later sessions: cutting them would cut those. So at
// Close the agent hands each such connection, both its sockets, to another session's agent in
// the same network namespace (over the peer socket, SCM_RIGHTS), which relays them from then on.
// Without another agent, Close lets them run for drainTimeout, as before.

// relayed is one connection the agent relays between the real client and the next hop.
type relayed struct {
	client, up *net.TCPConn
	handing    atomic.Bool // Close asked the relay to stop for a handover
}

// relay copies client to up (and into copy, when set) and up to client until both directions
// end, or until a handover stops both, which leaves the sockets as they are (no half-close)
// and sends them to the adopter.
func (e *Engine) relay(client, up *net.TCPConn, copy *feedSink) (handedOver bool) {
	r := &relayed{client: client, up: up}
	e.mu.Lock()
	if e.closed && e.adopter == nil {
		e.mu.Unlock()
	} else {
		e.relays[r] = struct{}{}
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			delete(e.relays, r)
			e.mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyUntil(client, up, nil)
		if !r.handing.Load() {
			client.CloseWrite()
		}
	}()
	copyUntil(up, client, copy)
	if !r.handing.Load() {
		up.CloseWrite()
	}
	<-done
	if r.handing.Load() {
		e.adopt(r)
		return true
	}
	return false
}

// copyUntil copies src to dst until src ends or a read deadline stops it; what was read is
// always written first.
func copyUntil(dst, src *net.TCPConn, copy *feedSink) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if copy != nil {
				copy.Write(buf[:n]) // never waits; a copy that falls behind is cut and ended
			}
		}
		if err != nil {
			return
		}
	}
}

// handOver stops every relayed connection and sends it to another session's agent; it
// reports whether there was one. The HTTP connections a filter routes go at their next
// boundary between requests, to that agent or, when there is none, closed (HTTP/1); an HTTP/2
// client is asked to go (GOAWAY) and opens a new connection for its next requests. e.mu is not
// held.
func (e *Engine) handOver(rank int) bool {
	a := e.findAdopter(rank)
	e.mu.Lock()
	e.adopter = a
	routed := make([]*httproute.Handover, 0, len(e.routed))
	for h := range e.routed {
		routed = append(routed, h)
	}
	e.mu.Unlock()
	for _, h := range routed {
		h.Request()
	}
	if a == nil {
		if len(routed) > 0 {
			e.log.Info("closing the HTTP connections in flight at their next request", "connections", len(routed))
		}
		return false
	}
	e.mu.Lock()
	relays := make([]*relayed, 0, len(e.relays))
	for r := range e.relays {
		relays = append(relays, r)
	}
	e.mu.Unlock()
	past := time.Unix(1, 0)
	for _, r := range relays {
		r.handing.Store(true)
		r.client.SetReadDeadline(past)
		r.up.SetReadDeadline(past)
	}
	if len(relays) > 0 {
		e.log.Info("handing the connections in flight to another session", "connections", len(relays))
	}
	if len(routed) > 0 {
		e.log.Info("handing the HTTP connections in flight to another session at their next request", "connections", len(routed))
	}
	return true
}

// findAdopter connects to the peer socket of another session's agent.
func (e *Engine) findAdopter(rank int) *adopter {
	for r := 1; r <= 98; r++ {
		if r == rank {
			continue
		}
		var c net.Conn
		err := e.opt.InNetns(func() (err error) {
			c, err = net.DialTimeout("unixpacket", peerSocket(r), time.Second)
			return err
		})
		if err == nil {
			return &adopter{c: c.(*net.UnixConn)}
		}
	}
	return nil
}

type adopter struct {
	mu sync.Mutex
	c  *net.UnixConn
}

// adopt sends a stopped connection's two sockets to the adopter.
func (e *Engine) adopt(r *relayed) { e.adoptPair(r.client, r.up) }

// adoptPair sends a client connection and its upstream connection to the adopter.
func (e *Engine) adoptPair(client, up *net.TCPConn) {
	e.mu.Lock()
	a := e.adopter
	e.mu.Unlock()
	if a == nil {
		return
	}
	files := make([]*os.File, 0, 2)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, c := range []*net.TCPConn{client, up} {
		f, err := c.File()
		if err != nil {
			e.log.Warn("a connection in flight could not be handed over", "err", err)
			return
		}
		files = append(files, f)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _, err := a.c.WriteMsgUnix([]byte{peerAdopt}, unix.UnixRights(int(files[0].Fd()), int(files[1].Fd())), nil)
	if err != nil {
		e.log.Warn("a connection in flight could not be handed over", "err", err)
	}
}

// adopted relays a connection another session handed over until it ends.
func (e *Engine) adopted(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return errors.New("handover without sockets")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return err
	}
	if len(fds) != 2 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return errors.New("handover: want 2 sockets")
	}
	var conns []*net.TCPConn
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "handed over")
		c, err := net.FileConn(f)
		f.Close()
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			conns = append(conns, tc)
		} else if c != nil {
			c.Close()
		}
	}
	if len(conns) != 2 {
		for _, c := range conns {
			c.Close()
		}
		return errors.New("handover: not two TCP sockets")
	}
	e.conns.Add(1)
	go func() {
		defer e.conns.Done()
		defer conns[0].Close()
		defer conns[1].Close()
		e.relay(conns[0], conns[1], nil)
	}()
	return nil
}
