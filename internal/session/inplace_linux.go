package session

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/intercept"
)

// Connecting in place (local targets): instead of connecting the program's socket to the local
// proxy, doppel takes a fresh socket made in the target's network namespace, gives it the
// program socket's options and mode, connects it to the destination and puts it in the
// program's socket's place (SECCOMP_ADDFD_FLAG_SETFD). The program then holds a socket of the
// target's network: its bytes never pass through doppel, getpeername and getsockname answer
// as in the target. Replacing a descriptor drops its epoll registrations, so those of a socket
// already registered with epoll are moved to its replacement (moveEpoll, on a goroutine of its
// own); a socket already bound takes the proxy path instead.

// sockopt is an option copied from the program's socket to its replacement when it differs.
type sockopt struct {
	level, name int
	doubled     bool // the kernel reports twice the value set (SO_RCVBUF, SO_SNDBUF)
}

var copiedSockopts = []sockopt{
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE, false},
	{unix.SOL_SOCKET, unix.SO_REUSEADDR, false},
	{unix.SOL_SOCKET, unix.SO_RCVBUF, true},
	{unix.SOL_SOCKET, unix.SO_SNDBUF, true},
	{unix.SOL_SOCKET, unix.SO_PRIORITY, false},
	{unix.SOL_SOCKET, unix.SO_MARK, false},
	{unix.IPPROTO_TCP, unix.TCP_NODELAY, false},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, false},
	{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, false},
	{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, false},
	{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, false},
	{unix.IPPROTO_TCP, unix.TCP_MAXSEG, false},
	{unix.IPPROTO_TCP, unix.TCP_QUICKACK, false},
	{unix.SOL_SOCKET, unix.SO_REUSEPORT, false},
	{unix.SOL_SOCKET, unix.SO_RCVLOWAT, false},
	{unix.IPPROTO_IP, unix.IP_TOS, false},
	{unix.IPPROTO_IP, unix.IP_FREEBIND, false},
	{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, false}, // AF_INET6 only: fails, and is skipped, on AF_INET
	{unix.IPPROTO_IPV6, unix.IPV6_TCLASS, false},
	{unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, false},
	{unix.IPPROTO_TCP, unix.TCP_FASTOPEN, false},
	{unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, false},
	{unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, false},
}

// freshKey names the options of a fresh socket: by family, of this machine's network or the
// target's (per-network sysctls set some defaults).
type freshKey struct {
	family int
	local  bool
}

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14): the cookie of a socket's network namespace.
const soNetnsCookie = 71

// netnsCookie returns the network namespace cookie of socket sfd.
func netnsCookie(sfd int) (uint64, error) {
	return unix.GetsockoptUint64(sfd, unix.SOL_SOCKET, soNetnsCookie)
}

// localNetnsCookie returns the cookie of this process's network namespace.
func localNetnsCookie() (uint64, error) {
	sfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(sfd)
	return netnsCookie(sfd)
}

// connectInPlace tries the in-place connect and says whether it answered q. When it cannot
// get a socket from the agent it answers nothing, and the caller takes the proxy path.
func (r *Redirector) connectInPlace(q *intercept.Request, sfd, fd, family int, dst netip.AddrPort) bool {
	ino, err := inodeOf(sfd)
	if err != nil {
		return false
	}
	regs, err := r.epolls.registrations(q.Pid(), ino)
	if err != nil {
		r.log.Debug("epoll registrations unknown; using the proxy", "err", err)
		return false
	}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	ns, err := r.opt.Sockets.Get(ctx, family)
	cancel()
	if err != nil {
		r.log.Debug("no socket from the agent; using the proxy", "err", err)
		return false
	}
	r.placeSocket(q, sfd, fd, family, dst, ns, regs)
	return true
}

// connectInPlaceNow is the in-place connect done on the notification goroutine, which spares
// waking another: it only goes ahead when a socket of the target's network is ready. It says
// whether it answered q and, when it did not, whether the program's socket can be replaced.
func (r *Redirector) connectInPlaceNow(q *intercept.Request, fd int, dst netip.AddrPort) (answered, replaceable bool) {
	sfd, err := q.GetRawFD(fd)
	if err != nil {
		return false, true // the goroutine's own look decides
	}
	defer unix.Close(sfd)
	if cookie, err := netnsCookie(sfd); err == nil && cookie != r.localNetns {
		r.balance.add(1)
		q.Continue() // a socket of the target's network already (placed): the kernel answers
		return true, false
	}
	typ, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return false, false
	}
	r.balance.add(1)
	family, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return false, false
	}
	ino, err := inodeOf(sfd)
	if err != nil {
		return false, false
	}
	registered, ok := r.replaceable(q, sfd, ino)
	if !ok {
		return false, false
	}
	if registered {
		return false, true // moving epoll registrations takes a thread: not here
	}
	ns, ok := r.opt.Sockets.TryGet(family)
	if !ok {
		return false, true
	}
	r.placeSocket(q, sfd, fd, family, dst, ns, nil)
	return true, false
}

