package capture

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/testenv"
)

// testNet is a server namespace (a) and a client namespace (b), joined by a veth pair, or,
// with a router, by a namespace r between them that forwards and can drop packets.
type testNet struct {
	t          *testing.T
	names      []string
	a, b       *os.File
	serverIPv4 netip.Addr
	serverIPv6 netip.Addr
	router     string
}

// netnsPrefix starts the names of the namespaces these tests make; the pid of the test binary
// follows, so that a later run can remove what a killed one left (sweepStale).
const netnsPrefix = "dpltest-cap-"

var sweepOnce sync.Once

// sweepStale removes the namespaces of test binaries that are gone (killed by -timeout before
// their cleanups ran), after killing the processes left in them (nginx).
func sweepStale(t *testing.T) {
	if err := testenv.SweepNetNS(netnsPrefix); err != nil {
		t.Log(err)
	}
}

func newTestNet(t *testing.T, router bool) *testNet {
	t.Helper()
	sweepOnce.Do(func() { sweepStale(t) })
	id := fmt.Sprintf("%d-%s", os.Getpid(), rand.Text()[:6])
	n := &testNet{t: t,
		serverIPv4: netip.MustParseAddr("10.9.1.1"),
		serverIPv6: netip.MustParseAddr("fd09:1::1")}
	a, b := netnsPrefix+id+"-a", netnsPrefix+id+"-b"
	t.Cleanup(func() {
		for _, f := range []*os.File{n.a, n.b} {
			if f != nil {
				f.Close()
			}
		}
		for _, name := range n.names {
			if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v: %s", name, err, out)
			}
		}
	})
	add := func(name string) {
		n.run("ip", "netns", "add", name)
		n.names = append(n.names, name)
		n.run("ip", "-n", name, "link", "set", "lo", "up")
		// No duplicate address detection, for the link-local addresses either.
		n.run("ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
			// Many short connections: reuse the client ports in TIME_WAIT.
			"net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535")
	}
	var links [][2]string
	addr := func(ns, dev, v4, v6 string) {
		n.run("ip", "-n", ns, "addr", "add", v4, "dev", dev)
		n.run("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
		n.run("ip", "-n", ns, "link", "set", dev, "up")
		links = append(links, [2]string{ns, dev})
	}
	add(a)
	add(b)
	if !router {
		n.run("ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
		addr(a, "va", "10.9.1.1/24", "fd09:1::1/64")
		addr(b, "vb", "10.9.1.2/24", "fd09:1::2/64")
	} else {
		r := netnsPrefix + id + "-r"
		add(r)
		n.router = r
		n.run("ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "ra", "netns", r)
		n.run("ip", "link", "add", "vb", "netns", b, "type", "veth", "peer", "name", "rb", "netns", r)
		addr(a, "va", "10.9.1.1/24", "fd09:1::1/64")
		addr(r, "ra", "10.9.1.2/24", "fd09:1::2/64")
		addr(r, "rb", "10.9.2.1/24", "fd09:2::1/64")
		addr(b, "vb", "10.9.2.2/24", "fd09:2::2/64")
		n.run("ip", "-n", a, "route", "add", "default", "via", "10.9.1.2")
		n.run("ip", "-n", a, "-6", "route", "add", "default", "via", "fd09:1::2")
		n.run("ip", "-n", b, "route", "add", "default", "via", "10.9.2.1")
		n.run("ip", "-n", b, "-6", "route", "add", "default", "via", "fd09:2::1")
		n.run("ip", "netns", "exec", r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	}
	// The kernel sees a veth's carrier some time after both ends are up (linkwatch); packets
	// sent before are lost, and the first connections would wait for SYN retransmissions.
	for _, l := range links {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			out, err := exec.Command("ip", "-n", l[0], "-o", "link", "show", "dev", l[1]).CombinedOutput()
			if err == nil && strings.Contains(string(out), "state UP") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s in %s not up: %s", l[1], l[0], out)
			}
		}
	}
	var err error
	if n.a, err = os.Open("/run/netns/" + a); err != nil {
		t.Fatal(err)
	}
	if n.b, err = os.Open("/run/netns/" + b); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *testNet) run(argv ...string) {
	n.t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// server listens on [::]:0 in namespace a, reads each connection to its end and closes it.
func (n *testNet) server() uint16 {
	n.t.Helper()
	var ln net.Listener
	err := inNetns(int(n.a.Fd()), func() (err error) {
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	})
	if err != nil {
		n.t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			})
		}
	})
	n.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// dial connects from namespace b (or a, from a), the connection closed at the end of the test.
func (n *testNet) dial(ns *os.File, addr netip.AddrPort) *net.TCPConn {
	n.t.Helper()
	return n.dialMarked(ns, addr, 0)
}

