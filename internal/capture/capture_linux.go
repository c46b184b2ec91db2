package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capture is a packet socket in a network namespace and the goroutine that reassembles the
// connections it sees. Its methods may be called from any goroutine.
type Capture struct {
	log      *slog.Logger
	stats    counters
	ports    atomic.Pointer[portSet] // what the capture goroutine must follow
	stopping atomic.Bool
	done     chan struct{} // closed when the capture goroutine has returned
	once     sync.Once

	tap       *tap   // with Options.Tap, instead of the packet socket and its ring
	ignore    mark   // packets not captured (Options.IgnoreMark)
	fd, efd   int    // packet socket, eventfd that wakes the capture goroutine
	ring      []byte // the mapped receive ring
	blocks    int
	blockSize int

	mu     sync.Mutex // guards closed, and fd against being closed while in use
	closed bool
}

// Layout of the TPACKET_V3 ring (linux/if_packet.h).
const (
	blockStatusOff = 8  // tpacket_block_desc.hdr.bh1.block_status
	blockNumOff    = 12 // num_pkts
	blockFirstOff  = 16 // offset_to_first_pkt
	pktNextOff     = 0  // tpacket3_hdr.tp_next_offset
	pktSecOff      = 4
	pktNsecOff     = 8
	pktSnaplenOff  = 12
	pktLenOff      = 16
	pktMacOff      = 24
	pktSllOff      = 48 // TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): the sockaddr_ll
	sllPkttypeOff  = 10 // sockaddr_ll.sll_pkttype
)

// Start opens a packet socket in the namespace that opt names and maps its receive ring, or
// with opt.Tap loads and attaches the tap there, and starts the capture goroutine. Nothing is
// captured until SetPorts.
func Start(opt Options) (*Capture, error) {
	if opt.Open == nil {
		return nil, errors.New("start capture: Options.Open is nil")
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Capture{log: log, done: make(chan struct{}), fd: -1, efd: -1,
		blocks: ringBlocks, blockSize: ringBlockSize}
	if opt.ringBlocks > 0 {
		c.blocks = opt.ringBlocks
	}
	if opt.ringBlockSize > 0 {
		c.blockSize = opt.ringBlockSize
	}
	c.ignore = mark{opt.IgnoreMark, opt.IgnoreMarkMask}
	gap := gapTimeout
	if opt.gapTimeout > 0 {
		gap = opt.gapTimeout
	}
	run := c.run
	if opt.Tap {
		t, err := startTap(opt, c.blocks*c.blockSize, c.ignore, log)
		if err != nil {
			return nil, err
		}
		c.tap, run = t, c.runTap
	} else if err := c.openSocket(opt); err != nil {
		return nil, err
	}
	c.ports.Store(newPortSet(nil))
	go run(newTracker(opt.Open, log, &c.stats, gap))
	return c, nil
}

// openSocket opens the packet socket in the namespace that opt names and sets it up.
func (c *Capture) openSocket(opt Options) error {
	// Protocol 0: the socket receives nothing until bind, when its filter and ring are ready.
	err := runIn(opt, func() (err error) {
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("open packet socket: passive capture needs CAP_NET_RAW in the target's network namespace: %w", err)
		}
		return fmt.Errorf("open packet socket: %w", err)
	}
	if err := c.setup(); err != nil {
		c.release()
		return err
	}
	return nil
}

// setup gives the socket a filter that takes nothing, the ring, and binds it to every interface.
func (c *Capture) setup() error {
	if err := unix.SetsockoptInt(c.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("packet socket: TPACKET_V3 (Linux 3.2): %w", err)
	}
	// Packets the namespace sends are never captured (the filter takes PACKET_HOST only): with
	// PACKET_IGNORE_OUTGOING (Linux 4.20) the kernel does not even clone them for this socket,
	// which spares the target's side a copy of every answer it sends. Older kernels clone and
	// the filter drops.
	if err := unix.SetsockoptInt(c.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		c.log.Debug("packet socket: PACKET_IGNORE_OUTGOING (Linux 4.20) refused; outgoing packets are dropped by the filter", "err", err)
	}
	none, err := filter(nil, c.ignore)
	if err != nil {
		return err
	}
	if err := attachFilter(c.fd, none); err != nil {
		return err
	}
	const frameSize = 2048 // TPACKET_V3 packs packets of any size into a block; this only has to divide it
	req := unix.TpacketReq3{
		Block_size:     uint32(c.blockSize),
		Block_nr:       uint32(c.blocks),
		Frame_size:     frameSize,
		Frame_nr:       uint32(c.blockSize / frameSize * c.blocks),
		Retire_blk_tov: uint32(ringRetire / time.Millisecond),
	}
	size := c.blockSize * c.blocks
	if err := unix.SetsockoptTpacketReq3(c.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("packet socket: set up a %d MiB receive ring: %w", size>>20, err)
	}
	if c.ring, err = unix.Mmap(c.fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fmt.Errorf("packet socket: map the receive ring: %w", err)
	}
	if c.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("packet socket: eventfd: %w", err)
	}
	sa := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: 0}
	if err := unix.Bind(c.fd, &sa); err != nil {
		return fmt.Errorf("packet socket: bind to all interfaces: %w", err)
	}
	return nil
}

