package session

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/intercept"
	"doppel.dev/doppel/internal/wire"
)

// UDP to remote destinations goes through relays: one loopback UDP socket per remote address
// (and per loopback family), whose own address stands for that remote. A program socket that
// "connects" to a remote is connected to its relay; one that sends to a remote sends to the
// relay. The relay forwards what it receives over the program socket's flow (one agent stream
// per program socket), and the agent's replies are sent to the program socket from the relay
// that stands for their source. So the kernel delivers each reply from an address that maps
// back to the real source, and recvfrom/recvmsg of those sockets answer with the real one.

type relayKey struct {
	remote netip.AddrPort
	v4     bool // bound on 127.0.0.1 (else ::1)
}

type relay struct {
	pc     *net.UDPConn
	remote netip.AddrPort
	addr   netip.AddrPort
}

// flow is one program socket's UDP association with the agent.
type flow struct {
	st      net.Conn
	program netip.AddrPort // the program socket's address as the relays see it
	wmu     sync.Mutex
}

// relayFor returns the relay standing for remote on the loopback family of v4.
func (r *Redirector) relayFor(remote netip.AddrPort, v4 bool) (*relay, error) {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	key := relayKey{remote, v4}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rl, ok := r.relays[key]; ok {
		return rl, nil
	}
	addr := &net.UDPAddr{IP: net.IPv6loopback}
	network := "udp6"
	if v4 {
		addr, network = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, "udp4"
	}
	pc, err := net.ListenUDP(network, addr)
	if err != nil {
		return nil, err
	}
	local := netip.MustParseAddrPort(pc.LocalAddr().String())
	rl := &relay{pc: pc, remote: remote, addr: netip.AddrPortFrom(local.Addr().Unmap(), local.Port())}
	r.relays[key] = rl
	r.byRelay[rl.addr] = remote
	r.wg.Add(1)
	go r.serveRelay(rl)
	return rl, nil
}

// relayTarget is where a program socket of family sends to reach rl.
func relayTarget(family int, rl *relay) unix.Sockaddr {
	a := rl.addr
	if family == unix.AF_INET6 && a.Addr().Is4() {
		a = netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	}
	return toUnix(family, a)
}

// serveRelay forwards datagrams the program sent to rl over the sender's flow.
func (r *Redirector) serveRelay(rl *relay) {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := rl.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		f, err := r.flowFor(from)
		if err != nil {
			r.log.Debug("udp flow", "err", err)
			continue
		}
		f.wmu.Lock()
		err = wire.WriteDatagram(f.st, wire.Datagram{Addr: rl.remote, Payload: buf[:n]})
		f.wmu.Unlock()
		if err != nil {
			r.log.Debug("udp forward", "err", err)
		}
	}
}

func (r *Redirector) flowFor(program netip.AddrPort) (*flow, error) {
	r.mu.Lock()
	f, ok := r.flows[program]
	r.mu.Unlock()
	if ok {
		return f, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	st, err := r.opt.Client.OpenUDP(ctx)
	cancel()
	if err != nil {
		return nil, err
	}
	f = &flow{st: st, program: program}
	r.mu.Lock()
	if old, ok := r.flows[program]; ok {
		r.mu.Unlock()
		st.Close()
		return old, nil
	}
	r.flows[program] = f
	r.mu.Unlock()
	r.wg.Add(1)
	go r.serveFlow(f)
	return f, nil
}

// serveFlow delivers the agent's datagrams to the program socket from the matching relay.
func (r *Redirector) serveFlow(f *flow) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.flows, f.program)
		r.mu.Unlock()
		f.st.Close()
	}()
	buf := make([]byte, 65535+32)
	for {
		d, err := wire.ReadDatagram(f.st, buf)
		if err != nil {
			return
		}
		if d.Addr.Port() == 53 {
			r.learnDNS(d.Payload)
		}
		rl, err := r.relayFor(d.Addr, f.program.Addr().Is4())
		if err != nil {
			continue
		}
		rl.pc.WriteToUDPAddrPort(d.Payload, f.program)
	}
}

func (r *Redirector) markUDP(ino uint64, raw []byte, via unix.Sockaddr) {
	r.mu.Lock()
	r.udp[ino] = true
	if raw != nil {
		r.peers[ino] = peer{raw: raw, via: via}
	}
	r.mu.Unlock()
}

func (r *Redirector) isUDP(ino uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.udp[ino]
}

