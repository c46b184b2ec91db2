package capture

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync/atomic"
	"time"
)

// flowKey names one direction of a connection: client (remote) to server (local). It is the
// tracker's map key, so it is flat bytes without padding (the runtime hashes it in one pass, where
// netip.AddrPort has a pointer and padding): each side's 16-byte address (an IPv4 one mapped),
// its port big-endian, and a last byte that tells IPv4 from IPv6.
type flowKey [2*(16+2) + 1]byte

func makeFlowKey(remote, local netip.AddrPort) flowKey {
	var k flowKey
	r, l := remote.Addr().As16(), local.Addr().As16()
	copy(k[0:16], r[:])
	k[16], k[17] = byte(remote.Port()>>8), byte(remote.Port())
	copy(k[18:34], l[:])
	k[34], k[35] = byte(local.Port()>>8), byte(local.Port())
	if remote.Addr().Is4() {
		k[36] = 4
	}
	return k
}

func (k *flowKey) side(at int) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(k[at : at+16]))
	if k[36] == 4 {
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, uint16(k[at+16])<<8|uint16(k[at+17]))
}

// remote is the client's address and port; local the server's.
func (k *flowKey) remote() netip.AddrPort { return k.side(0) }
func (k *flowKey) local() netip.AddrPort  { return k.side(18) }

// counters back Stats; the capture goroutine writes them, Stats reads them from anywhere.
type counters struct {
	packets, drops, held, opened, completed, incomplete, missed, bytes, outOfOrder atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Packets:    c.packets.Load(),
		Drops:      c.drops.Load(),
		Held:       c.held.Load(),
		Opened:     c.opened.Load(),
		Completed:  c.completed.Load(),
		Incomplete: c.incomplete.Load(),
		Missed:     c.missed.Load(),
		Bytes:      c.bytes.Load(),
		OutOfOrder: c.outOfOrder.Load(),
	}
}

// portSet is a set of TCP ports.
type portSet [65536 / 64]uint64

func newPortSet(ports []uint16) *portSet {
	var s portSet
	for _, p := range ports {
		s[p/64] |= 1 << (p % 64)
	}
	return &s
}

func (s *portSet) has(p uint16) bool { return s[p/64]&(1<<(p%64)) != 0 }

func (s *portSet) list() []uint16 {
	var l []uint16
	for p := range 65536 {
		if s.has(uint16(p)) {
			l = append(l, uint16(p))
		}
	}
	return l
}

func (s *portSet) union(o *portSet) *portSet {
	u := *s
	for i := range u {
		u[i] |= o[i]
	}
	return &u
}

// span is out-of-order data at a stream offset.
type span struct {
	off  int64
	data []byte
}

func (s span) end() int64 { return s.off + int64(len(s.data)) }

// conn is the reassembly state of one connection that has a Sink. Stream offsets count the
// client's bytes from 0 (the byte after the SYN); they are 64-bit, so sequence numbers that wrap
// around do not matter.
type conn struct {
	key      flowKey
	sink     Sink
	isn      uint32 // the SYN's sequence number
	nextSeq  uint32 // sequence number of the next byte to deliver
	offset   int64  // stream offset of nextSeq: the bytes delivered so far
	ooo      []span // data beyond offset, sorted, not overlapping
	oooBytes int
	maxEnd   int64     // how far the client has shown it has sent (data, FIN, or a bare ACK's seq)
	finAt    int64     // stream offset of the FIN; -1 until seen
	gapSince time.Time // since when the stream waits at offset with maxEnd beyond it; zero: no gap
}

// rel converts a sequence number to a stream offset, taking the nearer of the two meanings
// around the current position.
func (c *conn) rel(seq uint32) int64 { return c.offset + int64(int32(seq-c.nextSeq)) }

// lossReason describes the first gap.
func (c *conn) lossReason() string {
	end := c.maxEnd
	if len(c.ooo) > 0 {
		end = c.ooo[0].off
	}
	return fmt.Sprintf("lost %d bytes at offset %d", end-c.offset, c.offset)
}

// pendingFlow is a connection whose SYN was seen and whose next segment was not yet.
type pendingFlow struct {
	isn   uint32
	since time.Time
}

