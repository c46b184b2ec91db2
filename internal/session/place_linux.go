package session

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/intercept"
)

// Placing at socket(2) (local targets, outgoing on): the program's socket(AF_INET[6],
// SOCK_STREAM) is answered with a fresh socket of the target's network from the agent's pool
// (SECCOMP_ADDFD_FLAG_SEND: installed and returned in one step), so that a connect to a remote
// destination finds a socket of the target's network already there and the kernel runs it as
// it is, with nothing to copy or replace. Most TCP sockets of a client are for remote
// destinations; the others are put back: a placed socket that connects to a destination that
// stays local, binds, listens, or sends with MSG_FASTOPEN to a local destination is first
// replaced by a fresh socket of this machine's network with its options and mode (unplace),
// epoll registrations included, and the call then runs on that one.

// placing says whether the program's TCP sockets are placed at socket(2) in this session:
// by the kernel when the program runs in the target's network namespace (inTarget), else
// by onSocket.
func (r *Redirector) placing() bool {
	return r.opt.Sockets != nil && r.opt.Outgoing && intercept.CanReturnFD()
}

// In the target's network namespace (local targets whose network is not this machine's, the
// default): the program runs there, so every TCP socket it makes is one of the target's
// network with nothing trapped, and a connect to a remote destination costs one notification
// that only lets it go on; a placed socket needs no descriptor installed (ADDFD wakes the
// program's thread and waits for it, which costs more than the notification itself). What must
// stay on this machine is put back, as for placed sockets: TCP sockets that connect to a local
// destination, bind or listen. Every other socket doppel handles as this machine's (UDP, with
// its relays; unix sockets, whose abstract names belong to a network namespace) is answered
// at socket(2) with one made by doppel in its own network (onSocketLocal).

// inTarget says whether the program runs in the target's network namespace.
func (r *Redirector) inTarget() bool { return r.placing() && r.opt.TargetNetns != nil }

// ProgramNetns returns the network namespace the program must start in, or nil for the
// caller's: the target's when the session places sockets and the caller gave it.
func (r *Redirector) ProgramNetns() *os.File {
	if r.inTarget() {
		return r.opt.TargetNetns
	}
	return nil
}

// localSocketRules trap the socket(2) calls that make a socket doppel keeps on this machine
// when the program runs in the target's network: unix sockets, UDP over IPv4 and IPv6, and
// the stream protocols other than TCP (SCTP, MPTCP), which doppel does not place. Raw and ICMP
// sockets are left to the kernel (the target's, with the program's own permissions: doppel
// makes sockets as root).
func localSocketRules() []intercept.Rule {
	inet := intercept.ArgMatch{Arg: 0, In: []uint32{unix.AF_INET, unix.AF_INET6}}
	return []intercept.Rule{
		{Nr: unix.SYS_SOCKET, ArgNonZero: -1, Match: []intercept.ArgMatch{{Arg: 0, In: []uint32{unix.AF_UNIX}}}},
		{Nr: unix.SYS_SOCKET, ArgNonZero: -1, Match: []intercept.ArgMatch{inet,
			{Arg: 1, Mask: 0xf, In: []uint32{unix.SOCK_DGRAM}},
			{Arg: 2, In: []uint32{0, unix.IPPROTO_UDP, unix.IPPROTO_UDPLITE}},
		}},
		{Nr: unix.SYS_SOCKET, ArgNonZero: -1, Match: []intercept.ArgMatch{inet,
			{Arg: 1, Mask: 0xf, In: []uint32{unix.SOCK_STREAM, unix.SOCK_SEQPACKET}},
			{Arg: 2, In: []uint32{unix.IPPROTO_SCTP, unix.IPPROTO_MPTCP}},
		}},
	}
}

// onSocketLocal answers socket(2) with a socket doppel makes in its own network namespace,
// this machine's, with the same family, type, flags and protocol (or the error that gave).
func (r *Redirector) onSocketLocal(q *intercept.Request) {
	family, typ, proto := int(int32(q.Arg(0))), int(int32(q.Arg(1))), int(int32(q.Arg(2)))
	if family != unix.AF_UNIX && family != unix.AF_INET && family != unix.AF_INET6 {
		q.Continue() // not one the rules trap
		return
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		q.Errno(errnoOf(err))
		return
	}
	defer unix.Close(fd)
	if err := q.ReturnFD(fd, typ&unix.SOCK_CLOEXEC != 0); err != nil {
		r.log.Debug("answer socket(2) with a socket of this machine", "family", family, "err", err)
		q.Errno(errnoOf(err))
	}
}

// placeBalance weighs the program's recent connects, so that a program whose connections
// mostly stay local does not pay for placing: each TCP connect to a remote destination adds
// one (a placed socket spares replacing the program's at connect), each connect to a local
// destination takes placeLocalCost (putting a placed socket back costs about that many times
// more). socket(2) places while the balance is positive. It starts at placeStart and stays
// within ±placeMax, so that it follows a change of habit within a few dozen connects.
type placeBalance struct{ v atomic.Int32 }

