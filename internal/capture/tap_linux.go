package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// The tap (Options.Tap): an eBPF program at the traffic-control ingress (TCX) of every interface
// of the namespace copies each client segment to a captured port into a BPF ring buffer, and
// drops a segment it cannot copy, so that the client sends it again. What the server receives,
// the capture has seen: a copy is never lost, and a full ring slows the clients down instead.

const (
	// tapMaxCopy is the largest IP packet the tap copies: an IPv6 header and the largest
	// payload its length field can give (65535), so every IPv4 and IPv6 packet without BIG TCP
	// (GRO and GSO merge up to 64 KiB; lo's MTU is 65536). Larger ones (BIG TCP) pass
	// uncopied, and their connection ends incomplete.
	tapMaxCopy = 40 + 65535
	// tapRecordHeader precedes each copied packet in the ring: its length (u32), then 4 bytes of
	// padding.
	tapRecordHeader = 8
	// tapPoll is how long the capture goroutine waits between two readings of the ring unless
	// the program wakes it (an eighth of the ring full), so that a busy ring is read in
	// batches. While the ring stays empty the wait doubles, up to tapIdlePoll, so that an idle
	// session wakes the target's node 20 times a second, not 200.
	tapPoll     = 5 * time.Millisecond
	tapIdlePoll = 50 * time.Millisecond
	// Indexes of the program's per-CPU counters.
	tapHeld     = 0 // segments dropped because the ring was full (the client sends them again)
	tapUncopied = 1 // segments passed without a copy (too large, or unreadable)
	// tapMinRing is the smallest ring the tap takes: two of the largest records.
	tapMinRing = 256 << 10
	// tapProgramName is the program's name in the kernel (bpftool prog, TapPrograms).
	tapProgramName = "doppel_tap"
	// maxTapInterfaces bounds the interfaces of the namespace that the tap attaches to.
	maxTapInterfaces = 256

	// Values the program uses (linux/bpf.h).
	tcxNext      = -1 // TCX_NEXT: let the next program, or the stack, have the packet
	tcxDrop      = 2  // TCX_DROP
	hdrStartNet  = 1  // BPF_HDR_START_NET
	rbNoWakeup   = 1  // BPF_RB_NO_WAKEUP
	rbForceWake  = 2  // BPF_RB_FORCE_WAKEUP
	rbAvailData  = 0  // BPF_RB_AVAIL_DATA
	skbPktType   = 4  // offsetof(struct __sk_buff, pkt_type)
	skbMark      = 8  // offsetof(struct __sk_buff, mark)
	skbProtocol  = 16 // offsetof(struct __sk_buff, protocol)
	skbIfindex   = 40 // offsetof(struct __sk_buff, ifindex)
	packetHost   = 0  // PACKET_HOST
	ethPIPBE     = 0x0008
	ethPIPv6BE   = 0xdd86
	ipprotoTCP   = 6
	minIPTCPSize = 40 // an IPv4 and a TCP header without options
)

// tap is the eBPF side of a Capture started with Options.Tap.
type tap struct {
	prog    *ebpf.Program
	ports   *ebpf.Map // hash: destination port (2 bytes, network order) -> 1
	l2      *ebpf.Map // hash: interface index -> length of its link-layer header
	scratch *ebpf.Map // array, one entry per CPU: where a packet is assembled before the ring
	ring    *ebpf.Map // ring buffer of records
	counts  *ebpf.Map // per-CPU array of u64: tapHeld, tapUncopied
	rd      *ringbuf.Reader
	// ringFD is a copy of the ring's descriptor in Go's poller: the capture goroutine waits on
	// it (waitRing) parked in the runtime, not in a system call of its own.
	ringFD *os.File
	ringRC syscall.RawConn
	// poll and idlePoll are the reader's waits between readings (tapPoll, tapIdlePoll).
	poll, idlePoll time.Duration

	nl       *os.File      // netlink socket in the namespace: interfaces added (watchLinks)
	followed chan struct{} // closed when follow returns

	mu       sync.Mutex // guards what follows
	closed   bool
	links    []link.Link
	attached map[int]bool // interface indexes
}

