package session

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/intercept"
	"doppel.dev/doppel/internal/wire"
)

// IncomingOptions turn on incoming traffic: ports the program listens on are subscribed to the
// target's.
type IncomingOptions struct {
	Mode   wire.Mode
	Filter wire.HTTPFilter
	// TargetPort maps a port the program listens on to the target's port it receives; ok false
	// keeps the port local.
	TargetPort func(local uint16) (target uint16, ok bool)
	// UID is the user the program runs as: a port it may not bind itself (below
	// net.ipv4.ip_unprivileged_port_start) is replaced by a free one.
	UID int
}

// The program-side state of incoming traffic. Everything the program can observe says it got
// what it asked for: the port it bound (getsockname), the real client's address as the target
// saw it (accept's address, getpeername) and the target's address it was reached on
// (getsockname of an accepted socket).
type listenState struct {
	bound     map[uint64]uint16                // by inode: the port asked for, of sockets whose bind doppel made
	listeners map[uint64]*listener             // by inode: subscribed listening sockets
	sockNames map[uint64][]byte                // by inode: what getsockname answers
	pending   map[netip.AddrPort]wire.Incoming // by the source of doppel's local connection
	subs      map[uint16]*incomingSub          // by target port
	accepted  map[netip.AddrPort]uint64        // by the source of doppel's local connection: the program's socket inode
	dialing   map[uint16]int                   // by the program's port: deliveries connecting
	dialSlots chan struct{}                    // bounds the deliveries connecting at once
}

type listener struct {
	family int
	local  netip.AddrPort // where it really listens
	target uint16
}

type incomingSub struct {
	locals []netip.AddrPort // the program's listeners for this target port
	closer io.Closer        // the subscription stream
}

func newListenState() listenState {
	return listenState{
		bound:     make(map[uint64]uint16),
		listeners: make(map[uint64]*listener),
		sockNames: make(map[uint64][]byte),
		pending:   make(map[netip.AddrPort]wire.Incoming),
		subs:      make(map[uint16]*incomingSub),
		accepted:  make(map[netip.AddrPort]uint64),
		dialing:   make(map[uint16]int),
		dialSlots: make(chan struct{}, 64),
	}
}

// unprivilegedPortStart is net.ipv4.ip_unprivileged_port_start of doppel's network namespace,
// where the program's sockets live.
func unprivilegedPortStart() uint16 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 16)
	if err != nil {
		return 1024
	}
	return uint16(n)
}

// tcpSocketOf fetches a copy of the call's socket (argument 0) when it is an IPv4 or IPv6 TCP
// socket; the caller closes sfd. ok is false for anything else, and then nothing is open.
func tcpSocketOf(q *intercept.Request) (sfd, family int, ino uint64, ok bool) {
	sfd, typ, family, err := socketOf(q, int(int32(q.Arg(0))))
	if err != nil {
		return -1, 0, 0, false
	}
	if typ == unix.SOCK_STREAM && (family == unix.AF_INET || family == unix.AF_INET6) {
		if ino, err = inodeOf(sfd); err == nil {
			return sfd, family, ino, true
		}
	}
	unix.Close(sfd)
	return -1, 0, 0, false
}

// onBind binds a TCP socket whose port is subscribed: to the port asked for when the program
// could bind it itself and it is free, else to a free one. getsockname keeps answering the
// address asked for.
func (r *Redirector) onBind(q *intercept.Request) {
	addr, _, raw, ok := readSockaddr(q, q.Arg(1), q.Arg(2))
	if !ok || addr.Port() == 0 {
		q.Continue()
		return
	}
	if _, ok := r.opt.Incoming.TargetPort(addr.Port()); !ok {
		q.Continue()
		return
	}
	sfd, family, ino, ok := tcpSocketOf(q)
	if !ok {
		q.Continue() // the kernel gives its own answer (EBADF, ENOTSOCK, EINVAL...)
		return
	}
	defer unix.Close(sfd)
	port := addr.Port()
	if r.opt.Incoming.UID != 0 && port < unprivilegedPortStart() {
		port = 0
	}
	bind := func(ip netip.Addr, port uint16) error {
		return unix.Bind(sfd, toUnix(family, netip.AddrPortFrom(ip, port)))
	}
	ip := addr.Addr()
	err := bind(ip, port)
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		// An address of the target (its pod IP) that this machine does not have.
		ip, _ = loopbackFor(family, addr)
		err = bind(ip, port)
	}
	if errors.Is(err, unix.EADDRINUSE) && port != 0 {
		port = 0
		err = bind(ip, port)
	}
	if err != nil {
		q.Errno(errnoOf(err))
		return
	}
	r.mu.Lock()
	r.listen.bound[ino] = addr.Port()
	r.listen.sockNames[ino] = raw
	r.mu.Unlock()
	if sa, err := unix.Getsockname(sfd); err == nil {
		got, _ := fromUnix(sa)
		r.log.Debug("bind", "asked", addr, "bound", got)
	}
	q.Return(0)
}

