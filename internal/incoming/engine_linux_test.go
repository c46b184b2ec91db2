package incoming

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/testenv"
	"doppel.dev/doppel/internal/wire"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// netPair is two network namespaces joined by a veth pair: "srv" (10.9.0.1, fd09::1), where a
// line server listens on port 80 as the target's own service, and "cli" (10.9.0.2, fd09::2),
// where the real clients are.
type netPair struct {
	srvFD, cliFD int
}

const (
	srvIP  = "10.9.0.1"
	cliIP  = "10.9.0.2"
	srvIP6 = "fd09::1"
	cliIP6 = "fd09::2"
)

// netnsPrefix starts the names of the namespaces these tests make, with the test binary's pid
// after it, so that a later run removes what a killed one left (testenv.SweepNetNS).
const netnsPrefix = "dpltest-inc-"

var sweepOnce sync.Once

func newNetPair(t *testing.T) *netPair {
	t.Helper()
	testenv.Privileged(t)
	sweepOnce.Do(func() {
		if err := testenv.SweepNetNS(netnsPrefix); err != nil {
			t.Log(err)
		}
	})
	var id [3]byte
	rand.Read(id[:])
	name := fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), hex.EncodeToString(id[:]))
	srv, cli := name+"-srv", name+"-cli"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srv).Run() })
	run("ip", "netns", "add", cli)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cli).Run() })
	run("ip", "link", "add", "vsrv", "netns", srv, "type", "veth", "peer", "name", "vcli", "netns", cli)
	run("ip", "-n", srv, "addr", "add", srvIP+"/24", "dev", "vsrv")
	run("ip", "-n", cli, "addr", "add", cliIP+"/24", "dev", "vcli")
	run("ip", "-n", srv, "addr", "add", srvIP6+"/64", "dev", "vsrv", "nodad")
	run("ip", "-n", cli, "addr", "add", cliIP6+"/64", "dev", "vcli", "nodad")
	for _, ns := range []string{srv, cli} {
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "-n", srv, "link", "set", "vsrv", "up")
	run("ip", "-n", cli, "link", "set", "vcli", "up")
	p := &netPair{}
	var err error
	if p.srvFD, err = unix.Open("/run/netns/"+srv, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p.srvFD) })
	if p.cliFD, err = unix.Open("/run/netns/"+cli, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p.cliFD) })
	p.serveLines(t)
	return p
}

// inNetns runs fn on a thread inside the network namespace fd.
func inNetns(fd int, fn func() error) error {
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(self)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	err = fn()
	if unix.Setns(self, unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// serveLines runs the target's own service in srv: port 80 answers each line with
// "server: LINE".
func (p *netPair) serveLines(t *testing.T) {
	var ln net.Listener
	if err := inNetns(p.srvFD, func() (err error) { ln, err = net.Listen("tcp", ":80"); return }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { answerLines(c, "server") })
		}
	})
}

func answerLines(c net.Conn, who string) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if _, err := fmt.Fprintf(c, "%s: %s\n", who, sc.Text()); err != nil {
			return
		}
	}
}

func (p *netPair) engine(t *testing.T) *Engine {
	e := New(Options{NetnsFD: p.srvFD, InNetns: func(fn func() error) error { return inNetns(p.srvFD, fn) }})
	t.Cleanup(e.Close)
	return e
}

// dial connects from the client namespace.
func (p *netPair) dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := inNetns(p.cliFD, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return
	}); err != nil {
		t.Fatalf("dial %s from the client namespace: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends each line and returns the answers.
func exchange(t *testing.T, c net.Conn, lines ...string) []string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var got []string
	for _, l := range lines {
		if _, err := fmt.Fprintf(c, "%s\n", l); err != nil {
			t.Fatal(err)
		}
		a, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("answer to %q: %v", l, err)
		}
		got = append(got, strings.TrimSuffix(a, "\n"))
	}
	return got
}

// delivered is one connection an Engine handed to the client side.
type delivered struct {
	in   wire.Incoming
	conn net.Conn
}