func (r *Redirector) connectUDP(q *intercept.Request, sfd int, family int, ino uint64, dst netip.AddrPort, raw []byte) {
	rl, err := r.relayFor(dst, loopbackIs4(family, dst))
	if err != nil {
		q.Errno(unix.ENETUNREACH)
		return
	}
	via := relayTarget(family, rl)
	if err := unix.Connect(sfd, via); err != nil {
		q.Errno(errnoOf(err))
		return
	}
	r.markUDP(ino, raw, via)
	q.Return(0)
}

// datagramSocket fetches the program's socket fd for a handler that deals only with UDP; for
// anything else it lets the call continue and says so.
func datagramSocket(q *intercept.Request, fd int) (sfd, family int, ok bool) {
	sfd, typ, family, err := socketOf(q, fd)
	if err == nil && typ == unix.SOCK_DGRAM {
		return sfd, family, true
	}
	if err == nil {
		unix.Close(sfd)
	}
	q.Continue()
	return -1, 0, false
}

func loopbackIs4(family int, dst netip.AddrPort) bool {
	lo, _ := loopbackFor(family, dst)
	return lo.Unmap().Is4()
}

func (r *Redirector) onSendto(q *intercept.Request) {
	dst, _, _, ok := readSockaddr(q, q.Arg(4), q.Arg(5))
	r.sendTo(q, dst, ok, int(q.Arg(3)), func() (payload, oob []byte, err error) {
		payload = make([]byte, min(q.Arg(2), 65535))
		return payload, nil, q.ReadMem(q.Arg(1), payload)
	})
}

// sendVia sends one datagram of the program's to dst through dst's relay and answers q.
func (r *Redirector) sendVia(q *intercept.Request, sfd, fd, family int, dst netip.AddrPort, payload, oob []byte, flags int) {
	rl, err := r.relayFor(dst, loopbackIs4(family, dst))
	if err != nil {
		q.Errno(unix.ENETUNREACH)
		return
	}
	n, err := unix.SendmsgN(sfd, payload, oob, relayTarget(family, rl), flags)
	if err != nil {
		q.Errno(errnoOf(err))
		return
	}
	if ino, err := q.FDInode(fd); err == nil {
		r.markUDP(ino, nil, nil)
	}
	q.Return(int64(n))
}

// msghdr field offsets on 64-bit Linux.
const (
	sizeofMsghdr  = 56
	sizeofMmsghdr = 64
	offNamelen    = 8
	offIov        = 16
	offIovlen     = 24
	offControl    = 32
	offControllen = 40
	offFlags      = 48
)

type msghdr struct {
	name       uint64
	namelen    uint32
	iov        uint64
	iovlen     uint64
	control    uint64
	controllen uint64
}

func readMsghdr(q *intercept.Request, ptr uint64) (msghdr, error) {
	var b [sizeofMsghdr]byte
	if err := q.ReadMem(ptr, b[:]); err != nil {
		return msghdr{}, err
	}
	le := binary.NativeEndian
	return msghdr{
		name: le.Uint64(b[0:]), namelen: le.Uint32(b[offNamelen:]),
		iov: le.Uint64(b[offIov:]), iovlen: le.Uint64(b[offIovlen:]),
		control: le.Uint64(b[offControl:]), controllen: le.Uint64(b[offControllen:]),
	}, nil
}

func (r *Redirector) onSendmsg(q *intercept.Request) {
	m, err := readMsghdr(q, q.Arg(1))
	if err != nil || m.name == 0 {
		q.Continue()
		return
	}
	dst, _, _, ok := readSockaddr(q, m.name, uint64(m.namelen))
	r.sendTo(q, dst, ok, int(q.Arg(2)), func() (payload, oob []byte, err error) {
		return readMsgData(q, m)
	})
}

// sendTo handles a sendto or sendmsg with a destination (dst, read if ok) and flags: a datagram
// to a remote destination is sent by doppel through the agent, with the payload and control
// data that read takes from the program's memory; anything else runs as it is, after a placed
// TCP socket that sends with MSG_FASTOPEN to a local destination is put back.
func (r *Redirector) sendTo(q *intercept.Request, dst netip.AddrPort, ok bool, flags int, read func() (payload, oob []byte, err error)) {
	if !ok || !r.remote(dst) {
		// TCP Fast Open to a destination that stays local.
		if ok && flags&unix.MSG_FASTOPEN != 0 && r.placing() && !r.unplaceArg0(q) {
			return
		}
		q.Continue()
		return
	}
	r.goHandle(q, func() {
		fd := int(int32(q.Arg(0)))
		sfd, family, ok := datagramSocket(q, fd)
		if !ok {
			return
		}
		defer unix.Close(sfd)
		payload, oob, err := read()
		if err != nil {
			q.Errno(unix.EFAULT)
			return
		}
		r.sendVia(q, sfd, fd, family, dst, payload, oob, flags)
	})
}