// onListen listens on a TCP socket whose port is subscribed and subscribes to the target's
// port before the call returns, so a client that the program's "listening" message starts
// already reaches it.
func (r *Redirector) onListen(q *intercept.Request) {
	sfd, family, ino, ok := tcpSocketOf(q)
	if !ok {
		q.Continue()
		return
	}
	defer unix.Close(sfd)
	sa, err := unix.Getsockname(sfd)
	if err != nil {
		q.Continue()
		return
	}
	local, _ := fromUnix(sa)
	r.mu.Lock()
	asked, wasBound := r.listen.bound[ino]
	_, already := r.listen.listeners[ino]
	r.mu.Unlock()
	// Only a port the program chose (its bind, which doppel made) is subscribed: a socket that
	// listens on a port the kernel picked (bind to port 0, or none) is nobody's service port.
	if !wasBound || already {
		q.Continue()
		return
	}
	target, ok := r.opt.Incoming.TargetPort(asked)
	if !ok {
		q.Continue()
		return
	}
	if err := unix.Listen(sfd, int(int32(q.Arg(1)))); err != nil {
		q.Errno(errnoOf(err))
		return
	}
	r.mu.Lock()
	r.listen.listeners[ino] = &listener{family: family, local: local, target: target}
	r.mu.Unlock()
	r.goHandle(q, func() {
		r.subscribe(target, local)
		q.Return(0)
	})
}

// subscribe asks the agent for the target's port, once per port; another listener for the
// same port (IPv4 and IPv6 sockets) joins it.
func (r *Redirector) subscribe(target uint16, local netip.AddrPort) {
	r.mu.Lock()
	if s, ok := r.listen.subs[target]; ok {
		s.locals = append(s.locals, local)
		r.mu.Unlock()
		return
	}
	s := &incomingSub{locals: []netip.AddrPort{local}}
	r.listen.subs[target] = s
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	in := r.opt.Incoming
	st, err := r.opt.Client.Subscribe(ctx, wire.Subscription{Port: target, Mode: in.Mode, Filter: in.Filter})
	if err != nil {
		r.log.Error("the target's incoming traffic does not reach the program; it listens on this machine only",
			"target port", target, "local", local, "err", err)
		return
	}
	r.mu.Lock()
	s.closer = st
	r.mu.Unlock()
	if in.Mode == wire.ModeMirror || in.Mode.Copies() {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.readFeed(st, target, in.Mode)
		}()
	}
	r.log.Info("receiving the target's incoming traffic", "target port", target, "mode", in.Mode, "local", local)
}

// deliver connects one stolen connection to the program's listener (mirrored and captured
// copies come in their subscription's feed instead, see readFeed).
func (r *Redirector) deliver(in wire.Incoming, st net.Conn) {
	defer st.Close()
	if in.Mode != wire.ModeSteal {
		return // the agent opens streams for stolen connections only
	}
	c, done, err := r.connectProgram(in)
	if err != nil {
		// The agent gives the connection to the target's own service instead.
		st.Write([]byte{wire.IncomingRefused})
		return
	}
	defer done()
	if _, err := st.Write([]byte{wire.IncomingTaken}); err != nil {
		return
	}
	stop := context.AfterFunc(r.ctx, func() { c.Close(); st.Close() })
	defer stop()
	wire.Splice(c, st)
}