// deliverTo returns a Deliver that hands the test one end of a loopback TCP connection.
func deliverTo(ch chan<- delivered) Deliver {
	return func(ctx context.Context, in wire.Incoming) (net.Conn, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		b, err := ln.Accept()
		if err != nil {
			a.Close()
			return nil, err
		}
		ch <- delivered{in: in, conn: b}
		return a, nil
	}
}

// copied is one connection's copy read from a feed: its open frame, its bytes and its end.
type copied struct {
	open, end wire.FeedFrame
	data      []byte
}

// feedTo returns the writer end of a feed and a channel of the copies read from it, each sent
// once its end frame came.
func feedTo(t *testing.T) (io.Writer, <-chan copied) {
	r, w := net.Pipe()
	t.Cleanup(func() { r.Close(); w.Close() })
	ch := make(chan copied, 16)
	go func() {
		conns := map[uint32]*copied{}
		for {
			f, err := wire.ReadFeedFrame(r, nil)
			if err != nil {
				return
			}
			switch f.Type {
			case wire.FeedOpen:
				conns[f.ID] = &copied{open: f}
			case wire.FeedData:
				if c := conns[f.ID]; c != nil {
					c.data = append(c.data, f.Data...)
				}
			case wire.FeedEnd:
				if c := conns[f.ID]; c != nil {
					c.end = f
					ch <- *c
					delete(conns, f.ID)
				}
			}
		}
	}()
	return w, ch
}

func receiveCopy(t *testing.T, ch <-chan copied) copied {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no copy in the feed")
		return copied{}
	}
}

func receive(t *testing.T, ch <-chan delivered) delivered {
	t.Helper()
	select {
	case d := <-ch:
		t.Cleanup(func() { d.conn.Close() })
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no connection delivered")
		return delivered{}
	}
}

func sessions(t *testing.T, fd int) []Session {
	t.Helper()
	s, err := ListSessions(fd)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMirror(t *testing.T) {
	p := newNetPair(t)
	e := p.engine(t)
	feed, copies := feedTo(t)
	if _, err := e.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeMirror}, nil, feed); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Session{{Table: "doppel-01-mirror", Rank: 1, Kind: KindMirror, Ports: []uint16{80}}}, sessions(t, p.srvFD)); diff != "" {
		t.Errorf("sessions (-want +got):\n%s", diff)
	}
	for _, srv := range []string{srvIP, srvIP6} {
		c := p.dial(t, net.JoinHostPort(srv, "80"))
		got := exchange(t, c, "hello", "world")
		if diff := cmp.Diff([]string{"server: hello", "server: world"}, got); diff != "" {
			t.Errorf("%s: the real client's answers (-want +got):\n%s", srv, diff)
		}
		c.Close()
		d := receiveCopy(t, copies)
		if string(d.data) != "hello\nworld\n" || !d.end.Complete {
			t.Errorf("%s: mirrored copy %q (complete %v, %s), want %q", srv, d.data, d.end.Complete, d.end.Reason, "hello\nworld\n")
		}
		wantLocal := netip.AddrPortFrom(netip.MustParseAddr(srv), 80)
		if d.open.Local != wantLocal || d.open.Remote.Addr() != netip.MustParseAddr(map[string]string{srvIP: cliIP, srvIP6: cliIP6}[srv]) ||
			d.open.Remote.Port() != uint16(c.LocalAddr().(*net.TCPAddr).Port) {
			t.Errorf("%s: copy of %v -> %v, want local %v and the client's own address %v", srv, d.open.Remote, d.open.Local, wantLocal, c.LocalAddr())
		}
	}
	e.Close()
	if s := sessions(t, p.srvFD); len(s) != 0 {
		t.Errorf("tables left after Close: %+v", s)
	}
	c := p.dial(t, srvIP+":80")
	if got := exchange(t, c, "after"); got[0] != "server: after" {
		t.Errorf("after Close: %q", got)
	}
}

