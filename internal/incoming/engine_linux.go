package incoming

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/httproute"
	"doppel.dev/doppel/internal/wire"
)

// Engine is the incoming half of one agent: the listener that redirected connections reach,
// the session's nftables table, and the connections in flight.
type Engine struct {
	opt Options
	log *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	table  *tableWriter
	kind   Kind
	subs   map[uint16]*subscription
	closed bool
	conns  sync.WaitGroup
	peers  net.Listener // answers later sessions who is behind the connections passed on

	forwards    forwards
	relays      map[*relayed]struct{}            // connections relayed to the next hop, for a handover
	routed      map[*httproute.Handover]struct{} // HTTP connections a filter routes, for a handover
	adopter     *adopter                         // the agent that takes them over at Close, if any
	capture     *capture.Capture                 // passive capture or tap, from the first such subscription
	captureMode wire.Mode                        // ModeCapture or ModeTap: what capture is
	captured    map[uint16]*subscription         // by port
}

type subscription struct {
	feed    *feed // capture subscriptions
	sub     wire.Subscription
	filter  *httproute.Filter
	deliver Deliver
}

// New returns an Engine; it writes nothing until the first Subscribe.
func New(opt Options) *Engine {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.InNetns == nil {
		opt.InNetns = func(fn func() error) error { return fn() }
	}
	return &Engine{opt: opt, log: opt.Logger, subs: make(map[uint16]*subscription),
		captured: make(map[uint16]*subscription), relays: make(map[*relayed]struct{}),
		routed: make(map[*httproute.Handover]struct{})}
}

func kindOf(s wire.Subscription) Kind {
	switch {
	case s.Mode == wire.ModeMirror:
		return KindMirror
	case s.Filter.IsSet():
		return KindFiltered
	}
	return KindSteal
}

// ConflictError says another session already holds what a subscription asks for.
type ConflictError struct {
	Port  uint16
	Table string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("port %d of the target is already stolen whole by another doppel session (nftables table %s): "+
		"steal with an HTTP filter (--http-header, --http-path, --http-method) to share it, mirror it, or end that session", e.Port, e.Table)
}

// Subscribe starts redirecting sub.Port to the agent. Connections to it go to deliver until
// unsubscribe is called; with wire.ModeCapture or ModeTap their copies go to feed instead, as the capture
// feed's frames. Every subscription of one Engine must have the same mode and filter.
func (e *Engine) Subscribe(sub wire.Subscription, deliver Deliver, feed io.Writer) (unsubscribe func(), err error) {
	s := &subscription{sub: sub, deliver: deliver}
	if sub.Filter.IsSet() {
		if s.filter, err = compileFilter(sub.Filter); err != nil {
			return nil, err
		}
	}
	kind := kindOf(sub)

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, net.ErrClosed
	}
	if sub.Mode.Copies() {
		if _, dup := e.captured[sub.Port]; dup {
			return nil, fmt.Errorf("port %d is already captured in this session", sub.Port)
		}
		return e.subscribeCapture(s, feed)
	}
	if _, dup := e.subs[sub.Port]; dup {
		return nil, fmt.Errorf("port %d is already subscribed in this session", sub.Port)
	}
	if sub.Mode == wire.ModeMirror && feed == nil {
		return nil, fmt.Errorf("port %d: a mirror subscription needs its feed", sub.Port)
	}
	if e.table != nil && kind != e.kind {
		return nil, fmt.Errorf("port %d: a session has one mode (%s); %s asked", sub.Port, e.kind, kind)
	}
	// Check other sessions before anything is changed.
	others, err := ListSessions(e.opt.NetnsFD)
	if err != nil {
		return nil, err
	}
	if kind == KindSteal {
		for _, o := range others {
			if o.Kind == KindSteal && slices.Contains(o.Ports, sub.Port) && (e.table == nil || o.Table != e.table.name) {
				return nil, &ConflictError{Port: sub.Port, Table: o.Table}
			}
		}
	}
	if e.ln == nil {
		if err := e.listen(); err != nil {
			return nil, err
		}
	}
	if e.table == nil {
		if err := e.createTable(kind, others); err != nil {
			return nil, err
		}
		err := e.opt.InNetns(func() (err error) {
			e.peers, err = net.Listen("unixpacket", peerSocket(e.table.rank))
			return err
		})
		if err != nil {
			// Later sessions will see this agent's address instead of the real clients'.
			e.log.Warn("cannot answer later sessions who the clients are", "err", err)
		} else {
			go e.servePeers(e.peers)
		}
	}
	ports := append(e.ports(), sub.Port)
	if err := e.table.SetPorts(ports); err != nil {
		return nil, err
	}
	if sub.Mode == wire.ModeMirror {
		s.feed = newFeed(feed, feedLimit)
	}
	e.subs[sub.Port] = s
	e.log.Info("subscribed", "port", sub.Port, "mode", sub.Mode, "table", e.table.name)
	var once sync.Once
	return func() { once.Do(func() { e.unsubscribe(sub.Port, s) }) }, nil
}