// tracker is the per-connection state of a Capture: the connections being delivered, those
// waiting for the end of their handshake, and those remembered only to be ignored. It is used
// by one goroutine; times come from its caller (the packets' timestamps, or the clock).
type tracker struct {
	open       func(remote, local netip.AddrPort) (Sink, error)
	log        *slog.Logger
	stats      *counters
	ports      *portSet
	gapTimeout time.Duration

	flows   map[flowKey]*conn
	pending map[flowKey]pendingFlow
	ignored map[flowKey]time.Time // missed connections, until when
	// ended remembers the connections that ended in the last endedLinger, endedOld those of the
	// one before: a connection is remembered from one to two endedLinger after its end. Two
	// generations, so that forgetting is one clear, where a load of a connection per request
	// keeps a hundred thousand of them.
	ended, endedOld map[flowKey]struct{}
	gapped          map[*conn]struct{}
	buffered        int // out-of-order bytes of all connections
	lastSweep       time.Time
	lastTurn        time.Time // when ended last became endedOld
}

// Lifetimes of what the tracker remembers without delivering it.
const (
	synTimeout   = 10 * time.Second // a SYN not followed by anything (a refused connection)
	endedLinger  = 5 * time.Second  // an ended connection, for its late retransmissions
	missedLinger = 2 * time.Minute  // a connection seen without its SYN, after its last packet
)

func newTracker(open func(remote, local netip.AddrPort) (Sink, error), log *slog.Logger, stats *counters, gapTimeout time.Duration) *tracker {
	return &tracker{
		open:       open,
		log:        log,
		stats:      stats,
		ports:      newPortSet(nil),
		gapTimeout: gapTimeout,
		flows:      make(map[flowKey]*conn),
		pending:    make(map[flowKey]pendingFlow),
		ignored:    make(map[flowKey]time.Time),
		ended:      make(map[flowKey]struct{}),
		endedOld:   make(map[flowKey]struct{}),
		gapped:     make(map[*conn]struct{}),
	}
}

// handle takes one client-to-server segment seen at now.
func (t *tracker) handle(now time.Time, p *packet) {
	if !t.ports.has(p.dst.Port()) {
		return // read from the ring before the filter changed
	}
	key := makeFlowKey(p.src, p.dst)
	syn := p.flags&(flagSYN|flagACK) == flagSYN
	if c := t.flows[key]; c != nil {
		if !syn || p.seq == c.isn {
			t.segment(c, now, p)
			return
		}
		// A new connection with the same addresses and ports: the old one ended unseen.
		t.end(c, now, false, "connection reused before it ended")
	}
	if syn {
		// (A remembered end of the same addresses is left: it is looked up only for segments of
		// no connection followed or waiting, and it is forgotten soon.)
		delete(t.ignored, key)
		if len(t.flows)+len(t.pending) >= maxFlows {
			t.miss(key, now, "connection table full")
			return
		}
		if p.size == 0 {
			t.pending[key] = pendingFlow{isn: p.seq, since: now}
			return
		}
		// Data on the SYN (TCP Fast Open): the connection is wanted, open it now.
		if c := t.start(key, p.seq, now); c != nil {
			t.segment(c, now, p)
		}
		return
	}
	if pf, ok := t.pending[key]; ok {
		delete(t.pending, key)
		if p.flags&flagRST != 0 {
			return // the client gave up on the handshake
		}
		if c := t.start(key, pf.isn, now); c != nil {
			t.segment(c, now, p)
		}
		return
	}
	if t.remembersEnd(key) {
		return // a late retransmission of a connection that ended
	}
	if _, ok := t.ignored[key]; ok {
		if p.flags&(flagFIN|flagRST) != 0 {
			t.ignored[key] = now.Add(endedLinger)
		} else {
			t.ignored[key] = now.Add(missedLinger)
		}
		return
	}
	if p.size == 0 {
		return // a bare ACK, FIN or RST of a connection that is not followed: nothing to report
	}
	t.miss(key, now, "capture started mid-connection")
}

// miss counts a connection that gets no Sink and remembers it, so that it is counted once.
func (t *tracker) miss(key flowKey, now time.Time, why string) {
	t.stats.missed.Add(1)
	t.log.Debug("connection not captured", "remote", key.remote(), "local", key.local(), "reason", why)
	if len(t.ignored) < maxIgnored {
		t.ignored[key] = now.Add(missedLinger)
	}
}