func TestSteal(t *testing.T) {
	p := newNetPair(t)
	e := p.engine(t)
	ch := make(chan delivered, 1)
	unsubscribe, err := e.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, deliverTo(ch), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := p.dial(t, srvIP+":80")
	done := make(chan struct{})
	go func() {
		defer close(done)
		d := <-ch
		answerLines(d.conn, "program")
	}()
	if got := exchange(t, c, "one", "two"); !cmp.Equal(got, []string{"program: one", "program: two"}) {
		t.Errorf("stolen connection answered %q", got)
	}
	c.Close()
	<-done
	unsubscribe()
	if s := sessions(t, p.srvFD); len(s) != 1 || len(s[0].Ports) != 0 {
		t.Errorf("after unsubscribe: %+v, want the table with no ports", s)
	}
	if got := exchange(t, p.dial(t, srvIP+":80"), "x"); got[0] != "server: x" {
		t.Errorf("after unsubscribe: %q", got)
	}
}

func TestStealFallsBackWhenClientGone(t *testing.T) {
	p := newNetPair(t)
	e := p.engine(t)
	gone := func(context.Context, wire.Incoming) (net.Conn, error) { return nil, errors.New("session closed") }
	if _, err := e.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, gone, nil); err != nil {
		t.Fatal(err)
	}
	if got := exchange(t, p.dial(t, srvIP+":80"), "x"); got[0] != "server: x" {
		t.Errorf("with the client gone the target's service should answer; got %q", got)
	}
}

func TestStealConflict(t *testing.T) {
	p := newNetPair(t)
	a, b := p.engine(t), p.engine(t)
	ch := make(chan delivered, 1)
	if _, err := a.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, deliverTo(ch), nil); err != nil {
		t.Fatal(err)
	}
	_, err := b.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, deliverTo(ch), nil)
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.Table != "doppel-90-steal" {
		t.Fatalf("second whole steal of port 80: %v, want a ConflictError naming doppel-90-steal", err)
	}
	if b.Table() != "" {
		t.Errorf("the refused session made table %q", b.Table())
	}
	a.Close()
	if _, err := b.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, deliverTo(ch), nil); err != nil {
		t.Fatalf("after the first session ended: %v", err)
	}
}

// mirrorThenSteal subscribes a steal session and a mirror session to port 80 of p: the stolen
// connection's program answers lines with "program: LINE" and its Incoming goes to stolen;
// the mirror's copies come to copies.
func mirrorThenSteal(t *testing.T, p *netPair) (mirror *Engine, stolen <-chan wire.Incoming, copies <-chan copied) {
	t.Helper()
	steal := p.engine(t)
	mirror = p.engine(t)
	conns := make(chan delivered, 1)
	feed, copies := feedTo(t)
	if _, err := steal.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, deliverTo(conns), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := mirror.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeMirror}, nil, feed); err != nil {
		t.Fatal(err)
	}
	in := make(chan wire.Incoming, 1)
	go func() {
		d := <-conns
		in <- d.in
		answerLines(d.conn, "program")
	}()
	return mirror, in, copies
}

// A mirror session and a steal session on one port: the steal session's program answers, the
// mirror session gets a copy.
func TestMirrorAndStealChain(t *testing.T) {
	p := newNetPair(t)
	_, stolenIn, copies := mirrorThenSteal(t, p)
	c := p.dial(t, srvIP+":80")
	if got := exchange(t, c, "a"); got[0] != "program: a" {
		t.Errorf("answer %q, want the stealing program's", got)
	}
	c.Close()
	d := receiveCopy(t, copies)
	if string(d.data) != "a\n" {
		t.Errorf("mirror copy %q", d.data)
	}
	if d.open.Remote.Addr() != netip.MustParseAddr(cliIP) {
		t.Errorf("mirror saw remote %v, want the client %s", d.open.Remote, cliIP)
	}
	// The steal session is reached through the mirror's agent, yet sees the real client too.
	if in := <-stolenIn; in.Remote != d.open.Remote || in.Local != d.open.Local {
		t.Errorf("the steal session saw %v -> %v, want the real client's %v -> %v", in.Remote, in.Local, d.open.Remote, d.open.Local)
	}
}