// endMirrored ends a mirrored connection to the program the way the real client did (the
// program's answers are read and dropped until it closes too, at most 30 s).
func (r *Redirector) endMirrored(c *net.TCPConn) {
	answers := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(answers)
	}()
	c.CloseWrite()
	select {
	case <-answers:
	case <-time.After(30 * time.Second):
	case <-r.ctx.Done():
	}
}

// connectProgram connects to the program's listener for in; the program's accept will see the
// real client. done closes the connection and forgets it (a while later: the program may still
// ask who its peer was).
func (r *Redirector) connectProgram(in wire.Incoming) (c *net.TCPConn, done func(), err error) {
	r.mu.Lock()
	s := r.listen.subs[in.Port]
	var local netip.AddrPort
	if s != nil && len(s.locals) > 0 {
		local = s.locals[0]
	}
	r.mu.Unlock()
	if !local.IsValid() {
		return nil, nil, errors.New("the program no longer listens")
	}
	ip := local.Addr()
	if ip.IsUnspecified() {
		if ip.Is4() {
			ip = netip.MustParseAddr("127.0.0.1")
		} else {
			ip = netip.IPv6Loopback()
		}
	}
	// The kernel picks the source port at connect (binding port 0 first searches for a free
	// port among all bound ones, which grows slow with thousands of connections in TIME_WAIT).
	// Until the source is known here, the program's accept waits for it (see awaitDelivery).
	port := local.Port()
	// A burst of copies must not overflow the program's accept queue (a dropped SYN waits a
	// second or more to be sent again): at most dialSlots connections are being made at once.
	select {
	case r.listen.dialSlots <- struct{}{}:
	case <-r.ctx.Done():
		return nil, nil, r.ctx.Err()
	}
	r.mu.Lock()
	r.listen.dialing[port]++
	r.mu.Unlock()
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(r.ctx, "tcp", netip.AddrPortFrom(ip, port).String())
	<-r.listen.dialSlots
	var src netip.AddrPort
	r.mu.Lock()
	if err == nil {
		src = conn.LocalAddr().(*net.TCPAddr).AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		r.listen.pending[src] = in
	}
	r.listen.dialing[port]--
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("the program did not take an incoming connection", "remote", in.Remote, "local", local, "err", err)
		return nil, nil, err
	}
	return conn.(*net.TCPConn), func() {
		conn.Close()
		r.mu.Lock()
		delete(r.listen.pending, src)
		r.mu.Unlock()
		time.AfterFunc(time.Minute, func() { r.forgetAccepted(src) })
	}, nil
}

func (r *Redirector) forgetAccepted(src netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ino, ok := r.listen.accepted[src]
	if !ok {
		return
	}
	delete(r.listen.accepted, src)
	delete(r.listen.sockNames, ino)
	delete(r.peers, ino)
}

// onAccept takes a connection from a subscribed listener itself, to answer the real client's
// address; accepts on other sockets continue untouched.
func (r *Redirector) onAccept(q *intercept.Request) {
	r.mu.Lock()
	none := len(r.listen.listeners) == 0
	r.mu.Unlock()
	if none {
		q.Continue()
		return
	}
	fd := int(int32(q.Arg(0)))
	ino, err := q.FDInode(fd)
	if err != nil {
		q.Continue()
		return
	}
	r.mu.Lock()
	l := r.listen.listeners[ino]
	r.mu.Unlock()
	if l == nil {
		q.Continue()
		return
	}
	flags := 0
	if q.Nr() == unix.SYS_ACCEPT4 {
		flags = int(int32(q.Arg(3)))
		if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
			q.Errno(unix.EINVAL)
			return
		}
	}
	sfd, err := q.GetRawFD(fd)
	if err != nil {
		q.Continue()
		return
	}
	fl, err := unix.FcntlInt(uintptr(sfd), unix.F_GETFL, 0)
	if err != nil {
		unix.Close(sfd)
		q.Continue()
		return
	}
	if fl&unix.O_NONBLOCK != 0 {
		// A non-blocking listener (Go, event loops): one try, here.
		defer unix.Close(sfd)
		if err := r.acceptOne(q, sfd, l, flags); err != nil {
			q.Errno(errnoOf(err))
		}
		return
	}
	r.goHandle(q, func() {
		defer unix.Close(sfd)
		r.acceptBlocking(q, sfd, l, flags)
	})
}