// startTap loads the program and its maps and attaches it to the ingress of every interface of
// the namespace opt names. size is the ring's size in bytes (a power of two, at least
// tapMinRing).
func startTap(opt Options, size int, ignore mark, log *slog.Logger) (*tap, error) {
	if size < tapMinRing || size&(size-1) != 0 {
		return nil, fmt.Errorf("tap: a ring of %d bytes: want a power of two of at least %d", size, tapMinRing)
	}
	t := &tap{poll: tapPoll, idlePoll: tapIdlePoll}
	if opt.tapPoll > 0 {
		t.poll, t.idlePoll = opt.tapPoll, opt.tapPoll
	}
	err := t.load(size, ignore)
	if err == nil {
		err = runIn(opt, func() error {
			if err := t.watchLinks(); err != nil {
				return err
			}
			return t.attach(log)
		})
	}
	if err == nil {
		t.rd, err = ringbuf.NewReader(t.ring)
		if err != nil {
			err = fmt.Errorf("tap: read the ring buffer: %w", err)
		}
	}
	if err == nil {
		err = t.pollRing()
	}
	if err != nil {
		t.close()
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("%w: the tap needs CAP_BPF and CAP_NET_ADMIN in the target's network namespace", err)
		}
		return nil, err
	}
	t.followed = make(chan struct{})
	go t.follow(opt, log)
	return t, nil
}

// pollRing puts a copy of the ring's descriptor in Go's poller (waitRing).
func (t *tap) pollRing() error {
	fd, err := unix.FcntlInt(uintptr(t.ring.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tap: duplicate the ring's descriptor: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("tap: the ring's descriptor: %w", err)
	}
	t.ringFD = os.NewFile(uintptr(fd), "tap ring")
	if t.ringRC, err = t.ringFD.SyscallConn(); err != nil {
		return fmt.Errorf("tap: the ring's descriptor: %w", err)
	}
	return nil
}

// waitRing waits until the program wakes the ring's readers (it does when an eighth of the ring
// is full), or for d, or until wakeRing.
func (t *tap) waitRing(d time.Duration) {
	if err := t.ringFD.SetReadDeadline(time.Now().Add(d)); err != nil {
		time.Sleep(d) // not in the poller after all
		return
	}
	waited := false
	_ = t.ringRC.Read(func(uintptr) bool {
		if waited {
			return true
		}
		waited = true
		return false // wait once for the ring to be readable, or for the deadline
	})
}

// wakeRing ends a waitRing at once.
func (t *tap) wakeRing() {
	if t.ringFD != nil {
		_ = t.ringFD.SetReadDeadline(time.Now())
	}
}

func (t *tap) load(size int, ignore mark) (err error) {
	if t.ports, err = ebpf.NewMap(&ebpf.MapSpec{Name: "doppel_ports", Type: ebpf.Hash, KeySize: 2, ValueSize: 1, MaxEntries: maxPorts}); err != nil {
		return fmt.Errorf("tap: BPF hash map: %w", err)
	}
	if t.l2, err = ebpf.NewMap(&ebpf.MapSpec{Name: "doppel_l2", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: maxTapInterfaces}); err != nil {
		return fmt.Errorf("tap: BPF hash map: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("tap: %w", err)
	}
	if t.scratch, err = ebpf.NewMap(&ebpf.MapSpec{Name: "doppel_scratch", Type: ebpf.Array, KeySize: 4,
		ValueSize: tapRecordHeader + tapMaxCopy + 1, MaxEntries: uint32(cpus)}); err != nil {
		return fmt.Errorf("tap: BPF array map: %w", err)
	}
	if t.ring, err = ebpf.NewMap(&ebpf.MapSpec{Name: "doppel_ring", Type: ebpf.RingBuf, MaxEntries: uint32(size)}); err != nil {
		return fmt.Errorf("tap: BPF ring buffer (Linux 5.8) of %d bytes: %w", size, err)
	}
	if t.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "doppel_counts", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 2}); err != nil {
		return fmt.Errorf("tap: BPF per-CPU array map: %w", err)
	}
	t.prog, err = ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name:         tapProgramName,
		Type:         ebpf.SchedCLS,
		Instructions: tapProgram(t.ports.FD(), t.l2.FD(), t.scratch.FD(), t.ring.FD(), t.counts.FD(), uint64(size)/8, ignore),
		License:      "Dual MIT/GPL",
	}, ebpf.ProgramOptions{})
	if err != nil {
		return fmt.Errorf("tap: load the eBPF program: %w", err)
	}
	return nil
}

// attach attaches the program to the ingress of every interface of the calling thread's network
// namespace whose link-layer header it knows (Ethernet, loopback, or none), and logs the others.
func (t *tap) attach(log *slog.Logger) error {
	links, err := linkTypes()
	if err != nil {
		return fmt.Errorf("tap: list interfaces: %w", err)
	}
	for _, l := range links {
		if err := t.attachLink(l, log); err != nil {
			return err
		}
	}
	return nil
}