func readMsgData(q *intercept.Request, m msghdr) (payload, oob []byte, err error) {
	if m.iovlen > 1024 || m.controllen > 4096 {
		return nil, nil, unix.EMSGSIZE
	}
	if payload, err = q.ReadIov(m.iov, int(m.iovlen), 65535); err != nil {
		return nil, nil, err
	}
	if m.control != 0 && m.controllen > 0 {
		oob = make([]byte, m.controllen)
		if err = q.ReadMem(m.control, oob); err != nil {
			return nil, nil, err
		}
	}
	return payload, oob, nil
}

// onSendmmsg handles sendmmsg with destination addresses (the glibc resolver calls it on
// connected sockets, without addresses: those continue untouched).
func (r *Redirector) onSendmmsg(q *intercept.Request) {
	vec, vlen := q.Arg(1), int(min(q.Arg(2), 1024))
	named := false
	for i := range vlen {
		m, err := readMsghdr(q, vec+uint64(i)*sizeofMmsghdr)
		if err != nil {
			q.Continue()
			return
		}
		if m.name == 0 {
			continue
		}
		if _, _, _, ok := readSockaddr(q, m.name, uint64(m.namelen)); !ok {
			q.Continue() // not an inet destination: nothing of doppel's
			return
		}
		named = true
	}
	if !named {
		q.Continue()
		return
	}
	r.goHandle(q, func() {
		fd := int(int32(q.Arg(0)))
		sfd, family, ok := datagramSocket(q, fd)
		if !ok {
			return
		}
		defer unix.Close(sfd)
		sent := 0
		for i := range vlen {
			hdr := vec + uint64(i)*sizeofMmsghdr
			m, err := readMsghdr(q, hdr)
			if err != nil {
				break
			}
			payload, oob, err := readMsgData(q, m)
			if err != nil {
				break
			}
			var to unix.Sockaddr
			if m.name != 0 {
				dst, _, _, _ := readSockaddr(q, m.name, uint64(m.namelen))
				to = toUnix(family, dst)
				if r.remote(dst) {
					rl, err := r.relayFor(dst, loopbackIs4(family, dst))
					if err != nil {
						break
					}
					to = relayTarget(family, rl)
				}
			}
			n, err := unix.SendmsgN(sfd, payload, oob, to, int(q.Arg(3)))
			if err != nil {
				if sent == 0 {
					q.Errno(errnoOf(err))
					return
				}
				break
			}
			var lb [4]byte
			binary.NativeEndian.PutUint32(lb[:], uint32(n))
			q.WriteMem(hdr+sizeofMsghdr, lb[:])
			sent++
		}
		if ino, err := q.FDInode(fd); err == nil {
			r.markUDP(ino, nil, nil)
		}
		q.Return(int64(sent))
	})
}

func (r *Redirector) onRecvfrom(q *intercept.Request) {
	fd := int(int32(q.Arg(0)))
	if !r.hasUDP() {
		q.Continue()
		return
	}
	ino, err := q.FDInode(fd)
	if err != nil || !r.isUDP(ino) {
		q.Continue()
		return
	}
	r.goHandle(q, func() {
		sfd, _, family, err := socketOf(q, fd)
		if err != nil {
			q.Continue()
			return
		}
		defer unix.Close(sfd)
		buf := make([]byte, min(q.Arg(2), 1<<20))
		n, _, _, from, err := recvOnBehalf(q, sfd, buf, nil, int(q.Arg(3)))
		if err != nil {
			q.Errno(errnoOf(err))
			return
		}
		if err := q.WriteMem(q.Arg(1), buf[:min(n, len(buf))]); err != nil {
			q.Errno(unix.EFAULT)
			return
		}
		if sa := r.sourceFor(family, from); sa != nil {
			writeSockaddr(q, q.Arg(4), q.Arg(5), sa)
		}
		q.Return(int64(n))
	})
}