func (e *Engine) unsubscribe(port uint16, s *subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs[port] != s {
		return
	}
	delete(e.subs, port)
	if e.table != nil && !e.closed {
		if err := e.table.SetPorts(e.ports()); err != nil {
			e.log.Warn("removing a port's rules failed", "port", port, "err", err)
		}
	}
	e.log.Info("unsubscribed", "port", port)
	if s.feed != nil {
		go s.feed.close() // flushes what is queued; e.mu is held here
	}
}

func (e *Engine) ports() []uint16 { return sortedPorts(e.subs) }

// sortedPorts returns the keys of subs in order.
func sortedPorts(subs map[uint16]*subscription) []uint16 {
	var ports []uint16
	for p := range subs {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports
}

// listen opens the listener redirected connections reach: all addresses of the target's
// network namespace (a redirect sends a connection to the address it arrived on), IPv4 and
// IPv6, on a free port. Connections that were not redirected are closed on arrival.
func (e *Engine) listen() error {
	return e.opt.InNetns(func() error {
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			return fmt.Errorf("listen for redirected connections in the target's network: %w", err)
		}
		e.ln = ln
		go e.acceptLoop(ln)
		return nil
	})
}

func (e *Engine) createTable(kind Kind, others []Session) error {
	used := make(map[int]bool)
	for _, o := range others {
		used[o.Rank] = true
	}
	port := uint16(e.ln.Addr().(*net.TCPAddr).Port)
	lo, hi := kind.ranks()
	for rank := lo; rank <= hi; rank++ {
		if used[rank] {
			continue
		}
		w, err := createTable(e.opt.NetnsFD, rank, kind, port)
		if errors.Is(err, errTableExists) {
			continue // another session took it meanwhile
		}
		if err != nil {
			return err
		}
		e.table, e.kind = w, kind
		return nil
	}
	return fmt.Errorf("too many doppel sessions of kind %s on this target (%d)", kind, hi-lo+1)
}

// drainTimeout bounds how long Close waits for connections in flight to end: long enough for
// a request in progress, short enough that doppel exec (which gives its agent 3 s) ends promptly
// when a client keeps an idle connection open.
const drainTimeout = 2 * time.Second

// Close removes the session's rules (new connections no longer come), stops listening,
// waits up to drainTimeout for the connections in flight, which keep flowing meanwhile, and
// then deletes the session's table.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	rank := 0
	table := e.table
	if table != nil {
		rank = table.rank
		// No new connection is redirected from here on. The table itself, its chains empty,
		// stays until the connections in flight are done: the kernel translates a redirected
		// connection only while a NAT chain is registered in the namespace, so deleting the
		// last one would reset them all.
		if err := table.SetPorts(nil); err != nil {
			e.log.Warn("removing the session's rules failed; deleting its table", "err", err)
			table.Close()
			table = nil
		}
	}
	if e.ln != nil {
		e.ln.Close()
	}
	if e.peers != nil {
		e.peers.Close()
	}
	c := e.capture
	e.mu.Unlock()
	if c != nil {
		c.Close()
		st := c.Stats()
		e.log.Info("capture stopped", "with", e.captureMode, "packets", st.Packets, "dropped by the kernel", st.Drops,
			"held back for the clients to send again", st.Held, "connections", st.Opened, "complete", st.Completed, "incomplete", st.Incomplete, "missed", st.Missed)
	}
	if rank != 0 {
		e.handOver(rank)
	}
	done := make(chan struct{})
	go func() { e.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		e.log.Warn("connections still in flight at exit", "waited", drainTimeout)
	}
	if table != nil {
		table.Close()
	}
	// Flush the copies' feeds; the client may be gone already, so without waiting here.
	e.mu.Lock()
	for _, s := range e.subs {
		if s.feed != nil {
			go s.feed.close()
		}
	}
	e.mu.Unlock()
	e.mu.Lock()
	if e.adopter != nil {
		e.adopter.c.Close()
	}
	e.mu.Unlock()
}