// attachLink attaches the program to the ingress of l, once. The calling thread must be in l's
// network namespace.
func (t *tap) attachLink(l netLink, log *slog.Logger) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.attached[l.index] {
		return nil
	}
	if len(t.attached) >= maxTapInterfaces {
		return fmt.Errorf("tap: more than %d interfaces in the namespace", maxTapInterfaces)
	}
	var hdr uint32
	switch l.typ {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		hdr = 14
	case unix.ARPHRD_NONE:
		hdr = 0
	default:
		log.Warn("tap: interface not tapped: its link-layer type is not Ethernet, loopback or none; connections over it are not copied", "interface", l.name, "type", l.typ)
		return nil
	}
	if err := t.l2.Put(uint32(l.index), hdr); err != nil {
		return fmt.Errorf("tap: interface %s: %w", l.name, err)
	}
	tl, err := link.AttachTCX(link.TCXOptions{Interface: l.index, Program: t.prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("tap: attach to the ingress of %s (TCX links: Linux 6.6): %w", l.name, err)
	}
	if t.attached == nil {
		t.attached = make(map[int]bool)
	}
	t.attached[l.index] = true
	t.links = append(t.links, tl)
	return nil
}

// watchLinks opens, in the calling thread's network namespace, a netlink socket that hears of
// the interfaces added to it; follow then attaches the program to each. It is opened before the
// interfaces are listed, so that none is missed in between.
func (t *tap) watchLinks() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("tap: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("tap: netlink socket: %w", err)
	}
	t.nl = os.NewFile(uintptr(fd), "netlink") // non-blocking: Read waits in the runtime's poller, Close ends it
	return nil
}

// follow attaches the program to the interfaces that appear in the namespace, until close.
func (t *tap) follow(opt Options, log *slog.Logger) {
	defer close(t.followed)
	buf := make([]byte, 64<<10)
	for {
		n, err := t.nl.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				// Events were lost: look at every interface again.
				if err := runIn(opt, func() error { return t.attach(log) }); err != nil {
					log.Warn("tap: new interfaces may not be tapped", "err", err)
				}
				continue
			}
			log.Warn("tap: no longer hears of new interfaces", "err", err)
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if l, ok := parseLink(m); ok {
				if err := runIn(opt, func() error { return t.attachLink(l, log) }); err != nil {
					log.Warn("tap: a new interface is not tapped", "interface", l.name, "err", err)
				} else {
					log.Debug("tap: interface", "interface", l.name, "index", l.index)
				}
			}
		}
	}
}

// netLink is an interface of a network namespace.
type netLink struct {
	index int
	name  string
	typ   uint16 // ARPHRD_*
}

// linkTypes lists the interfaces of the calling thread's network namespace with their types.
func linkTypes() ([]netLink, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, err
	}
	var out []netLink
	for _, m := range msgs {
		if l, ok := parseLink(m); ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// parseLink reads an RTM_NEWLINK message.
func parseLink(m syscall.NetlinkMessage) (netLink, bool) {
	if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
		return netLink{}, false
	}
	ifi := (*syscall.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
	l := netLink{index: int(ifi.Index), typ: ifi.Type}
	if attrs, err := syscall.ParseNetlinkRouteAttr(&m); err == nil {
		for _, a := range attrs {
			if a.Attr.Type == syscall.IFLA_IFNAME {
				l.name = strings.TrimRight(string(a.Value), "\x00")
			}
		}
	}
	return l, true
}

// setPorts makes the program copy segments to ports and no others: the new ones first.
func (t *tap) setPorts(old, set *portSet) error {
	var k [2]byte
	for _, p := range set.list() {
		binary.BigEndian.PutUint16(k[:], p)
		if err := t.ports.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("tap: add port %d: %w", p, err)
		}
	}
	for _, p := range old.list() {
		if set.has(p) {
			continue
		}
		binary.BigEndian.PutUint16(k[:], p)
		if err := t.ports.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("tap: remove port %d: %w", p, err)
		}
	}
	return nil
}

// counters returns the program's counters, summed over the CPUs.
func (t *tap) counters() (held, uncopied uint64) {
	for i, v := range []*uint64{&held, &uncopied} {
		var per []uint64
		if err := t.counts.Lookup(uint32(i), &per); err == nil {
			for _, n := range per {
				*v += n
			}
		}
	}
	return held, uncopied
}