// dialMarked is dial from a socket with SO_MARK mark (0: none).
func (n *testNet) dialMarked(ns *os.File, addr netip.AddrPort, mark int) *net.TCPConn {
	n.t.Helper()
	var c net.Conn
	d := net.Dialer{Timeout: 5 * time.Second}
	if mark != 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark) }); err != nil {
				return err
			}
			return serr
		}
	}
	err := inNetns(int(ns.Fd()), func() (err error) {
		c, err = d.Dial("tcp", addr.String())
		return err
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func localAddr(c net.Conn) netip.AddrPort {
	ap := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// testSink keeps a connection's bytes; delay slows every Write down (a Sink that blocks).
type testSink struct {
	local    netip.AddrPort
	delay    time.Duration
	mu       sync.Mutex
	data     []byte
	done     chan struct{}
	complete bool
	reason   string
}

func (s *testSink) Write(p []byte) error {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	s.data = append(s.data, p...)
	s.mu.Unlock()
	return nil
}

func (s *testSink) End(complete bool, reason string) {
	s.complete, s.reason = complete, reason
	close(s.done)
}

func (s *testSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

// prefix returns a copy of the first n bytes delivered.
func (s *testSink) prefix(n int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.data[:n])
}

// collector is Options.Open: it makes a testSink per connection, found by the client's address.
type collector struct {
	delay time.Duration
	mu    sync.Mutex
	sinks map[netip.AddrPort][]*testSink // by client address, oldest first
	list  []*testSink
}

func (c *collector) open(remote, local netip.AddrPort) (Sink, error) {
	s := &testSink{local: local, delay: c.delay, done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sinks == nil {
		c.sinks = map[netip.AddrPort][]*testSink{}
	}
	c.sinks[remote] = append(c.sinks[remote], s)
	c.list = append(c.list, s)
	return s, nil
}

// sink returns the Sink of the latest connection from remote, or nil.
func (c *collector) sink(remote netip.AddrPort) *testSink {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.sinks[remote]
	if len(l) == 0 {
		return nil
	}
	return l[len(l)-1]
}

// all returns every Sink made so far.
func (c *collector) all() []*testSink {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list)
}

// ended waits for the Sink of the connection from remote to end.
func (c *collector) ended(t *testing.T, remote netip.AddrPort, timeout time.Duration) *testSink {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s := c.sink(remote); s != nil {
			select {
			case <-s.done:
				return s
			case <-time.After(time.Until(deadline)):
				t.Fatalf("connection from %s: not ended after %v (%d bytes delivered)", remote, timeout, s.len())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection from %s: never opened", remote)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// start starts a Capture in namespace a, closed at the end of the test.
func (n *testNet) start(col *collector, opt Options) *Capture {
	n.t.Helper()
	opt.Open = col.open
	if opt.InNetns == nil {
		opt.NetnsFD = int(n.a.Fd())
	}
	opt.Logger = slog.New(slog.NewTextHandler(testWriter{n.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := Start(opt)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(c.Close)
	return c
}

// capturing starts a capture with opt, as start does, that captures ports.
func (n *testNet) capturing(col *collector, opt Options, ports ...uint16) *Capture {
	n.t.Helper()
	c := n.start(col, opt)
	if err := c.SetPorts(ports); err != nil {
		n.t.Fatal(err)
	}
	return c
}

// privileged starts a privileged test and checks, after every cleanup, that no goroutine leaked.
func privileged(t *testing.T) {
	testenv.Privileged(t)
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// transfer is one client connection that sends data and closes.
type transfer struct {
	conn   *net.TCPConn
	remote netip.AddrPort
	data   []byte
}

// send opens a connection per size to server from namespace b, sends random bytes on all of
// them at once, and closes them.
func (n *testNet) send(server netip.AddrPort, sizes []int) []transfer {
	n.t.Helper()
	var ts []transfer
	for _, size := range sizes {
		c := n.dial(n.b, server)
		ts = append(ts, transfer{conn: c, remote: localAddr(c), data: randomBytes(size)})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ts))
	for _, tr := range ts {
		wg.Go(func() {
			if _, err := tr.conn.Write(tr.data); err != nil {
				errs <- err
			}
			errs <- tr.conn.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			n.t.Fatal(err)
		}
	}
	return ts
}

func TestCaptureStreams(t *testing.T) { testStreams(t, Options{}) }

// TestTapStreams is TestCaptureStreams with the eBPF tap instead of the packet socket.
func TestTapStreams(t *testing.T) { testStreams(t, Options{Tap: true}) }

func testStreams(t *testing.T, opt Options) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	var col collector
	c := n.capturing(&col, opt, port)
	sizes := []int{0, 1, 1000, 100_000, 1 << 20, 8 << 20, 8 << 20, 8<<20 + 12345}
	var want Stats
	for _, server := range []netip.Addr{n.serverIPv4, n.serverIPv6} {
		t.Run(map[bool]string{true: "ipv4", false: "ipv6"}[server.Is4()], func(t *testing.T) {
			start := time.Now()
			ts := n.send(netip.AddrPortFrom(server, port), sizes)
			total := 0
			for _, tr := range ts {
				s := col.ended(t, tr.remote, 10*time.Second)
				total += len(tr.data)
				if !s.complete || s.reason != "" {
					t.Errorf("%d bytes from %s: complete %v, reason %q", len(tr.data), tr.remote, s.complete, s.reason)
				}
				if sha256.Sum256(s.data) != sha256.Sum256(tr.data) {
					t.Errorf("%d bytes from %s: %d bytes delivered, differ", len(tr.data), tr.remote, len(s.data))
				}
				if s.local != netip.AddrPortFrom(server, port) {
					t.Errorf("%d bytes from %s: Open got local address %s", len(tr.data), tr.remote, s.local)
				}
			}
			d := time.Since(start)
			t.Logf("%d connections, %d bytes captured without loss in %v: %.0f MB/s", len(ts), total, d.Round(time.Millisecond), float64(total)/d.Seconds()/1e6)
			want.Opened += uint64(len(ts))
			want.Completed += uint64(len(ts))
			want.Bytes += uint64(total)
		})
	}
	got := c.Stats()
	t.Logf("stats: %+v", got)
	got.Packets, got.OutOfOrder = 0, 0
	if got != want {
		t.Errorf("stats: got %+v, want %+v", got, want)
	}
}

// TestCaptureInNetnsOption uses Options.InNetns instead of NetnsFD.
func TestCaptureInNetnsOption(t *testing.T) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	var col collector
	n.capturing(&col, Options{NetnsFD: -1, InNetns: func(fn func() error) error { return inNetns(int(n.a.Fd()), fn) }}, port)
	ts := n.send(netip.AddrPortFrom(n.serverIPv6, port), []int{5000})
	if s := col.ended(t, ts[0].remote, 5*time.Second); !s.complete || !bytes.Equal(s.data, ts[0].data) {
		t.Errorf("complete %v (%q), %d of %d bytes", s.complete, s.reason, len(s.data), len(ts[0].data))
	}
}

// TestCapturePorts checks that only captured ports open connections, that SetPorts takes effect,
// that a connection seen without its SYN is Missed, not delivered, and that Close ends open
// connections incomplete.
func TestCapturePorts(t *testing.T) { testPorts(t, Options{}) }

// TestTapPorts is TestCapturePorts with the eBPF tap.
func TestTapPorts(t *testing.T) { testPorts(t, Options{Tap: true}) }

func testPorts(t *testing.T, opt Options) {
	privileged(t)
	n := newTestNet(t, false)
	p1, p2 := n.server(), n.server()
	to := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(n.serverIPv4, p) }
	var col collector
	c := n.start(&col, opt)
	if err := c.SetPorts([]uint16{p1}); err != nil {
		t.Fatal(err)
	}
	write := func(conn *net.TCPConn, s string) {
		t.Helper()
		if _, err := conn.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	waitLen := func(remote netip.AddrPort, n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			s := col.sink(remote)
			if s != nil && s.len() >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("connection from %s: %d bytes not delivered", remote, n)
			}
		}
	}
	keep := n.dial(n.b, to(p1))
	write(keep, "keep")
	mid := n.dial(n.b, to(p2)) // connected while p2 is not captured

	// p1 is captured, p2 is not. The capture reads packets in order, so once the connection to
	// p1 made last has ended, the one to p2 made before it was seen, and ignored.
	other := n.send(to(p2), []int{100})
	one := n.send(to(p1), []int{100})
	col.ended(t, one[0].remote, 5*time.Second)
	if col.sink(other[0].remote) != nil {
		t.Errorf("a connection to port %d, not captured, was opened", p2)
	}
	waitLen(localAddr(keep), 4)

	// Now p2 only: the open connection to p1 ends, new ones to p2 are captured.
	if err := c.SetPorts([]uint16{p2}); err != nil {
		t.Fatal(err)
	}
	if s := col.ended(t, localAddr(keep), 5*time.Second); s.complete || s.reason != "port no longer captured" || string(s.data) != "keep" {
		t.Errorf("connection to a port no longer captured: complete %v, reason %q, data %q", s.complete, s.reason, s.data)
	}
	write(mid, "mid")
	other = n.send(to(p1), []int{100})
	two := n.send(to(p2), []int{100})
	if s := col.ended(t, two[0].remote, 5*time.Second); !s.complete || !bytes.Equal(s.data, two[0].data) {
		t.Errorf("connection to port %d: complete %v, reason %q, %d bytes", p2, s.complete, s.reason, len(s.data))
	}
	for _, remote := range []netip.AddrPort{other[0].remote, localAddr(mid)} {
		if col.sink(remote) != nil {
			t.Errorf("connection from %s was opened; want ignored", remote)
		}
	}

	// Close ends what is open.
	open := n.dial(n.b, to(p2))
	write(open, "open")
	waitLen(localAddr(open), 4)
	c.Close()
	if s := col.ended(t, localAddr(open), time.Second); s.complete || s.reason != "capture stopped" || string(s.data) != "open" {
		t.Errorf("after Close: complete %v, reason %q, data %q", s.complete, s.reason, s.data)
	}
	st := c.Stats()
	want := Stats{Opened: 4, Completed: 2, Incomplete: 2, Missed: 1, Bytes: 4 + 100 + 100 + 4}
	st.Packets, st.OutOfOrder = 0, 0
	if st != want {
		t.Errorf("stats: got %+v, want %+v", st, want)
	}
	if err := c.SetPorts([]uint16{p1}); err == nil {
		t.Errorf("SetPorts after Close: no error")
	}
}

// TestCaptureRingOverflow makes the kernel drop packets: a tiny ring and a Sink that blocks.
// Every connection must end complete with exactly the bytes sent, or incomplete with a prefix
// of them, or be Missed; never with other bytes.
func TestCaptureRingOverflow(t *testing.T) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	col := collector{delay: 2 * time.Millisecond}
	c := n.capturing(&col, Options{ringBlocks: 2, ringBlockSize: 256 << 10, gapTimeout: 200 * time.Millisecond}, port)
	ts := n.send(netip.AddrPortFrom(n.serverIPv4, port), []int{8 << 20, 8 << 20, 8 << 20, 8 << 20, 1000, 1000})
	// Let the capture work through what the ring holds and the gaps time out.
	time.Sleep(2 * time.Second)
	c.Close()
	st := c.Stats()
	t.Logf("stats: %+v", st)
	if st.Drops == 0 {
		t.Fatalf("the kernel dropped no packets: this test proves nothing")
	}
	lossy := 0
	for _, tr := range ts {
		s := col.sink(tr.remote)
		switch {
		case s == nil:
			t.Logf("%d bytes from %s: not opened (missed)", len(tr.data), tr.remote)
			lossy++
			continue
		case s.complete:
			if sha256.Sum256(s.data) != sha256.Sum256(tr.data) {
				t.Errorf("%d bytes from %s: complete, but the %d bytes delivered differ", len(tr.data), tr.remote, len(s.data))
			}
		default:
			lossy++
			if !bytes.HasPrefix(tr.data, s.data) {
				t.Errorf("%d bytes from %s: incomplete (%s), and the %d bytes delivered are not a prefix", len(tr.data), tr.remote, s.reason, len(s.data))
			}
		}
		t.Logf("%d bytes from %s: %d delivered, complete %v %s", len(tr.data), tr.remote, len(s.data), s.complete, s.reason)
	}
	if lossy == 0 {
		t.Errorf("%d packets dropped, but every connection is complete", st.Drops)
	}
	if st.Completed+st.Incomplete != st.Opened {
		t.Errorf("stats: %d opened, %d ended", st.Opened, st.Completed+st.Incomplete)
	}
}

// TestTapRingFull fills the tap's ring: a small ring and a Sink that blocks. The tap drops what it
// cannot copy, the clients send it again, and every connection ends complete with exactly the
// bytes sent. Without the drop (a copy lost while the server got the segment), connections would
// end incomplete.
func TestTapRingFull(t *testing.T) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	col := collector{delay: 2 * time.Millisecond}
	c := n.capturing(&col, Options{Tap: true, ringBlocks: 1, ringBlockSize: 256 << 10}, port)
	start := time.Now()
	ts := n.send(netip.AddrPortFrom(n.serverIPv4, port), []int{1 << 20, 1 << 20, 1 << 20, 1000, 1000})
	for _, tr := range ts {
		s := col.ended(t, tr.remote, time.Minute)
		if !s.complete || sha256.Sum256(s.data) != sha256.Sum256(tr.data) {
			t.Errorf("%d bytes from %s: complete %v (%q), %d bytes delivered", len(tr.data), tr.remote, s.complete, s.reason, len(s.data))
		}
	}
	st := c.Stats()
	t.Logf("in %v, stats: %+v", time.Since(start).Round(time.Millisecond), st)
	if st.Held == 0 {
		t.Fatalf("the ring never filled: this test proves nothing")
	}
	if st.Drops != 0 || st.Incomplete != 0 {
		t.Errorf("the tap lost data: %+v", st)
	}
	if taps, err := TapPrograms(int(n.a.Fd())); err != nil || taps == 0 {
		t.Errorf("taps attached while the capture runs: %d, %v", taps, err)
	}
	c.Close()
	if taps, err := TapPrograms(int(n.a.Fd())); err != nil || taps != 0 {
		t.Errorf("taps attached after Close: %d, %v", taps, err)
	}
}

// TestProbeTap runs doctor's probe, which must leave nothing attached where it ran.
func TestProbeTap(t *testing.T) {
	privileged(t)
	if err := ProbeTap(); err != nil {
		t.Fatal(err)
	}
	self, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if taps, err := TapPrograms(int(self.Fd())); err != nil || taps != 0 {
		t.Errorf("taps attached in the test's own namespace after the probe: %d, %v", taps, err)
	}
}

// TestTapNewInterface: an interface added to the namespace after the tap started is tapped too
// (a netlink socket hears of it), and a connection over it is captured.
func TestTapNewInterface(t *testing.T) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	var col collector
	n.capturing(&col, Options{Tap: true}, port)
	before, err := TapPrograms(int(n.a.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	n.run("ip", "link", "add", "va2", "netns", n.names[0], "type", "veth", "peer", "name", "vb2", "netns", n.names[1])
	n.run("ip", "-n", n.names[0], "addr", "add", "10.9.3.1/24", "dev", "va2")
	n.run("ip", "-n", n.names[1], "addr", "add", "10.9.3.2/24", "dev", "vb2")
	n.run("ip", "-n", n.names[0], "link", "set", "va2", "up")
	n.run("ip", "-n", n.names[1], "link", "set", "vb2", "up")
	// Both new ends in a get the tap: va2 (and nothing else: vb2 is in b).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		after, err := TapPrograms(int(n.a.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if after == before+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d taps in the namespace before the new interface, %d after: want one more", before, after)
		}
	}
	var ts []transfer
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// The new veth carries packets once the kernel sees its carrier.
		var conn net.Conn
		err := inNetns(int(n.b.Fd()), func() (err error) {
			conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr("10.9.3.1"), port).String(), time.Second)
			return err
		})
		if err == nil {
			data := randomBytes(100_000)
			if _, err := conn.Write(data); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			ts = append(ts, transfer{remote: localAddr(conn), data: data})
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection over the new interface: %v", err)
		}
	}
	s := col.ended(t, ts[0].remote, 5*time.Second)
	if !s.complete || !bytes.Equal(s.data, ts[0].data) {
		t.Errorf("over the new interface: complete %v (%s), %d of %d bytes", s.complete, s.reason, len(s.data), len(ts[0].data))
	}
}

