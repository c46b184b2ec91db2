package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/intercept"
	"doppel.dev/doppel/internal/wire"
)

// Router decides where a destination goes: true when the connection should leave from the
// target's network. names are the DNS names the program learned for the address.
type Router interface {
	Remote(dst netip.AddrPort, names []string) bool
}

// Options configure a Redirector.
type Options struct {
	Client *Client
	// Outgoing turns on redirection of TCP connects and UDP traffic that Route sends remote.
	Outgoing bool
	Route    Router
	// DNS makes the program resolve as the target: Files are served in place of the local ones
	// and the target's nameservers are reached from the target even when Outgoing is off.
	DNS bool
	// Incoming, when set, subscribes the ports the program listens on to the target's.
	Incoming *IncomingOptions
	// RemoteFiles, when set, gives the program the target's files where its rules say so.
	RemoteFiles *FilesOptions
	// Sockets, when set, gives sockets of the target's network to put in the place of the
	// program's TCP sockets (local targets); otherwise TCP goes through the local proxy.
	Sockets *Sockets
	// TargetNetns, when set with Sockets, is the target's network namespace (an open
	// /proc/PID/ns/net, not the caller's): the program then runs in it (ProgramNetns), so that
	// its TCP sockets are the target's from socket(2) on.
	TargetNetns *os.File
	Files       map[string][]byte // absolute path → content, served read-only
	Hostname    string            // answered by uname
	Logger      *slog.Logger
}

// Redirector routes a supervised program's syscalls into a session. Its handlers run on the
// supervisor's notification goroutine and move anything that blocks to goroutines of their own.
type Redirector struct {
	opt  Options
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc

	proxy4, proxy6 *tcpProxy
	epolls         epollFDs
	freshOpts      map[freshKey][]int // copiedSockopts of a fresh socket
	nameservers    map[netip.Addr]bool
	localNetns     uint64 // cookie of doppel's own network namespace
	balance        placeBalance

	mu      sync.Mutex
	peers   map[uint64]peer // by socket inode: the sockets doppel connected for the program
	udp     map[uint64]bool // socket inodes whose datagrams may come from a relay
	relays  map[relayKey]*relay
	byRelay map[netip.AddrPort]netip.AddrPort // relay's local address → the remote it stands for
	flows   map[netip.AddrPort]*flow          // program socket address → its flow to the agent
	names   map[netip.Addr][]string           // addresses → names learned from DNS and hosts
	listen  listenState
	wg      sync.WaitGroup
}

// NewRedirector opens the local proxy listeners (loopback only) and returns a Redirector.
func NewRedirector(opt Options) (*Redirector, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Redirector{
		opt: opt, log: opt.Logger, ctx: ctx, stop: cancel,
		nameservers: make(map[netip.Addr]bool),
		peers:       make(map[uint64]peer),
		udp:         make(map[uint64]bool),
		relays:      make(map[relayKey]*relay),
		byRelay:     make(map[netip.AddrPort]netip.AddrPort),
		flows:       make(map[netip.AddrPort]*flow),
		names:       make(map[netip.Addr][]string),
		epolls:      epollFDs{byTID: make(map[int][]int)},
		freshOpts:   make(map[freshKey][]int),
		listen:      newListenState(),
	}
	r.balance.v.Store(placeStart)
	if conf, ok := opt.Files["/etc/resolv.conf"]; ok {
		for _, ns := range parseNameservers(conf) {
			r.nameservers[ns] = true
		}
	}
	if hosts, ok := opt.Files["/etc/hosts"]; ok {
		for ip, names := range parseHosts(hosts) {
			r.names[ip] = names
		}
	}
	var err error
	if opt.Sockets != nil {
		if r.localNetns, err = localNetnsCookie(); err != nil {
			cancel()
			return nil, fmt.Errorf("network namespace cookie (SO_NETNS_COOKIE, Linux 5.14): %w", err)
		}
		if !r.inTarget() {
			// The program's TCP sockets are this machine's: socket(2) or connect takes ready
			// ones. In the target's namespace only a socket put back and then connected to a
			// remote destination does, and it asks for one.
			opt.Sockets.prefill()
		}
	}
	if r.proxy4, err = newTCPProxy(r, "tcp4", "127.0.0.1:0"); err != nil {
		cancel()
		return nil, err
	}
	// IPv6 loopback may be missing; IPv6 destinations then fail with ENETUNREACH.
	if r.proxy6, err = newTCPProxy(r, "tcp6", "[::1]:0"); err != nil {
		r.log.Debug("no IPv6 loopback; IPv6 destinations cannot be redirected", "err", err)
		r.proxy6 = nil
	}
	if opt.Incoming != nil {
		go opt.Client.ServeIncoming(r.deliver)
	}
	return r, nil
}