// Table is the name of the session's nftables table, "" before the first subscription.
func (e *Engine) Table() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.table == nil {
		return ""
	}
	return e.table.name
}

func (e *Engine) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		e.conns.Add(1)
		go func() {
			defer e.conns.Done()
			defer c.Close()
			e.handle(c.(*net.TCPConn))
		}()
	}
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (e *Engine) handle(c *net.TCPConn) {
	local, err := originalDst(c)
	if err != nil {
		// Not redirected: someone connected to the agent's port directly.
		e.log.Debug("dropped a connection that was not redirected", "remote", c.RemoteAddr(), "err", err)
		return
	}
	remote := unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	e.mu.Lock()
	s := e.subs[local.Port()]
	rank := 0
	if e.table != nil {
		rank = e.table.rank
	}
	e.mu.Unlock()
	if here := unmap(c.LocalAddr().(*net.TCPAddr).AddrPort()); here.Addr().IsLoopback() && !local.Addr().IsLoopback() {
		// Redirected in the output chain: an earlier session passed it on.
		remote = e.realRemote(rank, remote)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	original := func(ctx context.Context) (net.Conn, error) { return e.dialOriginal(ctx, local, remote, rank) }
	if s == nil {
		// The port was unsubscribed after the connection was redirected: pass it on.
		e.passOn(ctx, c, nil, original)
		return
	}
	in := wire.Incoming{Port: local.Port(), Mode: s.sub.Mode, Remote: remote, Local: local}
	switch kindOf(s.sub) {
	case KindMirror:
		e.mirror(ctx, c, in, s, original)
	case KindSteal:
		st, err := s.deliver(ctx, in)
		if err != nil {
			// The client is gone: the target's own service answers rather than nobody.
			e.log.Debug("client unreachable; passing the connection on", "remote", remote, "err", err)
			e.passOn(ctx, c, nil, original)
			return
		}
		defer st.Close()
		wire.Splice(c, st)
	case KindFiltered:
		e.filtered(ctx, c, in, s, original)
	}
}

// filtered routes each HTTP request of the connection by the subscription's filter; anything
// that is not HTTP goes to the target's own service.
func (e *Engine) filtered(ctx context.Context, c *net.TCPConn, in wire.Incoming, s *subscription, original httproute.Dialer) {
	br := bufio.NewReader(c)
	proto, err := httproute.Sniff(br)
	if err != nil && proto != httproute.NotHTTP {
		return
	}
	program := func(ctx context.Context) (net.Conn, error) {
		st, err := s.deliver(ctx, in)
		if err != nil {
			e.log.Debug("client unreachable; its requests go to the target's service", "err", err)
			return original(ctx)
		}
		return st, nil
	}
	if proto != httproute.HTTP1 && proto != httproute.HTTP2 {
		buffered, _ := br.Peek(br.Buffered())
		e.passOn(ctx, c, buffered, original)
		return
	}
	h := &httproute.Handover{}
	r := &httproute.Router{Filter: s.filter, Program: program, Original: original, Logger: e.log, Handover: h}
	e.mu.Lock()
	e.routed[h] = struct{}{}
	e.mu.Unlock()
	if proto == httproute.HTTP1 {
		err = r.ServeHTTP1(ctx, c, br)
	} else {
		err = r.ServeHTTP2(ctx, c, br)
	}
	e.mu.Lock()
	delete(e.routed, h)
	e.mu.Unlock()
	if errors.Is(err, httproute.ErrHandedOver) {
		e.handOverRouted(ctx, c, h, original)
		return
	}
	if err != nil {
		e.log.Debug("http routing ended", "remote", in.Remote, "err", err)
	}
}

// handOverRouted sends an HTTP connection that ServeHTTP1 gave back (between two requests) to
// the adopter, with its upstream to the target's own service (dialled now if no request went
// there yet): from then on all its requests go there. With no adopter the caller closes it,
// between two requests, as servers close idle connections.
func (e *Engine) handOverRouted(ctx context.Context, c *net.TCPConn, h *httproute.Handover, original httproute.Dialer) {
	_, up := h.Conns()
	e.mu.Lock()
	a := e.adopter
	e.mu.Unlock()
	if a == nil {
		if up != nil {
			up.Close()
		}
		return
	}
	if up == nil {
		var err error
		if up, err = original(ctx); err != nil {
			return
		}
	}
	defer up.Close()
	e.adoptPair(c, tcpOf(up))
}

// passOn connects the client to the target's own service; prefix is what was already read
// from the client.
func (e *Engine) passOn(ctx context.Context, c *net.TCPConn, prefix []byte, original httproute.Dialer) {
	up, err := original(ctx)
	if err != nil {
		e.log.Debug("target's service unreachable", "err", err)
		c.SetLinger(0) // the client sees a reset, as it would have from the target
		return
	}
	defer up.Close()
	if len(prefix) > 0 {
		if _, err := up.Write(prefix); err != nil {
			return
		}
	}
	e.relay(c, tcpOf(up), nil)
}

// tcpOf is the TCP connection under a connection the agent dialled.
func tcpOf(c net.Conn) *net.TCPConn {
	if fc, ok := c.(*forwardConn); ok {
		return fc.TCPConn
	}
	return c.(*net.TCPConn)
}

// dialOriginal connects to the address the real client asked for, from inside the target's
// network namespace, with the mark that lets later sessions (and not this one) take it.
func (e *Engine) dialOriginal(ctx context.Context, dst, client netip.AddrPort, rank int) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(Mark(rank)))
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var c net.Conn
	e.forwards.begin()
	defer e.forwards.end()
	err := e.opt.InNetns(func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	local := unmap(c.LocalAddr().(*net.TCPAddr).AddrPort())
	e.forwards.add(local, client)
	return &forwardConn{TCPConn: c.(*net.TCPConn), f: &e.forwards, local: local}, nil
}

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h), which x/sys
// does not define.
const ip6tSOOriginalDst = 80