// placeSocket gives ns (a fresh socket of the target's network) the options and blocking mode
// of the program's socket sfd and puts it in place of the program's fd, then lets the
// program's own connect go on: the kernel looks the descriptor up only after the filter, so
// the connect runs on the new socket, in the program's thread, with the kernel's own
// semantics (blocking or not, errors, timeouts). The program socket's epoll registrations
// regs move to ns. It answers q and closes ns.
func (r *Redirector) placeSocket(q *intercept.Request, sfd, fd, family int, dst netip.AddrPort, ns *os.File, regs []epollReg) {
	defer ns.Close()
	rc, err := ns.SyscallConn()
	if err != nil {
		q.Errno(unix.EBADF)
		return
	}
	var replaced bool
	rc.Control(func(nfd uintptr) { replaced, err = r.replaceSocket(q, sfd, fd, family, int(nfd), false, regs) })
	switch {
	case !replaced:
		r.log.Debug("put the target's socket in place", "err", err)
		q.Errno(errnoOf(err))
		return
	case err != nil:
		// The connect goes on, but the program's epoll may not hear of it.
		r.log.Warn("put the target's socket in place", "fd", fd, "err", err)
	}
	r.log.Debug("connect in place", "dst", dst, "fd", fd, "epoll registrations", len(regs))
	q.Continue()
}

// replaceable says whether the program's socket can be replaced (plain TCP and unbound), and
// whether it is registered with an epoll instance of the program (its registrations then have
// to move with it).
func (r *Redirector) replaceable(q *intercept.Request, sfd int, ino uint64) (registered, ok bool) {
	if p, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		r.log.Debug("socket cannot be replaced: not plain TCP; using the proxy", "protocol", p)
		return false, false
	}
	sa, err := unix.Getsockname(sfd)
	if err != nil {
		return false, false
	}
	if local, ok := fromUnix(sa); !ok || local.Port() != 0 {
		r.log.Debug("socket cannot be replaced: bound; using the proxy", "local", local)
		return false, false
	}
	regs, err := r.epolls.registrations(q.Pid(), ino)
	if err != nil {
		r.log.Debug("socket cannot be replaced: epoll registrations unknown; using the proxy", "err", err)
		return false, false
	}
	return len(regs) > 0, true
}

// epollFDs knows the epoll descriptors of the program's threads, so that checking whether a
// socket is registered with one reads only their fdinfo. A thread's list comes from a scan of
// /proc/TID/fd the first time; every list is dropped when any program thread calls
// epoll_create (trapped, see onEpollCreate), which is rare.
type epollFDs struct {
	mu    sync.Mutex
	byTID map[int][]int // thread → the epoll descriptors of its descriptor table, as last scanned
}

// onEpollCreate forgets every list of epoll descriptors: a new one is being made.
func (r *Redirector) onEpollCreate(q *intercept.Request) {
	r.epolls.mu.Lock()
	clear(r.epolls.byTID)
	r.epolls.mu.Unlock()
	q.Continue()
}

// list returns the epoll descriptors of thread tid's descriptor table.
func (e *epollFDs) list(tid int) ([]int, error) {
	e.mu.Lock()
	fds, ok := e.byTID[tid]
	e.mu.Unlock()
	if ok {
		return fds, nil
	}
	fds, err := scanEpollFDs(tid)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.byTID[tid] = fds
	e.mu.Unlock()
	return fds, nil
}

// scanEpollFDs lists the epoll descriptors of a process.
func scanEpollFDs(pid int) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, e := range entries {
		if l, err := os.Readlink(dir + e.Name()); err == nil && l == "anon_inode:[eventpoll]" {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				fds = append(fds, fd)
			}
		}
	}
	return fds, nil
}

// cloexecOf says whether the program's descriptor fd is close-on-exec (fdinfo's flags).
func cloexecOf(tid, fd int) bool {
	var buf [512]byte
	b, err := readProc("/proc/"+strconv.Itoa(tid)+"/fdinfo/"+strconv.Itoa(fd), buf[:])
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), "flags:")
	v, _, _ := strings.Cut(rest, "\n")
	flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
	return err == nil && flags&unix.O_CLOEXEC != 0
}

// readProc reads a small /proc file into buf with bare system calls (os.ReadFile costs several
// more on this hot path). A file larger than buf is cut.
func readProc(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

// inodeOf returns the inode of a descriptor (a socket's stays the same across dup and fork).
func inodeOf(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// copySockopts gives dst, a fresh socket of family (of this machine's network when local, else
// of the target's), the options of src that differ from a fresh socket's, and says whether src
// is blocking. What a fresh socket has is read once per family and network, from the first dst.
func (r *Redirector) copySockopts(src, dst, family int, local bool) (blocking bool, err error) {
	key := freshKey{family, local}
	r.mu.Lock()
	fresh, ok := r.freshOpts[key]
	r.mu.Unlock()
	if !ok {
		fresh = make([]int, len(copiedSockopts))
		for i, o := range copiedSockopts {
			if fresh[i], err = unix.GetsockoptInt(dst, o.level, o.name); err != nil {
				fresh[i] = -1
			}
		}
		r.mu.Lock()
		r.freshOpts[key] = fresh
		r.mu.Unlock()
	}
	for i, o := range copiedSockopts {
		v, err := unix.GetsockoptInt(src, o.level, o.name)
		if err != nil || v == fresh[i] {
			continue
		}
		if o.doubled {
			v /= 2
		}
		unix.SetsockoptInt(dst, o.level, o.name, v)
	}
	if l, err := unix.GetsockoptLinger(src, unix.SOL_SOCKET, unix.SO_LINGER); err == nil && l.Onoff != 0 {
		unix.SetsockoptLinger(dst, unix.SOL_SOCKET, unix.SO_LINGER, l)
	}
	fl, err := unix.FcntlInt(uintptr(src), unix.F_GETFL, 0)
	if err != nil {
		return false, err
	}
	return fl&unix.O_NONBLOCK == 0, nil
}