// Close stops the proxies and relays and ends every flow.
func (r *Redirector) Close() {
	r.closeSubscriptions()
	r.stop()
	r.proxy4.ln.Close()
	if r.proxy6 != nil {
		r.proxy6.ln.Close()
	}
	r.mu.Lock()
	for _, rl := range r.relays {
		rl.pc.Close()
	}
	for _, f := range r.flows {
		f.st.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Rules lists the syscalls the program's filter must trap for the enabled features.
func (r *Redirector) Rules() []intercept.Rule {
	var rules []intercept.Rule
	always := func(nr int) { rules = append(rules, intercept.Rule{Nr: nr, ArgNonZero: -1}) }
	if r.opt.Outgoing || r.opt.DNS {
		always(unix.SYS_CONNECT)
		always(unix.SYS_GETPEERNAME)
		rules = append(rules,
			intercept.Rule{Nr: unix.SYS_SENDTO, ArgNonZero: 4},
			intercept.Rule{Nr: unix.SYS_RECVFROM, ArgNonZero: 4})
		always(unix.SYS_SENDMSG)
		always(unix.SYS_SENDMMSG)
		always(unix.SYS_RECVMSG)
		if r.opt.Sockets != nil {
			always(unix.SYS_EPOLL_CREATE1)
			if sysEpollCreate >= 0 {
				always(sysEpollCreate)
			}
		}
	}
	switch {
	case r.inTarget():
		rules = append(rules, localSocketRules()...)
	case r.placing():
		rules = append(rules, socketRule())
	}
	if r.opt.Incoming != nil || r.placing() {
		always(unix.SYS_BIND)
		always(unix.SYS_LISTEN)
	}
	if r.opt.Incoming != nil {
		always(unix.SYS_ACCEPT4)
		if sysAccept >= 0 {
			always(sysAccept)
		}
		always(unix.SYS_GETSOCKNAME)
		if !r.opt.Outgoing && !r.opt.DNS {
			always(unix.SYS_GETPEERNAME)
		}
	}
	if r.opt.DNS || r.opt.RemoteFiles != nil {
		always(unix.SYS_OPENAT)
		always(unix.SYS_OPENAT2)
		if sysOpen >= 0 {
			always(sysOpen)
		}
	}
	if r.opt.DNS {
		always(unix.SYS_UNAME)
	}
	if r.opt.RemoteFiles != nil {
		always(unix.SYS_NEWFSTATAT)
		always(unix.SYS_STATX)
		always(unix.SYS_FACCESSAT)
		always(unix.SYS_FACCESSAT2)
		always(unix.SYS_READLINKAT)
		always(unix.SYS_UNLINKAT)
		always(unix.SYS_MKDIRAT)
		always(unix.SYS_RENAMEAT2)
		always(unix.SYS_TRUNCATE)
		for _, nr := range []int{sysStat, sysLstat, sysAccess, sysReadlink, sysUnlink, sysRmdir, sysMkdir, sysRename, sysRenameat} {
			if nr >= 0 {
				always(nr)
			}
		}
	}
	return rules
}

// Handlers returns the handler of every trapped syscall.
func (r *Redirector) Handlers() map[int]intercept.Handler {
	h := map[int]intercept.Handler{
		unix.SYS_CONNECT:     r.onConnect,
		unix.SYS_GETPEERNAME: r.onGetpeername,
		unix.SYS_SENDTO:      r.onSendto,
		unix.SYS_SENDMSG:     r.onSendmsg,
		unix.SYS_SENDMMSG:    r.onSendmmsg,
		unix.SYS_RECVFROM:    r.onRecvfrom,
		unix.SYS_RECVMSG:     r.onRecvmsg,
		unix.SYS_OPENAT:      func(q *intercept.Request) { r.onOpen(q, true) },
		unix.SYS_OPENAT2:     r.onOpenat2,
		unix.SYS_UNAME:       r.onUname,
		unix.SYS_NEWFSTATAT:  r.onNewfstatat,
		unix.SYS_STATX:       r.onStatx,
		unix.SYS_FACCESSAT:   func(q *intercept.Request) { r.onAccess(q, true, false) },
		unix.SYS_FACCESSAT2:  func(q *intercept.Request) { r.onAccess(q, true, true) },
		unix.SYS_READLINKAT:  func(q *intercept.Request) { r.onReadlink(q, true) },
		unix.SYS_UNLINKAT:    func(q *intercept.Request) { r.onUnlink(q, true, false) },
		unix.SYS_MKDIRAT:     func(q *intercept.Request) { r.onMkdir(q, true) },
		unix.SYS_RENAMEAT2:   func(q *intercept.Request) { r.onRename(q, true, true) },
		unix.SYS_TRUNCATE:    r.onTruncate,
	}
	if sysOpen >= 0 {
		h[sysOpen] = func(q *intercept.Request) { r.onOpen(q, false) }
	}
	if sysStat >= 0 {
		h[sysStat] = func(q *intercept.Request) { r.onStat(q, false) }
		h[sysLstat] = func(q *intercept.Request) { r.onStat(q, true) }
		h[sysAccess] = func(q *intercept.Request) { r.onAccess(q, false, false) }
		h[sysReadlink] = func(q *intercept.Request) { r.onReadlink(q, false) }
		h[sysUnlink] = func(q *intercept.Request) { r.onUnlink(q, false, false) }
		h[sysRmdir] = func(q *intercept.Request) { r.onUnlink(q, false, true) }
		h[sysMkdir] = func(q *intercept.Request) { r.onMkdir(q, false) }
		h[sysRename] = func(q *intercept.Request) { r.onRename(q, false, false) }
	}
	if sysRenameat >= 0 {
		h[sysRenameat] = func(q *intercept.Request) { r.onRename(q, true, false) }
	}
	h[unix.SYS_BIND] = r.onBind
	h[unix.SYS_LISTEN] = r.onListen
	if r.opt.Incoming == nil {
		h[unix.SYS_BIND] = (*intercept.Request).Continue
		h[unix.SYS_LISTEN] = (*intercept.Request).Continue
	}
	if r.placing() {
		if r.inTarget() {
			h[unix.SYS_SOCKET] = r.onSocketLocal
		} else {
			h[unix.SYS_SOCKET] = r.onSocket
		}
		// A socket that binds or listens is a local one: put back before the call goes on.
		for _, nr := range []int{unix.SYS_BIND, unix.SYS_LISTEN} {
			handle := h[nr]
			h[nr] = func(q *intercept.Request) {
				if r.unplaceArg0(q) {
					handle(q)
				}
			}
		}
	}
	h[unix.SYS_ACCEPT4] = r.onAccept
	if sysAccept >= 0 {
		h[sysAccept] = r.onAccept
	}
	h[unix.SYS_GETSOCKNAME] = r.onGetsockname
	if f := r.opt.RemoteFiles; f != nil && f.OpensBlock {
		for _, nr := range []int{unix.SYS_OPENAT, unix.SYS_OPENAT2, sysOpen, unix.SYS_NEWFSTATAT, unix.SYS_STATX,
			unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2, unix.SYS_READLINKAT, unix.SYS_UNLINKAT, unix.SYS_MKDIRAT,
			unix.SYS_RENAMEAT2, unix.SYS_TRUNCATE, sysStat, sysLstat, sysAccess, sysReadlink, sysUnlink, sysRmdir,
			sysMkdir, sysRename, sysRenameat} {
			if handle, ok := h[nr]; ok && nr >= 0 {
				h[nr] = func(q *intercept.Request) { r.goHandle(q, func() { handle(q) }) }
			}
		}
	}
	h[unix.SYS_EPOLL_CREATE1] = r.onEpollCreate
	if sysEpollCreate >= 0 {
		h[sysEpollCreate] = r.onEpollCreate
	}
	return h
}

// remote says whether a destination leaves from the target.
func (r *Redirector) remote(dst netip.AddrPort) bool {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if r.opt.DNS && dst.Port() == 53 && r.nameservers[dst.Addr()] {
		return true
	}
	if !r.opt.Outgoing {
		return false
	}
	r.mu.Lock()
	names := r.names[dst.Addr()]
	r.mu.Unlock()
	return r.opt.Route.Remote(dst, names)
}

// readSockaddr reads the sockaddr argument of a call; ok is false when it is not an inet one.
func readSockaddr(q *intercept.Request, ptr, size uint64) (netip.AddrPort, int, []byte, bool) {
	if ptr == 0 || size < 2 || size > 128 {
		return netip.AddrPort{}, 0, nil, false
	}
	b := make([]byte, size)
	if q.ReadMem(ptr, b) != nil {
		return netip.AddrPort{}, 0, nil, false
	}
	ap, fam, ok := parseSockaddr(b)
	return ap, fam, b, ok
}

func (r *Redirector) onConnect(q *intercept.Request) {
	dst, _, raw, ok := readSockaddr(q, q.Arg(1), q.Arg(2))
	if !ok || !r.remote(dst) {
		if ok && r.placing() {
			r.balance.add(-placeLocalCost)
			// A destination that stays local: not from the target's network.
			if !r.unplaceArg0(q) {
				return
			}
		}
		r.forgetUDPPeer(q)
		q.Continue()
		return
	}
	fd := int(int32(q.Arg(0)))
	inPlace := false
	if r.opt.Sockets != nil {
		answered, replaceable := r.connectInPlaceNow(q, fd, dst)
		if answered {
			return
		}
		inPlace = replaceable
	}
	r.goHandle(q, func() { r.connect(q, fd, dst, raw, inPlace) })
}

// goHandle runs a handler that may block on its own goroutine.
func (r *Redirector) goHandle(q *intercept.Request, fn func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
}

// socketOf fetches a copy of the program's socket (a bare descriptor, which the caller closes:
// an *os.File would switch the shared description to blocking mode) with its type and family.
func socketOf(q *intercept.Request, fd int) (sfd, typ, family int, err error) {
	sfd, err = q.GetRawFD(fd)
	if err != nil {
		return -1, 0, 0, err
	}
	if typ, err = unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
		family, err = unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	}
	if err != nil {
		unix.Close(sfd)
		return -1, 0, 0, err
	}
	return sfd, typ, family, nil
}

// connect redirects a connect to a remote destination; inPlace says to try putting a socket of
// the target's network in place first (connectInPlaceNow found the socket replaceable).
func (r *Redirector) connect(q *intercept.Request, fd int, dst netip.AddrPort, raw []byte, inPlace bool) {
	sfd, typ, family, err := socketOf(q, fd)
	if err != nil {
		if errors.Is(err, unix.ENOTSOCK) {
			q.Errno(unix.ENOTSOCK)
		} else {
			q.Continue()
		}
		return
	}
	defer unix.Close(sfd)
	ino, err := inodeOf(sfd)
	if err != nil {
		q.Continue()
		return
	}
	r.mu.Lock()
	p, again := r.peers[ino]
	r.mu.Unlock()
	if again && typ == unix.SOCK_STREAM && p.via == nil {
		q.Continue() // an accepted connection: the kernel says EISCONN
		return
	}
	if again && typ == unix.SOCK_STREAM {
		// A program polling a non-blocking connect by calling connect again: the kernel's answer
		// for the connection to the proxy (EALREADY, EISCONN) is the right one.
		if err := unix.Connect(sfd, p.via); err != nil {
			q.Errno(errnoOf(err))
			return
		}
		q.Return(0)
		return
	}
	switch typ {
	case unix.SOCK_STREAM:
		if inPlace && r.connectInPlace(q, sfd, fd, family, dst) {
			return
		}
		r.connectTCP(q, sfd, family, ino, dst, raw)
	case unix.SOCK_DGRAM:
		r.connectUDP(q, sfd, family, ino, dst, raw)
	default:
		q.Continue()
	}
}

// loopbackFor returns the loopback address a socket of family uses to stand in for dst.
func loopbackFor(family int, dst netip.AddrPort) (netip.Addr, error) {
	switch {
	case family == unix.AF_INET:
		return netip.MustParseAddr("127.0.0.1"), nil
	case dst.Addr().Is4In6() || dst.Addr().Is4():
		return netip.MustParseAddr("::ffff:127.0.0.1"), nil
	}
	return netip.IPv6Loopback(), nil
}

func (r *Redirector) connectTCP(q *intercept.Request, sfd int, family int, ino uint64, dst netip.AddrPort, raw []byte) {
	lo, _ := loopbackFor(family, dst)
	proxy := r.proxy4
	if !lo.Unmap().Is4() {
		proxy = r.proxy6
	}
	if proxy == nil {
		q.Errno(unix.ENETUNREACH)
		return
	}
	// Dial first, so that the program gets the answer the target's network gave.
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	remote, err := r.opt.Client.DialTCP(ctx, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
	cancel()
	if err != nil {
		r.log.Debug("remote connect failed", "dst", dst, "err", err)
		q.Errno(errnoFor(err))
		return
	}
	// The copy's local port identifies the connection at the proxy.
	sa, err := unix.Getsockname(sfd)
	if err != nil {
		remote.Close()
		q.Errno(errnoOf(err))
		return
	}
	local, _ := fromUnix(sa)
	if local.Port() == 0 {
		if err := unix.Bind(sfd, toUnix(family, netip.AddrPortFrom(lo, 0))); err != nil {
			remote.Close()
			q.Errno(errnoOf(err))
			return
		}
		sa, _ = unix.Getsockname(sfd)
		local, _ = fromUnix(sa)
	}
	proxy.add(local.Port(), remote, ino)
	via := toUnix(family, netip.AddrPortFrom(lo, proxy.port))
	r.mu.Lock()
	r.peers[ino] = peer{raw: raw, via: via}
	r.mu.Unlock()
	err = unix.Connect(sfd, via)
	if err != nil && err != unix.EINPROGRESS {
		proxy.take(local.Port())
		remote.Close()
		r.forget(ino)
		q.Errno(errnoOf(err))
		return
	}
	r.log.Debug("connect redirected", "dst", dst, "via", proxy.port, "local", local)
	if err == unix.EINPROGRESS {
		q.Errno(unix.EINPROGRESS)
		return
	}
	q.Return(0)
}

// forgetUDPPeer drops the remote peer of a UDP socket that is being connected elsewhere (or
// disconnected with AF_UNSPEC), so getpeername stops answering the old remote.
func (r *Redirector) forgetUDPPeer(q *intercept.Request) {
	if !r.hasUDP() {
		return
	}
	if ino, err := q.FDInode(int(int32(q.Arg(0)))); err == nil && r.isUDP(ino) {
		r.forget(ino)
	}
}

func (r *Redirector) forget(ino uint64) {
	r.mu.Lock()
	delete(r.peers, ino)
	r.mu.Unlock()
}

// peer is a program socket doppel connected: raw is the sockaddr the program asked for, via
// the loopback address the socket is really connected to.
type peer struct {
	raw []byte
	via unix.Sockaddr
}

// tcpProxy accepts the program's redirected connections on loopback and joins each to the
// stream dialled for it.
type tcpProxy struct {
	r    *Redirector
	ln   net.Listener
	port uint16

	mu      sync.Mutex
	pending map[uint16]pendingConn // by the program socket's local port
}

type pendingConn struct {
	remote net.Conn
	ino    uint64
}

func newTCPProxy(r *Redirector, network, addr string) (*tcpProxy, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen for redirected connections on %s: %w", addr, err)
	}
	p := &tcpProxy{r: r, ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), pending: make(map[uint16]pendingConn)}
	r.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *tcpProxy) add(port uint16, remote net.Conn, ino uint64) {
	p.mu.Lock()
	if old, ok := p.pending[port]; ok {
		old.remote.Close()
	}
	p.pending[port] = pendingConn{remote, ino}
	p.mu.Unlock()
}