const (
	placeStart     = 8
	placeMax       = 32
	placeLocalCost = 5
)

func (b *placeBalance) add(d int32) {
	for {
		old := b.v.Load()
		n := min(max(old+d, -placeMax), placeMax)
		if n == old || b.v.CompareAndSwap(old, n) {
			return
		}
	}
}

func (b *placeBalance) on() bool { return b.v.Load() > 0 }

// socketRule traps socket(2) for TCP over IPv4 and IPv6 only.
func socketRule() intercept.Rule {
	return intercept.Rule{Nr: unix.SYS_SOCKET, ArgNonZero: -1, Match: []intercept.ArgMatch{
		{Arg: 0, In: []uint32{unix.AF_INET, unix.AF_INET6}},
		{Arg: 1, Mask: 0xf, In: []uint32{unix.SOCK_STREAM}},
		{Arg: 2, In: []uint32{0, unix.IPPROTO_TCP}},
	}}
}

// onSocket answers socket(2) with a ready socket of the target's network, or lets the kernel
// make a local one when none is ready (the connect then replaces it, as without placing).
func (r *Redirector) onSocket(q *intercept.Request) {
	family, typ := int(int32(q.Arg(0))), int(int32(q.Arg(1)))
	if typ&0xf != unix.SOCK_STREAM || typ&^(0xf|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		q.Continue()
		return
	}
	if !r.balance.on() {
		q.Continue() // mostly local connects of late
		return
	}
	ns, ok := r.opt.Sockets.TryGet(family)
	if !ok {
		q.Continue()
		return
	}
	defer ns.Close()
	rc, err := ns.SyscallConn()
	if err != nil {
		q.Continue()
		return
	}
	var rerr error
	rc.Control(func(fd uintptr) {
		// The agent's sockets are blocking, as socket(2) makes them without SOCK_NONBLOCK.
		if typ&unix.SOCK_NONBLOCK != 0 {
			rerr = unix.SetNonblock(int(fd), true)
		}
		if rerr == nil {
			rerr = q.ReturnFD(int(fd), typ&unix.SOCK_CLOEXEC != 0)
		}
	})
	if rerr != nil {
		r.log.Debug("place a socket of the target's network", "err", rerr)
		q.Continue()
	}
}

// placed fetches the program's descriptor fd and says whether it is a TCP socket of the
// target's network (a placed one); it returns the fetched copy, which the caller closes,
// and its family.
func (r *Redirector) placed(q *intercept.Request, fd int) (sfd, family int, ok bool) {
	sfd, err := q.GetRawFD(fd)
	if err != nil {
		return -1, 0, false
	}
	// The cookie first: most sockets that get here are local ones, which it tells apart.
	if cookie, err := netnsCookie(sfd); err == nil && cookie != r.localNetns {
		typ, err1 := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_TYPE)
		family, err2 := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err1 == nil && err2 == nil && typ == unix.SOCK_STREAM && (family == unix.AF_INET || family == unix.AF_INET6) {
			return sfd, family, true
		}
	}
	unix.Close(sfd)
	return -1, 0, false
}

// unplaceArg0 puts a local socket in the place of the placed socket named by the call's first
// argument, if it is one, without answering q, and says whether the caller may go on with the
// call. When the socket cannot be put back it answers q with an error itself: the call must not
// run on the target's network (a connect to loopback would reach the target's).
func (r *Redirector) unplaceArg0(q *intercept.Request) bool {
	fd := int(int32(q.Arg(0)))
	sfd, family, ok := r.placed(q, fd)
	if !ok {
		return true
	}
	defer unix.Close(sfd)
	replaced, err := r.unplace(q, sfd, fd, family)
	switch {
	case err == nil:
		return true
	case replaced:
		// The call runs on a local socket, but the program's epoll may not hear of it.
		r.log.Warn("put a local socket back in place of a socket of the target's network", "fd", fd, "err", err)
		return true
	}
	r.log.Debug("could not put a local socket back in place", "fd", fd, "err", err)
	q.Errno(errnoOf(err))
	return false
}

// unplace replaces the program's placed socket fd (sfd, a copy of it) with a fresh socket of
// this machine's network (replaceSocket). replaced says whether the new socket is in place.
func (r *Redirector) unplace(q *intercept.Request, sfd, fd, family int) (replaced bool, err error) {
	ls, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(ls)
	ino, err := inodeOf(sfd)
	if err != nil {
		return false, err
	}
	regs, err := r.epolls.registrations(q.Pid(), ino)
	if err != nil {
		return false, err
	}
	return r.replaceSocket(q, sfd, fd, family, ls, true, regs)
}