// start opens a Sink for a connection whose SYN had sequence number isn.
func (t *tracker) start(key flowKey, isn uint32, now time.Time) *conn {
	sink, err := t.open(key.remote(), key.local())
	if err != nil || sink == nil {
		if err == nil {
			err = fmt.Errorf("no sink")
		}
		t.miss(key, now, "open: "+err.Error())
		return nil
	}
	t.stats.opened.Add(1)
	c := &conn{key: key, sink: sink, isn: isn, nextSeq: isn + 1, finAt: -1}
	t.flows[key] = c
	return c
}

// segment adds one segment to an open connection.
func (t *tracker) segment(c *conn, now time.Time, p *packet) {
	off := c.rel(p.seq)
	if p.flags&flagSYN != 0 {
		off++ // the SYN takes one sequence number; its data follows
	}
	end := off + int64(p.size)
	if end > c.maxEnd {
		c.maxEnd = end
	}
	if p.flags&flagFIN != 0 && c.finAt < 0 {
		c.finAt = end
		t.trimAfter(c, end)
	}
	if c.finAt >= 0 && c.maxEnd > c.finAt {
		c.maxEnd = c.finAt // the ACK after the FIN has the FIN's sequence number + 1
	}
	data := p.payload
	if int64(len(data)) > end-off {
		data = data[:end-off]
	}
	if c.finAt >= 0 && off+int64(len(data)) > c.finAt {
		// Bytes after the FIN are not part of the stream.
		data = data[:max(0, c.finAt-off)]
	}
	before := c.offset
	if len(data) > 0 && !t.add(c, now, off, data) {
		return
	}
	switch {
	case c.finAt >= 0 && c.offset >= c.finAt:
		t.end(c, now, true, "")
		return
	case p.flags&flagRST != 0:
		// The client aborted: nothing more comes, so a gap now is final.
		if c.offset >= off {
			t.end(c, now, true, "")
		} else {
			t.end(c, now, false, c.lossReason()+" before the client's reset")
		}
		return
	}
	switch {
	case c.maxEnd <= c.offset:
		if !c.gapSince.IsZero() {
			c.gapSince = time.Time{}
			delete(t.gapped, c)
		}
	case c.gapSince.IsZero() || c.offset > before:
		// A new gap, or progress on an old one: the retransmissions are coming.
		c.gapSince = now
		t.gapped[c] = struct{}{}
	}
}

// add delivers data at stream offset off, or keeps it until the bytes before it come. It
// returns false when the connection ended.
func (t *tracker) add(c *conn, now time.Time, off int64, data []byte) bool {
	if end := off + int64(len(data)); end <= c.offset {
		return true // all of it was delivered already
	}
	if off > c.offset {
		t.stats.outOfOrder.Add(1)
		return t.keep(c, now, off, data)
	}
	if !t.write(c, now, data[c.offset-off:]) {
		return false
	}
	for len(c.ooo) > 0 && c.ooo[0].off <= c.offset {
		s := c.ooo[0]
		c.ooo = c.ooo[1:]
		c.oooBytes -= len(s.data)
		t.buffered -= len(s.data)
		if s.end() > c.offset && !t.write(c, now, s.data[c.offset-s.off:]) {
			return false
		}
	}
	if len(c.ooo) == 0 {
		c.ooo = nil
	}
	return true
}

// write hands bytes at the current offset to the Sink.
func (t *tracker) write(c *conn, now time.Time, b []byte) bool {
	if err := c.sink.Write(b); err != nil {
		t.end(c, now, false, "write: "+err.Error())
		return false
	}
	c.offset += int64(len(b))
	c.nextSeq += uint32(len(b))
	t.stats.bytes.Add(uint64(len(b)))
	return true
}