// acceptBlocking waits for a connection on a blocking listener. The program's thread cannot
// take signals while doppel holds its call, so a signal that arrives for it ends the wait
// with EINTR, as the kernel's accept would without SA_RESTART (and libc and language
// runtimes retry it).
func (r *Redirector) acceptBlocking(q *intercept.Request, sfd int, l *listener, flags int) {
	for {
		pfd := []unix.PollFd{{Fd: int32(sfd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 100)
		if err != nil && err != unix.EINTR {
			q.Errno(errnoOf(err))
			return
		}
		if n > 0 {
			// A race with another thread may still block here until the next connection.
			err := r.acceptOne(q, sfd, l, flags)
			if err == nil {
				return
			}
			if err != unix.EAGAIN {
				q.Errno(errnoOf(err))
				return
			}
			continue // another thread took it
		}
		if !q.Valid() || r.ctx.Err() != nil {
			q.Errno(unix.EINTR)
			return
		}
		if signalPending(q.Pid()) {
			q.Errno(unix.EINTR)
			return
		}
	}
}

// acceptOne accepts one connection from the listener copy sfd and installs it in the program.
// It returns the error accept4 gave (EAGAIN when there is none) without answering q.
func (r *Redirector) acceptOne(q *intercept.Request, sfd int, l *listener, flags int) error {
	nfd, sa, err := unix.Accept4(sfd, unix.SOCK_CLOEXEC|flags&unix.SOCK_NONBLOCK)
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	peerAddr, _ := fromUnix(sa)
	peerRaw := encodeSockaddr(l.family, peerAddr)
	ino, _ := inodeOf(nfd)
	r.mu.Lock()
	in, fromTarget := r.awaitDelivery(peerAddr, l.local.Port())
	if fromTarget {
		peerRaw = encodeSockaddr(l.family, in.Remote)
		r.peers[ino] = peer{raw: peerRaw}
		r.listen.sockNames[ino] = encodeSockaddr(l.family, in.Local)
		r.listen.accepted[peerAddr] = ino
	}
	r.mu.Unlock()
	if err := writeSockaddr(q, q.Arg(1), q.Arg(2), peerRaw); err != nil {
		return unix.EFAULT
	}
	newfd, err := q.AddRawFD(nfd, flags&unix.SOCK_CLOEXEC != 0)
	if err != nil {
		return err
	}
	q.Return(int64(newfd))
	return nil
}

// deliveryWait bounds how long an accept waits for a delivery's connect to return: the program
// can accept the connection as soon as the handshake is done, a moment before doppel's connect
// call returns and records the source.
const deliveryWait = 5 * time.Millisecond

// awaitDelivery finds the incoming connection whose local connection comes from peer; while a
// delivery to port is still connecting, it waits for it a little. r.mu is held (and released
// while waiting). ok is false for connections doppel did not make.
func (r *Redirector) awaitDelivery(peer netip.AddrPort, port uint16) (in wire.Incoming, ok bool) {
	deadline := time.Now().Add(deliveryWait)
	for {
		if in, ok = r.listen.pending[peer]; ok || !peer.Addr().IsLoopback() || r.listen.dialing[port] == 0 || time.Now().After(deadline) {
			return in, ok
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Microsecond)
		r.mu.Lock()
	}
}

// signalPending reports whether thread tid has a signal pending that it does not block.
func signalPending(tid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return false
	}
	var pending, blocked uint64
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			continue
		}
		switch k {
		case "SigPnd", "ShdPnd":
			pending |= n
		case "SigBlk":
			blocked = n
		}
	}
	return pending&^blocked != 0
}

// onGetsockname answers the address the program asked for on sockets whose bind doppel made,
// and the target's address on connections it accepted from the target.
func (r *Redirector) onGetsockname(q *intercept.Request) {
	r.answerAddr(q, func() bool { return len(r.listen.sockNames) > 0 }, func(ino uint64) ([]byte, bool) {
		raw, ok := r.listen.sockNames[ino]
		return raw, ok
	})
}

// closeSubscriptions ends every subscription: the agent removes the rules.
func (r *Redirector) closeSubscriptions() {
	r.mu.Lock()
	var closers []io.Closer
	for _, s := range r.listen.subs {
		if s.closer != nil {
			closers = append(closers, s.closer)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range closers {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
}