func TestNotRedirectedIsDropped(t *testing.T) {
	p := newNetPair(t)
	e := p.engine(t)
	if _, err := e.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, func(context.Context, wire.Incoming) (net.Conn, error) {
		t.Error("a direct connection to the agent's port was delivered")
		return nil, errors.New("no")
	}, nil); err != nil {
		t.Fatal(err)
	}
	port := e.ln.Addr().(*net.TCPAddr).Port
	c := p.dial(t, fmt.Sprintf("%s:%d", srvIP, port))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from the agent's port, want it closed", n)
	}
}

// With an HTTP filter, what is not HTTP goes to the target's own service.
func TestFilteredNotHTTPGoesToTarget(t *testing.T) {
	p := newNetPair(t)
	e := p.engine(t)
	ch := make(chan delivered, 1)
	sub := wire.Subscription{Port: 80, Mode: wire.ModeSteal, Filter: wire.HTTPFilter{Headers: []string{"X-Debug-User: alice"}}}
	if _, err := e.Subscribe(sub, deliverTo(ch), nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Session{{Table: "doppel-40-filtered", Rank: 40, Kind: KindFiltered, Ports: []uint16{80}}}, sessions(t, p.srvFD)); diff != "" {
		t.Errorf("sessions (-want +got):\n%s", diff)
	}
	if got := exchange(t, p.dial(t, srvIP+":80"), "hello there", "again"); !cmp.Equal(got, []string{"server: hello there", "server: again"}) {
		t.Errorf("a line protocol on a filtered port got %q, want the target's answers", got)
	}
	select {
	case d := <-ch:
		t.Errorf("a connection that is not HTTP reached the program: %+v", d.in)
	default:
	}
}

func TestSubscribeRefusesABadFilter(t *testing.T) {
	p := newNetPair(t)
	e := p.engine(t)
	sub := wire.Subscription{Port: 80, Mode: wire.ModeSteal, Filter: wire.HTTPFilter{Path: "("}}
	if _, err := e.Subscribe(sub, deliverTo(make(chan delivered)), nil); err == nil || !strings.Contains(err.Error(), "path") {
		t.Errorf("Subscribe with path regexp %q: %v, want an error naming the path filter", "(", err)
	}
	if s := sessions(t, p.srvFD); len(s) != 0 {
		t.Errorf("a refused subscription wrote %+v", s)
	}
}

// Passive capture: no table, the real client talks to the target directly, and the client
// side gets the connection in the capture feed: open, the client's bytes, a complete end.
func TestCapture(t *testing.T) { testCopies(t, wire.ModeCapture) }

// The eBPF tap: the same, and the engine's taps are gone after Close; a session copies one way,
// so a capture subscription beside the tap's is refused.
func TestTap(t *testing.T) {
	e, srvFD := testCopies(t, wire.ModeTap)
	if _, err := e.Subscribe(wire.Subscription{Port: 81, Mode: wire.ModeCapture}, nil, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "copies with tap, and capture was asked") {
		t.Errorf("a capture subscription in a tap session: %v", err)
	}
	if n, err := capture.TapPrograms(srvFD); err != nil || n == 0 {
		t.Errorf("taps while the engine runs: %d, %v", n, err)
	}
	e.Close()
	if n, err := capture.TapPrograms(srvFD); err != nil || n != 0 {
		t.Errorf("taps after Close: %d, %v", n, err)
	}
}