// keep stores the parts of data (at off, beyond c.offset) that are not stored yet.
func (t *tracker) keep(c *conn, now time.Time, off int64, data []byte) bool {
	i := sort.Search(len(c.ooo), func(i int) bool { return c.ooo[i].end() > off })
	for len(data) > 0 {
		if i == len(c.ooo) || c.ooo[i].off >= off+int64(len(data)) {
			return t.insert(c, now, i, off, data)
		}
		s := c.ooo[i]
		if off < s.off {
			n := s.off - off
			if !t.insert(c, now, i, off, data[:n]) {
				return false
			}
			i++
			off, data = s.off, data[n:]
		}
		// data starts inside s: skip what s holds.
		n := s.end() - off
		if n >= int64(len(data)) {
			return true
		}
		off, data = s.end(), data[n:]
		i++
	}
	return true
}

func (t *tracker) insert(c *conn, now time.Time, i int, off int64, data []byte) bool {
	if c.oooBytes+len(data) > maxConnBuffer || t.buffered+len(data) > maxTotalBuffer {
		t.end(c, now, false, "buffer limit")
		return false
	}
	c.ooo = slices.Insert(c.ooo, i, span{off: off, data: slices.Clone(data)})
	c.oooBytes += len(data)
	t.buffered += len(data)
	return true
}

// trimAfter drops the kept bytes at and after stream offset at (the FIN's).
func (t *tracker) trimAfter(c *conn, at int64) {
	for i := len(c.ooo) - 1; i >= 0 && c.ooo[i].end() > at; i-- {
		s := &c.ooo[i]
		n := int(min(s.end()-at, int64(len(s.data))))
		s.data = s.data[:len(s.data)-n]
		c.oooBytes -= n
		t.buffered -= n
		if len(s.data) == 0 {
			c.ooo = c.ooo[:i]
		}
	}
}

// end ends a connection's Sink and forgets the connection, remembering its addresses for a
// while so that its late retransmissions are not taken for a new connection.
func (t *tracker) end(c *conn, now time.Time, complete bool, reason string) {
	delete(t.flows, c.key)
	delete(t.gapped, c)
	t.buffered -= c.oooBytes
	c.ooo, c.oooBytes = nil, 0
	if complete {
		t.stats.completed.Add(1)
	} else {
		t.stats.incomplete.Add(1)
		t.log.Debug("connection incomplete", "remote", c.key.remote(), "local", c.key.local(), "reason", reason, "delivered", c.offset)
	}
	if len(t.ended)+len(t.endedOld) < maxIgnored {
		t.ended[c.key] = struct{}{}
	}
	c.sink.End(complete, reason)
}

// tick ends the connections whose gap waited longer than the gap timeout, and forgets what has
// been remembered long enough. now must not be ahead of a packet not yet handled: the capture
// goroutine passes the time of the last packet it handled, or the clock when the ring is empty.
func (t *tracker) tick(now time.Time) {
	for c := range t.gapped {
		if now.Sub(c.gapSince) >= t.gapTimeout {
			t.end(c, now, false, c.lossReason())
		}
	}
	if now.Sub(t.lastTurn) >= endedLinger {
		clear(t.endedOld)
		t.ended, t.endedOld = t.endedOld, t.ended
		t.lastTurn = now
	}
	if now.Sub(t.lastSweep) < time.Second {
		return
	}
	t.lastSweep = now
	for k, pf := range t.pending {
		if now.Sub(pf.since) >= synTimeout {
			delete(t.pending, k)
		}
	}
	for k, until := range t.ignored {
		if now.After(until) {
			delete(t.ignored, k)
		}
	}
}

// setPorts changes the captured ports; connections to ports no longer captured end.
func (t *tracker) setPorts(now time.Time, ports *portSet) {
	t.ports = ports
	for k, c := range t.flows {
		if !ports.has(k.local().Port()) {
			t.end(c, now, false, "port no longer captured")
		}
	}
	for k := range t.pending {
		if !ports.has(k.local().Port()) {
			delete(t.pending, k)
		}
	}
}

// stop ends every open connection with reason.
func (t *tracker) stop(now time.Time, reason string) {
	for _, c := range t.flows {
		t.end(c, now, false, reason)
	}
	clear(t.pending)
}

// remembersEnd tells whether the connection named by key ended lately.
func (t *tracker) remembersEnd(key flowKey) bool {
	if _, ok := t.ended[key]; ok {
		return true
	}
	_, ok := t.endedOld[key]
	return ok
}