// replaceSocket puts nfd, a fresh socket of family (of this machine's network when local,
// else of the target's), in the place of the program's socket fd (sfd, a copy of it): nfd
// first gets sfd's options and blocking mode, and afterwards sfd's epoll registrations regs.
// It answers nothing; replaced says whether nfd is in place, also when moving the
// registrations then failed (err says so).
func (r *Redirector) replaceSocket(q *intercept.Request, sfd, fd, family, nfd int, local bool, regs []epollReg) (replaced bool, err error) {
	blocking, err := r.copySockopts(sfd, nfd, family, local)
	if err != nil {
		return false, err
	}
	if err := unix.SetNonblock(nfd, !blocking); err != nil {
		return false, err
	}
	if err := q.AddRawFDAt(nfd, fd, cloexecOf(q.Pid(), fd)); err != nil {
		return false, err
	}
	if len(regs) > 0 {
		if err := moveEpoll(q, regs, sfd, nfd); err != nil {
			return true, fmt.Errorf("move epoll registrations: %w", err)
		}
	}
	return true, nil
}

// epollReg is one registration of a socket with one of the program's epoll instances.
type epollReg struct {
	epfd   int    // the epoll descriptor, in the program
	tfd    int    // the descriptor number it was registered under (its key with the file)
	events uint32 // as registered, flags (EPOLLET, EPOLLONESHOT...) included
	data   uint64
}

// registrations lists the registrations of the socket with inode ino with the epoll instances
// of thread tid's descriptor table, from their fdinfo.
func (e *epollFDs) registrations(tid int, ino uint64) ([]epollReg, error) {
	fds, err := e.list(tid)
	if err != nil {
		return nil, err
	}
	want := strconv.FormatUint(ino, 16)
	var regs []epollReg
	var buf [4096]byte
	for _, epfd := range fds {
		path := "/proc/" + strconv.Itoa(tid) + "/fdinfo/" + strconv.Itoa(epfd)
		b, err := readProc(path, buf[:])
		if err == nil && len(b) == len(buf) {
			b, err = os.ReadFile(path) // a line per registration: it can be longer than buf
		}
		if err != nil {
			continue // closed since
		}
		for line := range strings.Lines(string(b)) {
			if reg, ok := parseEpollLine(line, want); ok {
				reg.epfd = epfd
				regs = append(regs, reg)
			}
		}
	}
	return regs, nil
}

// parseEpollLine parses an epoll fdinfo line ("tfd: 5 events: 19 data: 5 pos:0 ino:1a2b
// sdev:8") for the file with inode ino (hex).
func parseEpollLine(line, ino string) (epollReg, bool) {
	if !strings.Contains(line, " ino:"+ino) { // most lines are other files': skip them cheaply
		return epollReg{}, false
	}
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "tfd:" || f[2] != "events:" || f[4] != "data:" {
		return epollReg{}, false
	}
	found := false
	for _, x := range f[6:] {
		if v, ok := strings.CutPrefix(x, "ino:"); ok && v == ino {
			found = true
		}
	}
	if !found {
		return epollReg{}, false
	}
	tfd, err1 := strconv.Atoi(f[1])
	events, err2 := strconv.ParseUint(f[3], 16, 32)
	data, err3 := strconv.ParseUint(f[5], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return epollReg{}, false
	}
	return epollReg{tfd: tfd, events: uint32(events), data: data}, true
}

// moveEpoll moves registrations of the old socket (old, a copy of it here) to the new one
// (nw, here), now in its place in the program. An epoll entry is keyed by the file and the
// descriptor number it was added under, so the calls are made from a thread with a descriptor
// table of its own, where the two sockets can take the program's numbers.
func moveEpoll(q *intercept.Request, regs []epollReg, old, nw int) error {
	eps := make(map[int]int) // program's epoll fd → a copy here
	defer func() {
		for _, fd := range eps {
			unix.Close(fd)
		}
	}()
	for _, reg := range regs {
		if _, ok := eps[reg.epfd]; ok {
			continue
		}
		fd, err := q.GetRawFD(reg.epfd)
		if err != nil {
			return err
		}
		eps[reg.epfd] = fd
	}
	return inOwnFDTable(func() error {
		for _, reg := range regs {
			ep := eps[reg.epfd]
			if ep == reg.tfd || old == reg.tfd || nw == reg.tfd {
				return fmt.Errorf("descriptor %d is needed twice", reg.tfd)
			}
			if err := unix.Dup3(old, reg.tfd, 0); err != nil {
				return err
			}
			// Gone already when the program closed its number since: nothing to remove.
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, reg.tfd, nil); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
			if err := unix.Dup3(nw, reg.tfd, 0); err != nil {
				return err
			}
			// Fd and Pad are the two halves of epoll_data on every architecture.
			ev := unix.EpollEvent{Events: reg.events, Fd: int32(uint32(reg.data)), Pad: int32(uint32(reg.data >> 32))}
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, reg.tfd, &ev); err != nil {
				return err
			}
			unix.Close(reg.tfd)
		}
		return nil
	})
}

// inOwnFDTable runs fn on a new thread whose descriptor table is a copy of this process's
// (unshare CLONE_FILES): what fn opens, closes or moves there leaves this process's table
// alone. The thread ends with fn.
func inOwnFDTable(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes when the goroutine returns
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_FILES): %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