// close detaches the program and releases the maps; the kernel does the same when the process
// ends, however it ends.
func (t *tap) close() {
	if t.nl != nil {
		_ = t.nl.Close()
		if t.followed != nil {
			<-t.followed
		}
	}
	t.mu.Lock()
	t.closed = true
	for _, l := range t.links {
		_ = l.Close()
	}
	t.links = nil
	t.mu.Unlock()
	if t.rd != nil {
		_ = t.rd.Close()
	}
	if t.ringFD != nil {
		_ = t.ringFD.Close()
	}
	_ = t.prog.Close() // Close of a nil *ebpf.Program or *ebpf.Map does nothing
	for _, m := range []*ebpf.Map{t.ports, t.l2, t.scratch, t.ring, t.counts} {
		_ = m.Close()
	}
}

// runTap is the capture goroutine of a tap: every tapPoll (up to tapIdlePoll while the ring
// stays empty) it hands the records in the ring to the tracker.
func (c *Capture) runTap(tr *tracker) {
	defer close(c.done)
	var applied *portSet
	var rec ringbuf.Record
	lastStats := time.Now()
	sleep := c.tap.poll
	for !c.stopping.Load() {
		if ps := c.ports.Load(); ps != applied {
			tr.setPorts(time.Now(), ps)
			applied = ps
		}
		now := time.Now()
		// Take what the ring holds without waiting: the goroutine waits between passes in
		// Go's poller instead (waitRing, below), since a goroutine blocked in the reader's
		// own epoll_wait keeps the Go runtime's monitor thread waking every few microseconds
		// to take its P back (measured: 1 900 wake-ups a second on the target's CPU).
		c.tap.rd.SetDeadline(now)
		var n uint64
		for {
			err := c.tap.rd.ReadInto(&rec)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if !c.stopping.Load() {
					c.log.Error("tap failed", "err", err)
					tr.stop(time.Now(), "capture failed: "+err.Error())
					return
				}
				break
			}
			// A record of a port added by SetPorts was written after the port set that
			// includes it was stored: look again before each one.
			if ps := c.ports.Load(); ps != applied {
				tr.setPorts(time.Now(), ps)
				applied = ps
			}
			b := rec.RawSample
			if len(b) < tapRecordHeader {
				continue
			}
			size := int(binary.NativeEndian.Uint32(b))
			if size > len(b)-tapRecordHeader {
				continue
			}
			if p, err := decode(b[tapRecordHeader:tapRecordHeader+size], size); err == nil {
				if n%64 == 0 {
					now = time.Now() // a record is at most tapIdlePoll older than its reading
				}
				n++
				tr.handle(now, &p)
			}
		}
		c.stats.packets.Add(n)
		now = time.Now()
		tr.tick(now.Add(-tapPoll))
		if now.Sub(lastStats) >= time.Second {
			c.readTapCounts()
			lastStats = now
		}
		if !c.stopping.Load() {
			sleep = nextTapSleep(sleep, n > 0, c.tap.poll, c.tap.idlePoll)
			c.tap.waitRing(sleep)
		}
	}
	tr.stop(time.Now(), "capture stopped")
}

// nextTapSleep is the wait after a reading of the ring that found records (read) or none, when
// the wait before it was cur: poll after records, else twice cur up to idle.
func nextTapSleep(cur time.Duration, read bool, poll, idle time.Duration) time.Duration {
	if read {
		return poll
	}
	return min(2*cur, idle)
}

// readTapCounts copies the program's counters into the stats.
func (c *Capture) readTapCounts() {
	held, uncopied := c.tap.counters()
	if prev := c.stats.held.Swap(held); held > prev {
		c.log.Debug("tap ring full: segments held back for the clients to send again", "segments", held-prev)
	}
	if prev := c.stats.drops.Swap(uncopied); uncopied > prev {
		c.log.Warn("tap: segments too large to copy passed uncopied; their connections end incomplete", "segments", uncopied-prev)
	}
}