func (r *Redirector) onRecvmsg(q *intercept.Request) {
	if !r.hasUDP() {
		q.Continue()
		return
	}
	fd := int(int32(q.Arg(0)))
	ino, err := q.FDInode(fd)
	if err != nil || !r.isUDP(ino) {
		q.Continue()
		return
	}
	m, err := readMsghdr(q, q.Arg(1))
	if err != nil || m.name == 0 || m.iovlen > 1024 {
		q.Continue()
		return
	}
	r.goHandle(q, func() {
		sfd, _, family, err := socketOf(q, fd)
		if err != nil {
			q.Continue()
			return
		}
		defer unix.Close(sfd)
		size, err := iovSize(q, m)
		if err != nil {
			q.Errno(unix.EFAULT)
			return
		}
		buf := make([]byte, size)
		var oob []byte
		if m.control != 0 && m.controllen > 0 {
			oob = make([]byte, min(m.controllen, 4096))
		}
		n, oobn, rflags, from, err := recvOnBehalf(q, sfd, buf, oob, int(q.Arg(2)))
		if err != nil {
			q.Errno(errnoOf(err))
			return
		}
		if _, err := q.WriteIov(m.iov, int(m.iovlen), buf[:min(n, len(buf))]); err != nil {
			q.Errno(unix.EFAULT)
			return
		}
		hdr := q.Arg(1)
		var b8 [8]byte
		if oob != nil {
			q.WriteMem(m.control, oob[:oobn])
		}
		binary.NativeEndian.PutUint64(b8[:], uint64(oobn))
		q.WriteMem(hdr+offControllen, b8[:])
		binary.NativeEndian.PutUint32(b8[:4], uint32(rflags))
		q.WriteMem(hdr+offFlags, b8[:4])
		if sa := r.sourceFor(family, from); sa != nil {
			n := min(len(sa), int(m.namelen))
			q.WriteMem(m.name, sa[:n])
			binary.NativeEndian.PutUint32(b8[:4], uint32(len(sa)))
			q.WriteMem(hdr+offNamelen, b8[:4])
		}
		q.Return(int64(n))
	})
}

func iovSize(q *intercept.Request, m msghdr) (int, error) {
	b := make([]byte, 16*m.iovlen)
	if err := q.ReadMem(m.iov, b); err != nil {
		return 0, err
	}
	total := 0
	for i := range int(m.iovlen) {
		total += int(binary.NativeEndian.Uint64(b[16*i+8:]))
	}
	return min(total, 1<<20), nil
}

func (r *Redirector) hasUDP() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.udp) > 0
}

// sourceFor is the source address the program sees for a datagram from "from": the remote a
// relay stands for, or from itself.
func (r *Redirector) sourceFor(family int, from unix.Sockaddr) []byte {
	ap, ok := fromUnix(from)
	if !ok {
		return nil
	}
	r.mu.Lock()
	remote, isRelay := r.byRelay[ap]
	r.mu.Unlock()
	if isRelay {
		ap = remote
	}
	return encodeSockaddr(family, ap)
}

// recvOnBehalf receives on the program's socket as the program's call would have: it blocks
// when the socket is blocking (polling so that a program that died is noticed), and honours
// MSG_DONTWAIT and SO_RCVTIMEO.
func recvOnBehalf(q *intercept.Request, sfd int, buf, oob []byte, flags int) (n, oobn, rflags int, from unix.Sockaddr, err error) {
	fl, err := unix.FcntlInt(uintptr(sfd), unix.F_GETFL, 0)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	block := fl&unix.O_NONBLOCK == 0 && flags&unix.MSG_DONTWAIT == 0
	var deadline time.Time
	if tv, err := unix.GetsockoptTimeval(sfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO); err == nil && (tv.Sec != 0 || tv.Usec != 0) {
		deadline = time.Now().Add(time.Duration(tv.Nano()))
	}
	for {
		n, oobn, rflags, from, err = unix.Recvmsg(sfd, buf, oob, flags|unix.MSG_DONTWAIT)
		if err != unix.EAGAIN || !block {
			return n, oobn, rflags, from, err
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return 0, 0, 0, nil, unix.EAGAIN
		}
		unix.Poll([]unix.PollFd{{Fd: int32(sfd), Events: unix.POLLIN}}, 200)
		if !q.Valid() {
			return 0, 0, 0, nil, unix.EINTR
		}
	}
}