func testCopies(t *testing.T, mode wire.Mode) (*Engine, int) {
	p := newNetPair(t)
	e := p.engine(t)
	feedR, feedW := net.Pipe()
	t.Cleanup(func() { feedR.Close(); feedW.Close() })
	if _, err := e.Subscribe(wire.Subscription{Port: 80, Mode: mode}, nil, feedW); err != nil {
		t.Fatal(err)
	}
	if s := sessions(t, p.srvFD); len(s) != 0 {
		t.Errorf("%s wrote nftables tables: %+v", mode, s)
	}
	frames := make(chan wire.FeedFrame, 16)
	go func() {
		for {
			f, err := wire.ReadFeedFrame(feedR, nil)
			if err != nil {
				close(frames)
				return
			}
			frames <- f
		}
	}()
	c := p.dial(t, srvIP+":80")
	if got := exchange(t, c, "hello", "world"); !cmp.Equal(got, []string{"server: hello", "server: world"}) {
		t.Errorf("the real client got %q", got)
	}
	c.Close()
	var data []byte
	var open, end wire.FeedFrame
	for end.Type == 0 {
		select {
		case f := <-frames:
			switch f.Type {
			case wire.FeedOpen:
				open = f
			case wire.FeedData:
				data = append(data, f.Data...)
			case wire.FeedEnd:
				end = f
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no end frame; data so far %q", data)
		}
	}
	if open.Remote.Addr() != netip.MustParseAddr(cliIP) || open.Local != netip.MustParseAddrPort(srvIP+":80") || open.ID != end.ID {
		t.Errorf("open %+v, end %+v", open, end)
	}
	if !end.Complete {
		t.Errorf("capture ended incomplete: %s", end.Reason)
	}
	if string(data) != "hello\nworld\n" {
		t.Errorf("captured %q, want %q", data, "hello\nworld\n")
	}
	return e, p.srvFD
}

// A session that ends hands the connections in flight through it to another session's agent:
// a connection the later steal session serves keeps working after the mirror session ended.
func TestEndingSessionHandsOverConnections(t *testing.T) {
	p := newNetPair(t)
	mirror, _, copies := mirrorThenSteal(t, p)
	c := p.dial(t, srvIP+":80")
	if got := exchange(t, c, "before"); got[0] != "program: before" {
		t.Fatalf("answer %q", got)
	}
	start := time.Now()
	mirror.Close()
	if d := time.Since(start); d >= drainTimeout {
		t.Errorf("Close took %v: it waited for the drain instead of handing over", d)
	}
	if s := sessions(t, p.srvFD); len(s) != 1 || s[0].Kind != KindSteal {
		t.Errorf("sessions after the mirror ended: %+v", s)
	}
	// The mirror's copy of the connection it handed over ends incomplete.
	if d := receiveCopy(t, copies); string(d.data) != "before\n" || d.end.Complete {
		t.Errorf("the mirror's copy: %q, complete %v", d.data, d.end.Complete)
	}
	// The connection outlives the mirror session, well past its drain time.
	time.Sleep(drainTimeout + 500*time.Millisecond)
	if got := exchange(t, c, "after", "again"); !cmp.Equal(got, []string{"program: after", "program: again"}) {
		t.Errorf("after the mirror session ended the connection answered %q", got)
	}
}

// A filtered session that ends hands its keep-alive HTTP connections, at their next boundary
// between requests, to the session after it: the client's connection goes on, and its
// requests now reach that session.
func TestEndingFilteredSessionHandsOverHTTP(t *testing.T) {
	p := newNetPair(t)
	filtered, steal := p.engine(t), p.engine(t)
	stolen, alice := make(chan delivered, 4), make(chan delivered, 4)
	if _, err := steal.Subscribe(wire.Subscription{Port: 80, Mode: wire.ModeSteal}, deliverTo(stolen), nil); err != nil {
		t.Fatal(err)
	}
	sub := wire.Subscription{Port: 80, Mode: wire.ModeSteal, Filter: wire.HTTPFilter{Headers: []string{"X-Debug-User: alice"}}}
	if _, err := filtered.Subscribe(sub, deliverTo(alice), nil); err != nil {
		t.Fatal(err)
	}
	// Both programs answer HTTP with their name.
	go serveHTTPName(stolen, "steal")
	go serveHTTPName(alice, "alice")
	c := p.dial(t, srvIP+":80")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(user string) string {
		t.Helper()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: svc\r\nX-Debug-User: %s\r\n\r\n", user)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if got := get("alice"); got != "alice" {
		t.Fatalf("alice's request reached %q", got)
	}
	if got := get("bob"); got != "steal" {
		t.Fatalf("bob's request reached %q", got)
	}
	start := time.Now()
	filtered.Close()
	if d := time.Since(start); d >= drainTimeout {
		t.Errorf("Close took %v: it waited for the drain instead of handing over", d)
	}
	time.Sleep(drainTimeout + 500*time.Millisecond)
	if got := get("alice"); got != "steal" {
		t.Errorf("after alice's session ended her request on the same connection reached %q, want the steal session", got)
	}
}

func TestProbeOwnedTables(t *testing.T) {
	testenv.Privileged(t)
	if err := ProbeOwnedTables(); err != nil {
		t.Fatalf("ProbeOwnedTables on this kernel: %v", err)
	}
	// The probe's table lived in a namespace of its own.
	if s := sessions(t, -1); len(s) != 0 {
		t.Errorf("the probe left tables in this namespace: %+v", s)
	}
}

// A filtered session that ends alone closes its keep-alive HTTP connections at their next
// boundary between requests, as a server closes an idle connection: the client reads the end
// of the connection at once, not when the drain time is over.
func TestEndingFilteredSessionAloneClosesHTTP(t *testing.T) {
	p := newNetPair(t)
	filtered := p.engine(t)
	alice := make(chan delivered, 4)
	sub := wire.Subscription{Port: 80, Mode: wire.ModeSteal, Filter: wire.HTTPFilter{Headers: []string{"X-Debug-User: alice"}}}
	if _, err := filtered.Subscribe(sub, deliverTo(alice), nil); err != nil {
		t.Fatal(err)
	}
	go serveHTTPName(alice, "alice")
	c := p.dial(t, srvIP+":80")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: svc\r\nX-Debug-User: alice\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "alice" {
		t.Fatalf("alice's request got %q", b)
	}
	start := time.Now()
	go filtered.Close()
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the session ended the idle connection read %q, %v; want its end (EOF)", n, err)
	}
	if d := time.Since(start); d >= drainTimeout {
		t.Errorf("the connection ended %v after Close, want before the drain time (%v)", d, drainTimeout)
	}
}