func (p *tcpProxy) take(port uint16) (pendingConn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc, ok := p.pending[port]
	delete(p.pending, port)
	return pc, ok
}

func (p *tcpProxy) serve() {
	defer p.r.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			for port, pc := range p.pending {
				pc.remote.Close()
				delete(p.pending, port)
			}
			p.mu.Unlock()
			return
		}
		pc, ok := p.take(uint16(c.RemoteAddr().(*net.TCPAddr).Port))
		if !ok {
			// Not a connection doppel redirected: nobody else may use the proxy.
			c.Close()
			continue
		}
		p.r.wg.Add(1)
		go func() {
			defer p.r.wg.Done()
			// Close of the Redirector ends every connection still open.
			stop := context.AfterFunc(p.r.ctx, func() { c.Close(); pc.remote.Close() })
			defer stop()
			wire.Splice(c, pc.remote)
			c.Close()
			pc.remote.Close()
			p.r.forget(pc.ino)
		}()
	}
}

func (r *Redirector) onGetpeername(q *intercept.Request) {
	r.answerAddr(q, func() bool { return len(r.peers) > 0 }, func(ino uint64) ([]byte, bool) {
		p, ok := r.peers[ino]
		return p.raw, ok
	})
}

// answerAddr answers a getpeername or getsockname with the sockaddr that lookup has for the
// socket's inode. Sockets lookup does not know, and all of them while any says the table is
// empty, get the kernel's answer. Both run with r.mu held.
func (r *Redirector) answerAddr(q *intercept.Request, any func() bool, lookup func(ino uint64) ([]byte, bool)) {
	r.mu.Lock()
	known := any()
	r.mu.Unlock()
	if !known {
		q.Continue()
		return
	}
	ino, err := q.FDInode(int(int32(q.Arg(0))))
	if err != nil {
		q.Continue()
		return
	}
	r.mu.Lock()
	raw, ok := lookup(ino)
	r.mu.Unlock()
	if !ok {
		q.Continue()
		return
	}
	if err := writeSockaddr(q, q.Arg(1), q.Arg(2), raw); err != nil {
		q.Errno(unix.EFAULT)
		return
	}
	q.Return(0)
}

// writeSockaddr answers a (sockaddr *, socklen_t *) pair the way the kernel does: it writes at
// most *lenp bytes and sets *lenp to the full length.
func writeSockaddr(q *intercept.Request, ptr, lenPtr uint64, sa []byte) error {
	if ptr == 0 || lenPtr == 0 {
		return nil
	}
	var lb [4]byte
	if err := q.ReadMem(lenPtr, lb[:]); err != nil {
		return err
	}
	n := int(int32(nativeUint32(lb[:])))
	if n < 0 {
		return unix.EINVAL
	}
	if n > len(sa) {
		n = len(sa)
	}
	if err := q.WriteMem(ptr, sa[:n]); err != nil {
		return err
	}
	putNativeUint32(lb[:], uint32(len(sa)))
	return q.WriteMem(lenPtr, lb[:])
}

// errnoFor maps a failed remote operation to the errno the program gets.
func errnoFor(err error) syscall.Errno {
	var re *wire.RemoteError
	if errors.As(err, &re) && re.Errno != 0 {
		return syscall.Errno(re.Errno)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return unix.ETIMEDOUT
	}
	return unix.ENETUNREACH
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}