// tapProgram is the eBPF program (SCHED_CLS, for TCX ingress). For a TCP segment received by this
// host (PACKET_HOST), over IPv4 without fragmentation or IPv6 without extension headers, to a
// port in the ports map, that carries data or SYN, FIN or RST (not a bare ACK), it copies the IP
// packet into this CPU's scratch entry after its length, and writes that record to the ring. A full ring drops the segment and counts it (tapHeld);
// a segment it cannot copy passes and is counted (tapUncopied). Everything else passes
// untouched, and so do packets that carry the ignored mark. The ring wakes its reader only once
// wakeAt bytes wait in it; the reader also reads it every tapPoll to tapIdlePoll.
func tapProgram(ports, l2, scratch, ring, counts int, wakeAt uint64, ignore mark) asm.Instructions {
	const (
		ctx     = asm.R6 // the __sk_buff
		l4      = asm.R7 // offset of the TCP header from the IP header
		size    = asm.R8 // the IP packet's length
		rec     = asm.R9 // this CPU's scratch entry
		ipHdr   = -80    // stack: the IP header (40 bytes)
		tcpHdr  = -32    // stack: the TCP header to its flags (14 bytes)
		cpuKey  = -8     // stack: this CPU's scratch index, then the interface's index
		countAt = -4     // stack: the counter's index
	)
	// load copies n bytes at offset from the IP header (set by the first instruction, labelled
	// label) to the stack at dst, and passes the packet if they are not there.
	load := func(label string, offset asm.Instruction, dst int16, n int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, ctx).WithSymbol(label),
			offset,
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, int32(dst)),
			asm.Mov.Imm(asm.R4, n),
			asm.Mov.Imm(asm.R5, hdrStartNet),
			asm.FnSkbLoadBytesRelative.Call(),
			asm.JNE.Imm(asm.R0, 0, "pass"),
		}
	}
	// lookup looks map m up with the key on the stack at keyAt, and jumps to miss if the key
	// is not there; else R0 points at the value.
	lookup := func(m int, keyAt int32, miss string) asm.Instructions {
		return asm.Instructions{
			asm.LoadMapPtr(asm.R1, m),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, keyAt),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, miss),
		}
	}
	// count adds one to a counter and returns ret.
	count := func(label string, index int32, ret int32) asm.Instructions {
		i := asm.Instructions{asm.StoreImm(asm.RFP, countAt, int64(index), asm.Word).WithSymbol(label)}
		i = append(i, lookup(counts, countAt, label+"_ret")...)
		return append(i,
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, ret).WithSymbol(label+"_ret"),
			asm.Return(),
		)
	}

	var p asm.Instructions
	p = append(p, asm.Mov.Reg(ctx, asm.R1))
	if ignore.mask != 0 {
		p = append(p,
			asm.LoadMem(asm.R2, ctx, skbMark, asm.Word),
			asm.And.Imm32(asm.R2, int32(ignore.mask)),
			asm.JEq.Imm32(asm.R2, int32(ignore.value&ignore.mask), "pass"),
		)
	}
	p = append(p,
		asm.LoadMem(asm.R2, ctx, skbPktType, asm.Word),
		asm.JNE.Imm(asm.R2, packetHost, "pass"),
		asm.LoadMem(asm.R2, ctx, skbProtocol, asm.Word),
		asm.JEq.Imm(asm.R2, ethPIPBE, "ipv4"),
		asm.JEq.Imm(asm.R2, ethPIPv6BE, "ipv6"),
		asm.Ja.Label("pass"),
	)
	// IPv4: header length, protocol, no fragment, total length.
	p = append(p, load("ipv4", asm.Mov.Imm(asm.R2, 0), ipHdr, 20)...)
	p = append(p,
		asm.LoadMem(l4, asm.RFP, ipHdr, asm.Byte),
		asm.And.Imm(l4, 0x0f),
		asm.LSh.Imm(l4, 2),
		asm.JLT.Imm(l4, 20, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, ipHdr+9, asm.Byte),
		asm.JNE.Imm(asm.R2, ipprotoTCP, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, ipHdr+6, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.And.Imm(asm.R2, 0x3fff),
		asm.JNE.Imm(asm.R2, 0, "pass"),
		asm.LoadMem(size, asm.RFP, ipHdr+2, asm.Half),
		asm.HostTo(asm.BE, size, asm.Half),
		asm.Ja.Label("tcp"),
	)
	// IPv6: the next header must be TCP; the length is the header's and the payload's.
	p = append(p, load("ipv6", asm.Mov.Imm(asm.R2, 0), ipHdr, 40)...)
	p = append(p,
		asm.LoadMem(asm.R2, asm.RFP, ipHdr+6, asm.Byte),
		asm.JNE.Imm(asm.R2, ipprotoTCP, "pass"),
		asm.Mov.Imm(l4, 40),
		asm.LoadMem(size, asm.RFP, ipHdr+4, asm.Half),
		asm.HostTo(asm.BE, size, asm.Half),
		asm.Add.Imm(size, 40),
	)
	// The TCP ports; is the destination port captured?
	p = append(p, load("tcp", asm.Mov.Reg(asm.R2, l4), tcpHdr, 14)...)
	p = append(p, lookup(ports, tcpHdr+2, "pass")...)
	p = append(p,
		asm.JLT.Imm(size, minIPTCPSize, "uncopied"),
		asm.JGT.Imm(size, tapMaxCopy, "uncopied"),
		// A bare ACK (no data, no SYN, FIN or RST) tells the reassembly nothing: not copied.
		asm.LoadMem(asm.R2, asm.RFP, tcpHdr+13, asm.Byte),
		asm.And.Imm(asm.R2, flagSYN|flagFIN|flagRST),
		asm.JNE.Imm(asm.R2, 0, "copy"),
		asm.LoadMem(asm.R2, asm.RFP, tcpHdr+12, asm.Byte),
		asm.RSh.Imm(asm.R2, 4),
		asm.LSh.Imm(asm.R2, 2),
		asm.Add.Reg(asm.R2, l4),
		asm.JGE.Reg(asm.R2, size, "pass"),
		// This CPU's scratch entry: the length, then the packet.
		asm.FnGetSmpProcessorId.Call().WithSymbol("copy"),
		asm.StoreMem(asm.RFP, cpuKey, asm.R0, asm.Word),
	)
	p = append(p, lookup(scratch, cpuKey, "uncopied")...)
	p = append(p,
		asm.Mov.Reg(rec, asm.R0),
		asm.StoreMem(rec, 0, size, asm.Word),
		// The packet, which may lie in pages beyond the linear part: bpf_skb_load_bytes, from
		// the end of the interface's link-layer header.
		asm.LoadMem(asm.R2, ctx, skbIfindex, asm.Word),
		asm.StoreMem(asm.RFP, cpuKey, asm.R2, asm.Word),
	)
	p = append(p, lookup(l2, cpuKey, "uncopied")...)
	p = append(p,
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Reg(asm.R3, rec),
		asm.Add.Imm(asm.R3, tapRecordHeader),
		asm.Mov.Reg(asm.R4, size),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "uncopied"),
		// Into the ring; wake the reader only when it has fallen behind (else it reads the
		// ring every tapPoll to tapIdlePoll).
		asm.LoadMapPtr(asm.R1, ring),
		asm.Mov.Imm(asm.R2, rbAvailData),
		asm.FnRingbufQuery.Call(),
		asm.Mov.Imm(asm.R4, rbNoWakeup),
		asm.JLE.Imm(asm.R0, int32(wakeAt), "output"),
		asm.Mov.Imm(asm.R4, rbForceWake),
		asm.LoadMapPtr(asm.R1, ring).WithSymbol("output"),
		asm.Mov.Reg(asm.R2, rec),
		asm.Mov.Reg(asm.R3, size),
		asm.Add.Imm(asm.R3, tapRecordHeader),
		asm.FnRingbufOutput.Call(),
		asm.JNE.Imm(asm.R0, 0, "held"),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("pass"),
		asm.Return(),
	)
	p = append(p, count("held", tapHeld, tcxDrop)...)
	p = append(p, count("uncopied", tapUncopied, tcxNext)...)
	return p
}

