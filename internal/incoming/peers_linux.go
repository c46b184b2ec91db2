package incoming

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/wire"
)

// A connection that an earlier session passed on reaches a later session's agent from the
// earlier agent's socket, not from the real client. So that every session sees the real
// client, each agent answers "who is behind this address of yours?" on an abstract unix
// socket named after its rank, which exists only in the target's network namespace and only
// while the agent lives. A later agent asks the earlier ranks when a connection came through
// the output chain (its address after the redirect is loopback, its original one is not).

// peerSocket is the abstract unix socket name of the agent of rank.
func peerSocket(rank int) string { return fmt.Sprintf("@doppel-peer-%02d", rank) }

// forwards maps the local address of each connection an agent passed on to the real client.
type forwards struct {
	mu      sync.Mutex
	m       map[netip.AddrPort]netip.AddrPort
	dialing int // connections being passed on whose local address is not known yet
}

// begin and end bracket a dial whose connection add will record: a lookup meanwhile waits for
// it (the next agent may ask as soon as the handshake is done, before the dial returns here).
func (f *forwards) begin() {
	f.mu.Lock()
	f.dialing++
	f.mu.Unlock()
}

func (f *forwards) end() {
	f.mu.Lock()
	f.dialing--
	f.mu.Unlock()
}

// lookupWait is lookup that waits up to lookupWait for a dial in flight to record its address.
func (f *forwards) lookupWait(local netip.AddrPort) (netip.AddrPort, bool) {
	deadline := time.Now().Add(lookupWait)
	for {
		f.mu.Lock()
		r, ok := f.m[local]
		dialing := f.dialing
		f.mu.Unlock()
		if ok || dialing == 0 || time.Now().After(deadline) {
			return r, ok
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// lookupWait bounds how long a lookup waits for a dial in flight.
const lookupWait = 20 * time.Millisecond

func (f *forwards) add(local, remote netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[netip.AddrPort]netip.AddrPort)
	}
	f.m[local] = remote
}

func (f *forwards) remove(local netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, local)
}

// forwardConn is a connection the agent passed on; it is forgotten when closed.
type forwardConn struct {
	*net.TCPConn
	f     *forwards
	local netip.AddrPort
	once  sync.Once
}

func (c *forwardConn) Close() error {
	c.once.Do(func() { c.f.remove(c.local) })
	return c.TCPConn.Close()
}

// Messages on the peer socket (SOCK_SEQPACKET): peerLookup followed by an address asks who is
// behind it (answer: 1 and the real client's address, or 0); peerAdopt carries a connection's
// two sockets (SCM_RIGHTS) for the receiving agent to relay from then on.
const (
	peerLookup = 'L'
	peerAdopt  = 'H'
)

// servePeers answers other sessions' agents on ln.
func (e *Engine) servePeers(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			uc := c.(*net.UnixConn)
			buf := make([]byte, 64)
			oob := make([]byte, unix.CmsgSpace(2*4))
			for {
				n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
				if err != nil || n == 0 {
					return
				}
				switch buf[0] {
				case peerLookup:
					a, _, err := wire.ParseAddr(buf[1:n])
					if err != nil {
						return
					}
					if r, ok := e.forwards.lookupWait(a); ok {
						uc.Write(wire.AppendAddr([]byte{1}, r))
					} else {
						uc.Write([]byte{0})
					}
				case peerAdopt:
					if err := e.adopted(oob[:oobn]); err != nil {
						e.log.Warn("a handed-over connection was refused", "err", err)
					}
				default:
					return
				}
			}
		}()
	}
}

// realRemote asks the agents of ranks below rank who is behind remote, one of their
// connections passed on; it returns remote itself when none knows.
func (e *Engine) realRemote(rank int, remote netip.AddrPort) netip.AddrPort {
	for r := rank - 1; r >= 1; r-- {
		var c net.Conn
		err := e.opt.InNetns(func() (err error) {
			c, err = net.DialTimeout("unixpacket", peerSocket(r), time.Second)
			return err
		})
		if err != nil {
			continue // no agent of that rank
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		var n int
		if _, err = c.Write(wire.AppendAddr([]byte{peerLookup}, remote)); err == nil {
			n, err = c.Read(buf)
		}
		c.Close()
		if err != nil || n < 1 || buf[0] != 1 {
			continue
		}
		if a, _, err := wire.ParseAddr(buf[1:n]); err == nil {
			return a
		}
	}
	return remote
}
