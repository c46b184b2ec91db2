package capture

import (
	"log/slog"
	"net/netip"
	"time"
)

// Sink receives the client-to-server bytes of one captured connection, in order.
//
// Its methods are called from the capture goroutine, which is also the only reader of the
// packet ring: a Sink that blocks makes the kernel drop packets (and so end other connections
// incomplete). A Sink must therefore queue what it gets and return at once, and deal with a full
// queue itself (by returning an error from Write, for example). It must not call Close, which
// waits for the capture goroutine.
type Sink interface {
	// Write receives the next bytes of the stream. p is only valid during the call (it may
	// point into the packet ring): Write must copy what it keeps. An error stops delivery for
	// this connection: no more Write calls, and End(false, "write: ...") follows at once.
	Write(p []byte) error
	// End is called exactly once, after the last Write. complete is true when the client ended
	// the connection (FIN or RST) after all of its data was delivered. Otherwise reason says
	// why the stream stops where it does, such as "lost 1448 bytes at offset 20480",
	// "buffer limit", "port no longer captured" or "capture stopped".
	End(complete bool, reason string)
}

// Options configure a Capture.
type Options struct {
	// NetnsFD is the network namespace to capture in (-1: the caller's own). It is used only
	// when InNetns is nil.
	NetnsFD int
	// InNetns runs fn on a thread inside the network namespace to capture in (a socket keeps
	// the namespace it was created in). nil: Start enters NetnsFD itself, on a locked thread of
	// its own, or stays where it is when NetnsFD is -1.
	InNetns func(fn func() error) error
	Logger  *slog.Logger
	// Open is called, from the capture goroutine, for each new connection to a captured port:
	// when the client's first segment after its SYN is seen (its data, or its FIN or RST: bare
	// ACKs are not captured), so that connections the server refuses open nothing. remote is the
	// client's address, local the server's. It returns where the bytes go; an error or a nil
	// Sink ignores the connection (it counts as Missed). Like a Sink, it must return at once.
	Open func(remote, local netip.AddrPort) (Sink, error)
	// IgnoreMark and IgnoreMarkMask leave out the packets whose mark (the sending socket's
	// SO_MARK, kept over loopback) masked by IgnoreMarkMask is IgnoreMark: the connections that
	// agents of other sessions make to pass on connections the capture saw already. A zero
	// mask leaves out nothing.
	IgnoreMark, IgnoreMarkMask uint32
	// Tap copies with an eBPF program at the ingress of every interface of the namespace
	// instead of a packet socket. A segment the tap cannot copy (its ring is full) is dropped,
	// so the client sends it again: what the server gets, the capture gets, and a connection
	// ends incomplete only when a segment could not be read at all (Stats.Drops). It needs
	// CAP_BPF and CAP_NET_ADMIN and Linux 6.6 (TCX links). An interface that appears after
	// Start is tapped when the kernel announces it (a netlink socket in the namespace); a
	// connection over it that starts before is missed.
	Tap bool

	// Knobs for tests; zero means the package default.
	ringBlocks    int           // blocks in the ring (ringBlocks)
	ringBlockSize int           // bytes per block (ringBlockSize)
	gapTimeout    time.Duration // how long a gap may wait for a retransmission (gapTimeout)
	tapPoll       time.Duration // with Tap, how long the reader waits between readings, idle or not (tapPoll, tapIdlePoll)
}

// Stats count what a Capture saw since Start.
type Stats struct {
	// Packets is the number of TCP packets to captured ports read from the ring.
	Packets uint64
	// Drops is the number of packets the kernel dropped because the ring was full (the
	// socket's PACKET_STATISTICS tp_drops, accumulated); with Options.Tap, the segments that
	// passed to the server without a copy (larger than 64 KiB). Connections that lost data
	// this way end incomplete.
	Drops uint64
	// Held is the number of segments the tap (Options.Tap) dropped because its ring was full:
	// the server did not get them either, and the clients send them again. Nothing is lost.
	Held uint64
	// Opened counts connections given a Sink by Options.Open.
	Opened uint64
	// Completed and Incomplete count the Sinks ended with complete true and false.
	Completed  uint64
	Incomplete uint64
	// Missed counts connections that got no Sink: the capture saw data of theirs but not their
	// SYN (it started, or their port was added, in the middle of the connection, or the SYN was
	// dropped), Open failed, or the connection table was full.
	Missed uint64
	// Bytes is the number of payload bytes written to Sinks.
	Bytes uint64
	// OutOfOrder counts segments that arrived ahead of a gap and waited for it to be filled.
	OutOfOrder uint64
}

const (
	// ringBlocks and ringBlockSize size the receive ring: 64 MiB, about half a second of a
	// 1 Gbit/s link, and room for the largest GRO packet (BIG TCP: 512 KiB) in one block.
	ringBlocks    = 64
	ringBlockSize = 1 << 20
	// ringRetire is how long the kernel keeps a block that is not full before handing it over.
	ringRetire = 10 * time.Millisecond
	// gapTimeout is how long a gap in a stream waits for the client's retransmission. A gap that
	// comes from the ring (the kernel dropped the packet, the server got it) is never filled.
	gapTimeout = time.Second
	// maxConnBuffer bounds the out-of-order bytes kept per connection, maxTotalBuffer those of all
	// connections together; a connection that needs more ends incomplete ("buffer limit").
	maxConnBuffer  = 4 << 20
	maxTotalBuffer = 64 << 20
	// maxFlows bounds the connections followed at once (open, or waiting for the end of their
	// handshake); beyond it new connections are Missed.
	maxFlows = 1 << 17
	// maxIgnored bounds the remembered connections that are not delivered (ended ones, whose late
	// retransmissions must not look like new connections, and ones seen without their SYN).
	maxIgnored = 1 << 18
	// maxPorts bounds the ports of one Capture (the BPF filter takes two instructions per port).
	maxPorts = 1024
)