// mirror passes the connection on to the target's own service and sends the client a copy of
// what the real client sends.
func (e *Engine) mirror(ctx context.Context, c *net.TCPConn, in wire.Incoming, s *subscription, original httproute.Dialer) {
	up, err := original(ctx)
	if err != nil {
		e.log.Debug("target's service unreachable", "err", err)
		c.SetLinger(0)
		return
	}
	defer up.Close()
	copy := s.feed.open(in.Remote, in.Local)
	if e.relay(c, tcpOf(up), copy) {
		copy.End(false, "the session ended: the connection went on without a copy")
		return
	}
	copy.End(true, "")
}

// originalDst is the destination the client connected to before the redirect.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local := unmap(c.LocalAddr().(*net.TCPAddr).AddrPort())
	var dst netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if local.Addr().Is4() {
			var sa unix.RawSockaddrInet4
			if serr = getsockopt(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); serr == nil {
				port := uint16(sa.Port>>8 | sa.Port<<8)
				dst = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
			}
			return
		}
		var sa unix.RawSockaddrInet6
		if serr = getsockopt(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); serr == nil {
			port := uint16(sa.Port>>8 | sa.Port<<8)
			dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", serr)
	}
	if dst == local {
		return netip.AddrPort{}, errors.New("connection was not redirected")
	}
	return dst, nil
}

func getsockopt(fd, level, name int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}