// release unmaps the ring and closes the descriptors.
func (c *Capture) release() {
	if c.tap != nil {
		c.tap.close()
		c.tap = nil
	}
	if c.ring != nil {
		_ = unix.Munmap(c.ring)
		c.ring = nil
	}
	if c.efd >= 0 {
		_ = unix.Close(c.efd)
		c.efd = -1
	}
	if c.fd >= 0 {
		_ = unix.Close(c.fd)
		c.fd = -1
	}
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// SetPorts makes the capture follow TCP connections to ports (on IPv4 and IPv6), and no
// others. It replaces the socket's filter atomically. Connections to ports that are no longer
// captured end incomplete ("port no longer captured"); connections already open to a port that
// is added are Missed.
func (c *Capture) SetPorts(ports []uint16) error {
	set := newPortSet(ports)
	list := set.list()
	if len(list) > maxPorts {
		return fmt.Errorf("capture %d ports: at most %d", len(list), maxPorts)
	}
	apply := func(old *portSet) error { return c.tap.setPorts(old, set) }
	if c.tap == nil {
		f, err := filter(list, c.ignore)
		if err != nil {
			return err
		}
		apply = func(*portSet) error { return attachFilter(c.fd, f) }
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("capture ports: %w", net.ErrClosed)
	}
	// Let the goroutine follow the added ports before their packets can come.
	old := c.ports.Load()
	c.ports.Store(old.union(set))
	if err := apply(old); err != nil {
		c.ports.Store(old)
		return err
	}
	c.ports.Store(set)
	return nil
}

// Stats returns the counts so far.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	if !c.closed {
		c.readDrops()
	}
	c.mu.Unlock()
	return c.stats.snapshot()
}

// readDrops adds the kernel's drop count (which reading resets) to the stats.
func (c *Capture) readDrops() {
	if c.tap != nil {
		c.readTapCounts()
		return
	}
	st, err := unix.GetsockoptTpacketStatsV3(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err == nil && st.Drops > 0 {
		c.stats.drops.Add(uint64(st.Drops))
		c.log.Warn("packet capture ring overflowed; the connections that lost data end incomplete", "dropped", st.Drops)
	}
}

// Close stops the capture: open connections end with End(false, "capture stopped") before it
// returns, then the socket is closed and its ring unmapped. Close may be called more than once.
func (c *Capture) Close() {
	c.once.Do(func() {
		c.stopping.Store(true)
		if c.tap != nil {
			c.tap.wakeRing() // the goroutine may wait for the ring
		} else {
			var one [8]byte
			binary.NativeEndian.PutUint64(one[:], 1)
			_, _ = unix.Write(c.efd, one[:])
		}
		<-c.done
		c.mu.Lock()
		defer c.mu.Unlock()
		c.readDrops()
		c.closed = true
		c.release()
	})
}

// run is the capture goroutine: it hands the ring's blocks to the tracker as the kernel fills
// them, and waits in poll when there are none.
func (c *Capture) run(tr *tracker) {
	defer close(c.done)
	var applied *portSet // what tr follows; nil: not set yet
	pfd := []unix.PollFd{
		{Fd: int32(c.fd), Events: unix.POLLIN | unix.POLLERR},
		{Fd: int32(c.efd), Events: unix.POLLIN},
	}
	blk := 0
	lastStats := time.Now()
	for !c.stopping.Load() {
		if ps := c.ports.Load(); ps != applied {
			tr.setPorts(time.Now(), ps)
			applied = ps
		}
		block := c.ring[blk*c.blockSize : (blk+1)*c.blockSize]
		status := (*uint32)(unsafe.Pointer(&block[blockStatusOff]))
		if atomic.LoadUint32(status)&unix.TP_STATUS_USER != 0 {
			last := c.readBlock(tr, block)
			atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
			blk = (blk + 1) % c.blocks
			if !last.IsZero() {
				tr.tick(last)
			}
		} else {
			// Every retired block is read; packets of the block the kernel is filling are at
			// most ringRetire old, so a gap older than that is older for them too.
			tr.tick(time.Now().Add(-ringRetire))
			pfd[0].Revents, pfd[1].Revents = 0, 0
			if _, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
				c.log.Error("packet capture failed", "err", err)
				tr.stop(time.Now(), "capture failed: poll: "+err.Error())
				return
			}
		}
		if now := time.Now(); now.Sub(lastStats) >= time.Second {
			c.readDrops()
			lastStats = now
		}
	}
	tr.stop(time.Now(), "capture stopped")
}

// readBlock hands the packets of one block to the tracker and returns the time of the last one.
func (c *Capture) readBlock(tr *tracker, block []byte) (last time.Time) {
	ne := binary.NativeEndian
	num := ne.Uint32(block[blockNumOff:])
	off := int(ne.Uint32(block[blockFirstOff:]))
	var n uint64
	for range num {
		if off < 0 || off+pktSllOff+sllPkttypeOff >= len(block) {
			break
		}
		h := block[off:]
		snap := int(ne.Uint32(h[pktSnaplenOff:]))
		mac := int(ne.Uint16(h[pktMacOff:]))
		if h[pktSllOff+sllPkttypeOff] == unix.PACKET_HOST && mac+snap <= len(h) {
			if p, err := decode(h[mac:mac+snap], int(ne.Uint32(h[pktLenOff:]))); err == nil {
				n++
				last = time.Unix(int64(ne.Uint32(h[pktSecOff:])), int64(ne.Uint32(h[pktNsecOff:])))
				tr.handle(last, &p)
			}
		}
		next := int(ne.Uint32(h[pktNextOff:]))
		if next == 0 {
			break
		}
		off += next
	}
	c.stats.packets.Add(n)
	return last
}