// serveHTTPName serves the connections delivered on ch as a program answering every HTTP
// request with name.
func serveHTTPName(ch <-chan delivered, name string) {
	for d := range ch {
		go func() {
			defer d.conn.Close()
			br := bufio.NewReader(d.conn)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				fmt.Fprintf(d.conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(name), name)
			}
		}()
	}
}

// A filtered session that ends alone while an HTTP/2 response streams through it to the
// target's own service: the stream finishes whole, and the client, told to go (GOAWAY), sends
// its next request on a new connection, which reaches the service directly.
func TestEndingFilteredSessionAloneHTTP2(t *testing.T) {
	p := newNetPair(t)
	// The target's own h2c service on port 8080: /slow streams ten chunks 100 ms apart.
	var ln net.Listener
	if err := inNetns(p.srvFD, func() (err error) { ln, err = net.Listen("tcp", ":8080"); return }); err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		flush := http.NewResponseController(w).Flush
		for i := range 10 {
			fmt.Fprintf(w, "chunk %d\n", i)
			flush()
			if req.URL.Path == "/slow" {
				time.Sleep(100 * time.Millisecond)
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	e := p.engine(t)
	sub := wire.Subscription{Port: 8080, Mode: wire.ModeSteal, Filter: wire.HTTPFilter{Headers: []string{"X-Debug-User: alice"}}}
	if _, err := e.Subscribe(sub, deliverTo(make(chan delivered, 4)), nil); err != nil {
		t.Fatal(err)
	}
	var dials int
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &protos,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			dials++
			return p.dial(t, addr), nil
		}}}
	res, err := client.Get("http://" + srvIP + ":8080/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "chunk 0\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	go e.Close()
	rest, err := io.ReadAll(br)
	if err != nil || strings.Count(string(rest), "chunk") != 9 {
		t.Fatalf("after the session ended the stream got %q, %v; want the 9 other chunks", rest, err)
	}
	res, err = client.Get("http://" + srvIP + ":8080/next")
	if err != nil {
		t.Fatalf("the next request: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if dials != 2 {
		t.Errorf("the client dialled %d times, want 2 (a new connection after GOAWAY)", dials)
	}
}