// TapPrograms counts the doppel taps attached to the interfaces of the network namespace
// netnsFD: what a session that ended leaves behind, which must be nothing.
func TapPrograms(netnsFD int) (int, error) {
	n := 0
	err := inNetns(netnsFD, func() error {
		links, err := linkTypes()
		if err != nil {
			return err
		}
		for _, l := range links {
			res, err := link.QueryPrograms(link.QueryOptions{Target: l.index, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return fmt.Errorf("interface %s: %w", l.name, err)
			}
			for _, p := range res.Programs {
				prog, err := ebpf.NewProgramFromID(p.ID)
				if err != nil {
					continue // gone meanwhile
				}
				if info, err := prog.Info(); err == nil && info.Name == tapProgramName {
					n++
				}
				prog.Close()
			}
		}
		return nil
	})
	return n, err
}

// ProbeTap checks, without touching any interface in use, that this machine can run the tap:
// it loads the program and its maps and attaches it to the loopback interface of a throw-away
// network namespace, on a thread that ends with the probe.
func ProbeTap() error {
	t := &tap{}
	defer t.close()
	if err := t.load(tapMinRing, mark{}); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, in its own namespace, ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("a network namespace to probe in: %w", err)
			return
		}
		done <- t.attach(slog.New(slog.DiscardHandler))
	}()
	return <-done
}