// TestTapBadRing: a ring the tap cannot use is refused before anything is loaded.
// TestNextTapSleep: the tap's reader sleeps tapPoll after a reading that found records, and
// twice as long after each one that found none, up to tapIdlePoll.
func TestNextTapSleep(t *testing.T) {
	sleep := tapPoll
	var got []time.Duration
	for _, read := range []bool{false, false, false, false, false, true, false} {
		sleep = nextTapSleep(sleep, read, tapPoll, tapIdlePoll)
		got = append(got, sleep)
	}
	ms := time.Millisecond
	want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 50 * ms, 50 * ms, 5 * ms, 10 * ms}
	if !slices.Equal(got, want) {
		t.Errorf("sleeps %v, want %v", got, want)
	}
}

// TestTapWakes: the tap's program wakes the reader once an eighth of the ring is full, so a
// burst is read at once even when the reader waits long between readings (here 10 s, where
// tapIdlePoll is 50 ms): of 100 KiB sent through a 256 KiB ring, the first 32 KiB reach the
// Sink within a second. (What is left under an eighth after the last wake-up waits for the next
// reading, 10 s here: the whole copy is checked by the other tests, with the real waits.)
func TestTapWakes(t *testing.T) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	var col collector
	n.capturing(&col, Options{Tap: true, ringBlocks: 1, ringBlockSize: 256 << 10, tapPoll: 10 * time.Second}, port)
	time.Sleep(100 * time.Millisecond) // the reader's first reading is done: it waits now
	start := time.Now()
	ts := n.send(netip.AddrPortFrom(n.serverIPv4, port), []int{100 << 10})
	const want = 32 << 10
	got := 0
	for time.Since(start) < time.Second {
		if s := col.sink(ts[0].remote); s != nil {
			if got = s.len(); got >= want {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got < want {
		t.Errorf("%d bytes delivered after %v, want %d or more: the reader was not woken", got, time.Since(start), want)
	} else if !bytes.Equal(col.sink(ts[0].remote).prefix(got), ts[0].data[:got]) {
		t.Errorf("the first %d bytes delivered differ from those sent", got)
	}
}

func TestTapBadRing(t *testing.T) {
	privileged(t)
	_, err := Start(Options{Tap: true, NetnsFD: -1, Open: func(netip.AddrPort, netip.AddrPort) (Sink, error) { return nil, nil },
		ringBlocks: 3, ringBlockSize: 256 << 10})
	if err == nil || !strings.Contains(err.Error(), "want a power of two") {
		t.Errorf("Start with a 768 KiB ring: %v", err)
	}
}

// TestCaptureNetworkLoss drops packets between client and server (a router namespace that
// drops 1 in 30 forwarded packets to the server). TCP retransmits them; the capture must wait
// for the retransmissions and deliver every stream whole.
func TestCaptureNetworkLoss(t *testing.T) { testNetworkLoss(t, Options{}) }

// TestTapNetworkLoss is TestCaptureNetworkLoss with the eBPF tap.
func TestTapNetworkLoss(t *testing.T) { testNetworkLoss(t, Options{Tap: true}) }

func testNetworkLoss(t *testing.T, opt Options) {
	privileged(t)
	n := newTestNet(t, true)
	port := n.server()
	nft := func(args ...string) { n.run(append([]string{"ip", "netns", "exec", n.router, "nft"}, args...)...) }
	nft("add", "table", "inet", "loss")
	nft("add", "chain", "inet", "loss", "fw", "{ type filter hook forward priority 0; }")
	nft("add", "rule", "inet", "loss", "fw", "tcp", "dport", fmt.Sprint(port), "numgen", "random", "mod", "30", "==", "0", "counter", "drop")
	var col collector
	c := n.capturing(&col, opt, port)
	for _, server := range []netip.Addr{n.serverIPv4, n.serverIPv6} {
		ts := n.send(netip.AddrPortFrom(server, port), []int{1000, 100_000, 4 << 20, 4 << 20})
		for _, tr := range ts {
			s := col.ended(t, tr.remote, 20*time.Second)
			if !s.complete || sha256.Sum256(s.data) != sha256.Sum256(tr.data) {
				t.Errorf("%d bytes from %s: complete %v (%s), %d bytes delivered", len(tr.data), tr.remote, s.complete, s.reason, len(s.data))
			}
		}
	}
	out, _ := exec.Command("ip", "netns", "exec", n.router, "nft", "list", "chain", "inet", "loss", "fw").CombinedOutput()
	st := c.Stats()
	t.Logf("stats: %+v; router: %s", st, bytes.TrimSpace(out))
	if st.OutOfOrder == 0 {
		t.Errorf("no segment arrived out of order: the router dropped nothing?")
	}
}

// TestCaptureIgnoredMark: a connection from a socket with the ignored mark (as other sessions'
// agents pass connections on, over lo) is not captured; one without it is.
func TestCaptureIgnoredMark(t *testing.T) { testIgnoredMark(t, Options{}) }

// TestTapIgnoredMark is TestCaptureIgnoredMark with the eBPF tap.
func TestTapIgnoredMark(t *testing.T) { testIgnoredMark(t, Options{Tap: true}) }

func testIgnoredMark(t *testing.T, opt Options) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	var col collector
	opt.IgnoreMark, opt.IgnoreMarkMask = 0x646f0000, 0xffff0000
	c := n.capturing(&col, opt, port)
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	send := func(mark int) netip.AddrPort {
		conn := n.dialMarked(n.a, server, mark)
		if _, err := conn.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		return localAddr(conn)
	}
	marked := send(0x646f0003)
	plain := send(0x12340000) // another mark
	if s := col.ended(t, plain, 5*time.Second); !s.complete || string(s.data) != "hello" {
		t.Errorf("the connection without the ignored mark: complete %v (%s), %q", s.complete, s.reason, s.data)
	}
	time.Sleep(100 * time.Millisecond)
	if s := col.sink(marked); s != nil {
		t.Errorf("the connection with the ignored mark was captured: %q", s.data)
	}
	if st := c.Stats(); st.Opened != 1 || st.Missed != 0 {
		t.Errorf("stats %+v: want one connection opened, none missed", st)
	}
}

// TestCaptureLoopback checks what the packet socket sees on lo, where every packet passes the
// taps twice: sent (PACKET_OUTGOING) and received (PACKET_HOST). The capture must take each
// packet once and deliver the stream.
func TestCaptureLoopback(t *testing.T) { testLoopback(t, Options{}) }

// TestTapLoopback is TestCaptureLoopback with the eBPF tap.
func TestTapLoopback(t *testing.T) { testLoopback(t, Options{Tap: true}) }

func testLoopback(t *testing.T, opt Options) {
	privileged(t)
	n := newTestNet(t, false)
	port := n.server()
	for _, server := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		t.Run(server.String(), func(t *testing.T) {
			// A plain packet socket in a, without filter, counts the copies of the
			// client-to-server packets by type.
			var raw int
			err := inNetns(int(n.a.Fd()), func() (err error) {
				raw, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(unix.ETH_P_ALL)))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(raw)
			if err := unix.SetsockoptInt(raw, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
				t.Fatal(err)
			}
			var col collector
			c := n.capturing(&col, opt, port)
			conn := n.dial(n.a, netip.AddrPortFrom(server, port))
			remote, data := localAddr(conn), randomBytes(1<<20)
			if _, err := conn.Write(data); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			s := col.ended(t, remote, 5*time.Second)
			if !s.complete || !bytes.Equal(s.data, data) {
				t.Errorf("complete %v (%s), %d of %d bytes", s.complete, s.reason, len(s.data), len(data))
			}
			time.Sleep(100 * time.Millisecond) // the client's last ACK, after the server's FIN

			types := map[uint8]uint64{}
			buf := make([]byte, 1<<20)
			for {
				nr, from, err := unix.Recvfrom(raw, buf, 0)
				if err == unix.EAGAIN {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				p, err := decode(buf[:nr], nr)
				if err != nil || p.dst.Port() != port || p.src != remote || (p.size == 0 && p.flags&(flagSYN|flagFIN|flagRST) == 0) {
					continue // not the connection's, or a bare ACK, which the capture leaves out
				}
				types[from.(*unix.SockaddrLinklayer).Pkttype]++
			}
			host := types[unix.PACKET_HOST]
			// The capture reads a block of its ring at most ringRetire after its last packet.
			for deadline := time.Now().Add(2 * time.Second); c.Stats().Packets < host && time.Now().Before(deadline); {
				time.Sleep(ringRetire)
			}
			c.Close()
			st := c.Stats()
			t.Logf("copies of client-to-server packets by type: %v (PACKET_HOST=%d, PACKET_OUTGOING=%d); capture stats %+v",
				types, unix.PACKET_HOST, unix.PACKET_OUTGOING, st)
			if host == 0 || host != types[unix.PACKET_OUTGOING] || len(types) != 2 {
				t.Errorf("copies by type: %v; want as many PACKET_HOST as PACKET_OUTGOING, and no other", types)
			}
			if st.Packets != host {
				t.Errorf("capture read %d packets, want the %d PACKET_HOST copies", st.Packets, host)
			}
		})
	}
}

// crcSink checks a stream with CRC-32C as it comes, keeping nothing: a Sink as cheap as a
// queue's copy.
type crcSink struct {
	crc      uint32
	n        int
	done     chan struct{}
	complete bool
	reason   string
}

func (s *crcSink) Write(p []byte) error {
	s.crc = crc32.Update(s.crc, castagnoli, p)
	s.n += len(p)
	return nil
}

func (s *crcSink) End(complete bool, reason string) {
	s.complete, s.reason = complete, reason
	close(s.done)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TestCaptureThroughput sends 4 x 64 MiB as fast as TCP over a veth pair goes and reports how
// fast the capture followed, and what it lost.
func TestCaptureThroughput(t *testing.T) {
	privileged(t)
	if testing.Short() {
		t.Skip("-short")
	}
	n := newTestNet(t, false)
	port := n.server()
	var mu sync.Mutex
	sinks := map[netip.AddrPort]*crcSink{}
	c, err := Start(Options{NetnsFD: int(n.a.Fd()), Open: func(remote, local netip.AddrPort) (Sink, error) {
		s := &crcSink{done: make(chan struct{})}
		mu.Lock()
		sinks[remote] = s
		mu.Unlock()
		return s, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.SetPorts([]uint16{port}); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(64 << 20)
	want := crc32.Checksum(data, castagnoli)
	const conns = 4
	var remotes []netip.AddrPort
	var tcs []*net.TCPConn
	for range conns {
		tc := n.dial(n.b, netip.AddrPortFrom(n.serverIPv4, port))
		tcs = append(tcs, tc)
		remotes = append(remotes, localAddr(tc))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, tc := range tcs {
		wg.Go(func() {
			_, _ = tc.Write(data)
			tc.Close()
		})
	}
	wg.Wait()
	sent := time.Since(start)
	var lost []string
	for _, r := range remotes {
		mu.Lock()
		s := sinks[r]
		mu.Unlock()
		if s == nil {
			lost = append(lost, r.String()+": not opened")
			continue
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not ended", r)
		}
		switch {
		case s.complete && (s.n != len(data) || s.crc != want):
			t.Errorf("%s: complete, but %d bytes delivered with another checksum", r, s.n)
		case !s.complete:
			lost = append(lost, fmt.Sprintf("%s: %s", r, s.reason))
		}
	}
	captured := time.Since(start)
	total := float64(conns * len(data))
	st := c.Stats()
	t.Logf("%d MiB over %d connections: sent in %v (%.0f MB/s), captured in %v (%.0f MB/s); %d packets, %d dropped",
		conns*len(data)>>20, conns, sent.Round(time.Millisecond), total/sent.Seconds()/1e6,
		captured.Round(time.Millisecond), total/captured.Seconds()/1e6, st.Packets, st.Drops)
	// At these rates the capture goroutine can fall behind the 64 MiB ring (2 CPUs shared with
	// the sender and the server): then the kernel drops packets, and the connections that lost
	// them must say so. Loss is never silent, and never made up.
	switch {
	case len(lost) > 0 && st.Drops == 0:
		t.Errorf("connections incomplete, with no packet dropped: %v", lost)
	case len(lost) > 0:
		t.Logf("the ring overflowed; connections incomplete: %v", lost)
	case st.Drops > 0:
		t.Logf("%d packets dropped, none with data (bare ACKs, or copies of data seen already)", st.Drops)
	}
}

// TestCaptureManyConnections makes many short connections, one small request each, as a load
// generator does with a new connection per request, and checks every one.
func TestCaptureManyConnections(t *testing.T) { testManyConnections(t, Options{}) }

// TestTapManyConnections is TestCaptureManyConnections with the eBPF tap.
func TestTapManyConnections(t *testing.T) { testManyConnections(t, Options{Tap: true}) }

func testManyConnections(t *testing.T, opt Options) {
	privileged(t)
	if testing.Short() {
		t.Skip("-short")
	}
	n := newTestNet(t, false)
	port := n.server()
	var col collector
	c := n.capturing(&col, opt, port)
	const conns, workers = 20000, 32
	server := netip.AddrPortFrom(n.serverIPv4, port)
	request := func(i int) []byte {
		return fmt.Appendf(nil, "GET /%d HTTP/1.1\r\nHost: test\r\nUser-Agent: capture-test\r\n\r\n", i)
	}
	next := make(chan int, conns)
	for i := range conns {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			errs <- inNetns(int(n.b.Fd()), func() error {
				for i := range next {
					conn, err := net.Dial("tcp", server.String())
					if err != nil {
						return err
					}
					_, err = conn.Write(request(i))
					conn.Close()
					if err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Since(start)
	// Client ports are reused (TIME_WAIT reuse), so the connections are matched by content.
	want := map[string]int{}
	for i := range conns {
		want[string(request(i))]++
	}
	var sinks []*testSink
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sinks = col.all()
		ended := 0
		for _, s := range sinks {
			select {
			case <-s.done:
				ended++
			default:
			}
		}
		if ended == conns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections opened, %d ended, want %d", len(sinks), ended, conns)
		}
	}
	captured := time.Since(start)
	bad := 0
	for _, s := range sinks {
		if !s.complete || want[string(s.data)] == 0 {
			if bad++; bad <= 5 {
				t.Errorf("connection to %s: complete %v (%s), data %q", s.local, s.complete, s.reason, s.data)
			}
			continue
		}
		want[string(s.data)]--
	}
	st := c.Stats()
	t.Logf("%d connections: made in %v (%.0f/s), all captured after %v; stats %+v", conns, sent.Round(time.Millisecond),
		conns/sent.Seconds(), captured.Round(time.Millisecond), st)
	if bad > 0 {
		t.Errorf("%d of %d connections not captured whole", bad, conns)
	}
}

// TestCaptureNginxWrk loads nginx with wrk, a new connection per request as in doppel's
// benchmark, and compares what the capture saw with what wrk counted.
func TestCaptureNginxWrk(t *testing.T) {
	privileged(t)
	if testing.Short() {
		t.Skip("-short")
	}
	for _, bin := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	n := newTestNet(t, false)
	dir := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 10.9.1.1:80;
        location / { return 200 "hello from nginx\n"; }
    }
}
`, dir)
	if err := os.WriteFile(dir+"/nginx.conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var nginxOut bytes.Buffer
	nginx := exec.Command("ip", "netns", "exec", n.names[0], "nginx", "-p", dir, "-c", dir+"/nginx.conf", "-e", "stderr")
	nginx.Stdout, nginx.Stderr = &nginxOut, &nginxOut
	if err := nginx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = nginx.Process.Kill()
		_ = nginx.Wait()
	})

	var mu sync.Mutex
	var sinks []*testSink
	c, err := Start(Options{
		NetnsFD: int(n.a.Fd()),
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Open: func(remote, local netip.AddrPort) (Sink, error) {
			s := &testSink{local: local, done: make(chan struct{})}
			mu.Lock()
			sinks = append(sinks, s)
			mu.Unlock()
			return s, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.SetPorts([]uint16{80}); err != nil {
		t.Fatal(err)
	}
	// nginx listens once its port answers.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var conn net.Conn
		err := inNetns(int(n.b.Fd()), func() (err error) {
			conn, err = net.DialTimeout("tcp", "10.9.1.1:80", time.Second)
			return err
		})
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer: %v; its output: %s", err, nginxOut.String())
		}
	}
	for _, run := range []struct {
		name string
		args []string
	}{
		{"connection per request", []string{"-t", "1", "-c", "4", "-d", "3s", "-H", "Connection: close"}},
		{"keep-alive", []string{"-t", "1", "-c", "32", "-d", "3s"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			mu.Lock()
			sinks = nil
			mu.Unlock()
			before := c.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"netns", "exec", n.names[1], "wrk"}, run.args...)
			out, err := exec.CommandContext(ctx, "ip", append(args, "http://10.9.1.1/")...).CombinedOutput()
			if err != nil {
				t.Fatalf("wrk: %v: %s", err, out)
			}
			var requests int
			for _, line := range strings.Split(string(out), "\n") {
				if _, err := fmt.Sscanf(strings.TrimSpace(line), "%d requests in", &requests); err == nil {
					break
				}
			}
			if requests == 0 {
				t.Fatalf("no request count in wrk's output: %s", out)
			}
			// wrk closes its connections when it stops; wait for the capture to see them end,
			// and to read the last block of the ring (handed over after ringRetire).
			var got []*testSink
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * ringRetire) {
				mu.Lock()
				stable := len(got) == len(sinks)
				got = slices.Clone(sinks)
				mu.Unlock()
				open := 0
				for _, s := range got {
					select {
					case <-s.done:
					default:
						open++
					}
				}
				if open == 0 && stable {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d connections still open 10 s after wrk ended", open)
				}
			}
			// Every stream must be whole requests, all the same (wrk sends one request again
			// and again); a connection wrk opened but did not use before it stopped is empty.
			var req []byte
			for _, s := range got {
				if i := bytes.Index(s.data, []byte("\r\n\r\n")); i >= 0 {
					req = s.data[:i+4]
					break
				}
			}
			captured, bad := 0, 0
			for _, s := range got {
				k := len(s.data) / max(1, len(req))
				if !s.complete || !bytes.Equal(s.data, bytes.Repeat(req, k)) {
					if bad++; bad <= 5 {
						t.Errorf("connection: complete %v (%s), %d bytes: %q", s.complete, s.reason, len(s.data), s.data[:min(len(s.data), 200)])
					}
				}
				captured += k
			}
			st := c.Stats()
			t.Logf("wrk counted %d responses (%.0f/s); the capture delivered %d requests on %d connections (%d ended incomplete, %d missed); %d packets, %d dropped by the kernel",
				requests, float64(requests)/3, captured, len(got), st.Incomplete-before.Incomplete, st.Missed-before.Missed, st.Packets-before.Packets, st.Drops-before.Drops)
			if captured < requests {
				t.Errorf("the capture delivered %d requests, wrk got %d responses", captured, requests)
			}
		})
	}
}
