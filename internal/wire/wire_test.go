package wire

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHelloRoundTrip(t *testing.T) {
	h := Hello{Version: Version}
	copy(h.Secret[:], "0123456789abcdef0123456789abcdef")
	var b bytes.Buffer
	if err := WriteHello(&b, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHello(&b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, got); diff != "" {
		t.Errorf("hello (-want +got):\n%s", diff)
	}
}

func TestHelloRejectsOtherProtocols(t *testing.T) {
	_, err := ReadHello(bytes.NewReader([]byte("GET / HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n")))
	if !errors.Is(err, ErrBadMagic) {
		t.Fatalf("ReadHello(http) = %v, want ErrBadMagic", err)
	}
}

func TestWelcomeRoundTrip(t *testing.T) {
	for _, w := range []Welcome{
		{Version: 1, Status: WelcomeOK},
		{Version: 7, Status: WelcomeBadSecret, Message: "wrong session secret"},
	} {
		var b bytes.Buffer
		if err := WriteWelcome(&b, w); err != nil {
			t.Fatal(err)
		}
		got, err := ReadWelcome(&b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("welcome (-want +got):\n%s", diff)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []Request{
		{Kind: KindDialTCP, Addr: netip.MustParseAddrPort("10.96.0.1:443")},
		{Kind: KindDialTCP, Addr: netip.MustParseAddrPort("[fd00::1]:80")},
		{Kind: KindUDP},
		{Kind: KindReadFile, Path: "/etc/resolv.conf"},
		{Kind: KindLookup, Path: "/etc/config/..data/app.yaml"},
		{Kind: KindInfo},
		{Kind: KindSubscribe, Sub: Subscription{Port: 80, Mode: ModeMirror}},
		{Kind: KindSubscribe, Sub: Subscription{Port: 8080, Mode: ModeSteal, Filter: HTTPFilter{
			Headers: []string{"X-Debug-User: alice", "X-Env: dev.*"}, Path: "^/api/", Methods: []string{"GET", "POST"}}}},
		{Kind: KindIncoming, Incoming: Incoming{Port: 80, Mode: ModeSteal,
			Remote: netip.MustParseAddrPort("10.244.2.9:40000"), Local: netip.MustParseAddrPort("10.244.1.5:80")}},
		{Kind: KindIncoming, Incoming: Incoming{Port: 443, Mode: ModeMirror,
			Remote: netip.MustParseAddrPort("[fd00::9]:1"), Local: netip.MustParseAddrPort("[fd00::5]:443")}},
	} {
		var b bytes.Buffer
		if err := WriteRequest(&b, r); err != nil {
			t.Fatal(err)
		}
		got, err := ReadRequest(&b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Errorf("request (-want +got):\n%s", diff)
		}
	}
}

func TestReadRequestErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"unknown kind":   {99, 0, 0},
		"short addr":     {byte(KindDialTCP), 0, 2, 4, 1},
		"bad ip length":  {byte(KindDialTCP), 0, 4, 5, 1, 2, 3},
		"trailing bytes": {byte(KindDialTCP), 0, 8, 4, 1, 2, 3, 4, 0, 80, 9},
		"udp with body":  {byte(KindUDP), 0, 1, 0},
		"truncated body": {byte(KindReadFile), 0, 10, '/'},
		"subscribe mode": {byte(KindSubscribe), 0, 8, 0, 80, 9, 0, 0, 0, 0},
		"subscribe port": {byte(KindSubscribe), 0, 8, 0, 0, 1, 0, 0, 0, 0},
		"mirror filter":  {byte(KindSubscribe), 0, 8, 0, 80, 1, 0, 0, 1, 'x', 0},
		"subscribe cut":  {byte(KindSubscribe), 0, 5, 0, 80, 2, 1, 0},
		"incoming addr":  {byte(KindIncoming), 0, 4, 0, 80, 1, 7},
	} {
		if _, err := ReadRequest(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: ReadRequest succeeded, want error", name)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, r := range []Reply{{OK: true}, {Errno: 111, Message: "dial 10.0.0.1:80: connection refused"}} {
		var b bytes.Buffer
		if err := WriteReply(&b, r); err != nil {
			t.Fatal(err)
		}
		got, err := ReadReply(&b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("reply (-want +got):\n%s", diff)
		}
		if (got.Err() == nil) != r.OK {
			t.Errorf("Err() = %v for OK=%v", got.Err(), r.OK)
		}
	}
}

func TestDatagramRoundTrip(t *testing.T) {
	var b bytes.Buffer
	ds := []Datagram{
		{Addr: netip.MustParseAddrPort("10.96.0.10:53"), Payload: []byte("query")},
		{Addr: netip.MustParseAddrPort("[::1]:7"), Payload: nil},
	}
	for _, d := range ds {
		if err := WriteDatagram(&b, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range ds {
		got, err := ReadDatagram(&b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Addr != want.Addr || !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("datagram = %v %q, want %v %q", got.Addr, got.Payload, want.Addr, want.Payload)
		}
	}
}

func FuzzReadHello(f *testing.F) {
	var b bytes.Buffer
	WriteHello(&b, Hello{Version: Version})
	f.Add(b.Bytes())
	f.Add([]byte("DOPL"))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := ReadHello(bytes.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		WriteHello(&out, h)
		if !bytes.Equal(out.Bytes(), in[:out.Len()]) {
			t.Fatalf("re-encoding differs: %x vs %x", out.Bytes(), in)
		}
	})
}

func FuzzReadWelcome(f *testing.F) {
	var b bytes.Buffer
	WriteWelcome(&b, Welcome{Version: Version, Status: WelcomeBadSecret, Message: "no"})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		w, err := ReadWelcome(bytes.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		WriteWelcome(&out, w)
		if !bytes.Equal(out.Bytes(), in[:out.Len()]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzReadRequest(f *testing.F) {
	for _, r := range []Request{
		{Kind: KindDialTCP, Addr: netip.MustParseAddrPort("10.0.0.1:80")},
		{Kind: KindReadFile, Path: "/etc/hosts"},
		{Kind: KindLookup, Path: "/etc"},
		{Kind: KindInfo},
		{Kind: KindSubscribe, Sub: Subscription{Port: 80, Mode: ModeSteal, Filter: HTTPFilter{Headers: []string{"A: b"}, Path: "x", Methods: []string{"GET"}}}},
		{Kind: KindIncoming, Incoming: Incoming{Port: 80, Mode: ModeMirror,
			Remote: netip.MustParseAddrPort("10.0.0.2:5"), Local: netip.MustParseAddrPort("10.0.0.1:80")}},
	} {
		var b bytes.Buffer
		WriteRequest(&b, r)
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ReadRequest(bytes.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteRequest(&out, r); err != nil {
			t.Fatalf("decoded request does not encode: %v", err)
		}
		again, err := ReadRequest(&out)
		if err != nil || again.Kind != r.Kind || again.Addr != r.Addr || again.Path != r.Path {
			t.Fatalf("round trip of %+v gave %+v, %v", r, again, err)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	var b bytes.Buffer
	WriteReply(&b, Reply{Errno: 111, Message: "refused"})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ReadReply(bytes.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		WriteReply(&out, r)
		if !bytes.Equal(out.Bytes(), in[:out.Len()]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzReadDatagram(f *testing.F) {
	var b bytes.Buffer
	WriteDatagram(&b, Datagram{Addr: netip.MustParseAddrPort("10.96.0.10:53"), Payload: []byte("q")})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := ReadDatagram(bytes.NewReader(in), nil)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteDatagram(&out, d); err != nil {
			t.Fatalf("decoded datagram does not encode: %v", err)
		}
		again, err := ReadDatagram(&out, nil)
		if err != nil || again.Addr != d.Addr || !bytes.Equal(again.Payload, d.Payload) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}

func TestSocketMessages(t *testing.T) {
	req := SocketRequest{ID: 7, Family: 10, Count: 3}
	if got, err := ParseSocketRequest(AppendSocketRequest(nil, req)); err != nil || got != req {
		t.Errorf("socket request round trip = %+v, %v", got, err)
	}
	rep := SocketReply{ID: 7, Errno: 24}
	if got, err := ParseSocketReply(AppendSocketReply(nil, rep)); err != nil || got != rep {
		t.Errorf("socket reply round trip = %+v, %v", got, err)
	}
	if _, err := ParseSocketRequest([]byte{1, 2}); err == nil {
		t.Error("short socket request accepted")
	}
	if _, err := ParseSocketRequest(AppendSocketRequest(nil, SocketRequest{ID: 1, Family: 2, Count: MaxSocketBatch + 1})); err == nil {
		t.Error("socket request over the batch limit accepted")
	}
}

func FuzzParseSocketMessages(f *testing.F) {
	f.Add(AppendSocketRequest(nil, SocketRequest{ID: 1, Family: 2, Count: 4}))
	f.Add(AppendSocketReply(nil, SocketReply{ID: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseSocketRequest(b); err == nil {
			if !bytes.Equal(AppendSocketRequest(nil, r), b) {
				t.Fatal("socket request re-encoding differs")
			}
		}
		if r, err := ParseSocketReply(b); err == nil {
			if !bytes.Equal(AppendSocketReply(nil, r), b) {
				t.Fatal("socket reply re-encoding differs")
			}
		}
	})
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// TestSpliceDrainsWhenOneSideIsGone: when one side's writes fail, Splice keeps reading the
// other side, so that side's writer is not stalled, and returns once it ends.
func TestSpliceDrainsWhenOneSideIsGone(t *testing.T) {
	a1, a2 := tcpPair(t)
	b1, b2 := tcpPair(t)
	defer a1.Close()
	defer b1.Close()
	b2.Close() // the far end of b is gone: writes to b1 fail
	done := make(chan struct{})
	go func() {
		Splice(a1, b1)
		close(done)
	}()
	// Far more than socket buffers hold: without draining, these writes would stall.
	a2.SetWriteDeadline(time.Now().Add(10 * time.Second))
	chunk := make([]byte, 1<<20)
	for range 64 {
		if _, err := a2.Write(chunk); err != nil {
			t.Fatalf("writing into the live side: %v (Splice stopped reading it)", err)
		}
	}
	a2.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Splice did not return after the source ended")
	}
}

// The multiplexer works over MuxConn, and a data frame's header and body leave in one write.
func TestMuxConnJoinsHeaderAndBody(t *testing.T) {
	var writes [][]byte
	rec := &recordConn{write: func(p []byte) { writes = append(writes, append([]byte(nil), p...)) }}
	c := MuxConn(rec)
	hdr := []byte{0, yamuxTypeData, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3}
	c.Write(hdr)
	if len(writes) != 0 {
		t.Fatalf("a data header was written alone: %x", writes)
	}
	c.Write([]byte("abc"))
	if len(writes) != 1 || !bytes.Equal(writes[0], append(hdr, "abc"...)) {
		t.Fatalf("writes %x, want the header and body together", writes)
	}
	ping := []byte{0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9}
	c.Write(ping)
	if len(writes) != 2 || !bytes.Equal(writes[1], ping) {
		t.Fatalf("a ping must go out at once: %x", writes)
	}
	// A second data frame, shorter, through the same joining buffer.
	hdr2 := []byte{0, yamuxTypeData, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2}
	c.Write(hdr2)
	c.Write([]byte("de"))
	if len(writes) != 3 || !bytes.Equal(writes[2], append(hdr2, "de"...)) {
		t.Fatalf("writes %x, want the second header and body together", writes)
	}
}

type recordConn struct {
	net.Conn
	write func([]byte)
}

func (r *recordConn) Write(p []byte) (int, error) { r.write(p); return len(p), nil }

func TestFeedFrames(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxBody+10)
	remote, local := netip.MustParseAddrPort("10.244.2.9:40000"), netip.MustParseAddrPort("[fd00::5]:80")
	var b []byte
	b = AppendFeedOpen(b, 7, remote, local)
	b = AppendFeedData(b, 7, []byte("GET / HTTP/1.1\r\n"))
	b = AppendFeedOpen(b, 8, remote, local)
	b = AppendFeedData(b, 7, big)
	b = AppendFeedEnd(b, 8, true, "")
	b = AppendFeedEnd(b, 7, false, "lost 1448 bytes at offset 20480")
	r := bytes.NewReader(b)
	var got []string
	data := map[uint32][]byte{}
	for r.Len() > 0 {
		f, err := ReadFeedFrame(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case FeedOpen:
			got = append(got, fmt.Sprintf("open %d %v %v", f.ID, f.Remote, f.Local))
		case FeedData:
			data[f.ID] = append(data[f.ID], f.Data...)
		case FeedEnd:
			got = append(got, fmt.Sprintf("end %d %v %q", f.ID, f.Complete, f.Reason))
		}
	}
	want := []string{"open 7 10.244.2.9:40000 [fd00::5]:80", "open 8 10.244.2.9:40000 [fd00::5]:80",
		"end 8 true \"\"", "end 7 false \"lost 1448 bytes at offset 20480\""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
	if w := append([]byte("GET / HTTP/1.1\r\n"), big...); !bytes.Equal(data[7], w) || len(data[8]) != 0 {
		t.Errorf("data: connection 7 got %d bytes, want %d; connection 8 got %d", len(data[7]), len(w), len(data[8]))
	}
}

func FuzzReadFeedFrame(f *testing.F) {
	f.Add(AppendFeedOpen(nil, 1, netip.MustParseAddrPort("10.0.0.2:5"), netip.MustParseAddrPort("10.0.0.1:80")))
	f.Add(AppendFeedData(nil, 2, []byte("abc")))
	f.Add(AppendFeedEnd(nil, 3, false, "lost"))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := ReadFeedFrame(bytes.NewReader(in), nil)
		if err != nil {
			return
		}
		var out []byte
		switch fr.Type {
		case FeedOpen:
			out = AppendFeedOpen(nil, fr.ID, fr.Remote, fr.Local)
		case FeedData:
			if len(fr.Data) == 0 {
				return
			}
			out = AppendFeedData(nil, fr.ID, fr.Data)
		case FeedEnd:
			out = AppendFeedEnd(nil, fr.ID, fr.Complete, fr.Reason)
		}
		if !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("re-encoding differs: %x vs %x", out, in)
		}
	})
}

func TestFileRequestRoundTrip(t *testing.T) {
	r := FileRequest{ID: 9, Flags: 0x80000, Mode: 0o644, Path: "/var/run/secrets/kubernetes.io/serviceaccount/token"}
	b := AppendFileRequest(nil, r)
	if !IsFileRequest(b) || IsFileRequest(AppendSocketRequest(nil, SocketRequest{ID: 1, Family: 2, Count: 1})) {
		t.Fatal("IsFileRequest does not tell the two requests apart")
	}
	got, err := ParseFileRequest(b)
	if err != nil || got != r {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "relative/path"} {
		if _, err := ParseFileRequest(AppendFileRequest(nil, FileRequest{ID: 1, Path: bad})); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

func FuzzParseFileRequest(f *testing.F) {
	f.Add(AppendFileRequest(nil, FileRequest{ID: 1, Flags: 2, Mode: 3, Path: "/etc/hosts"}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseFileRequest(in)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendFileRequest(nil, r), in) {
			t.Fatalf("re-encoding differs")
		}
	})
}
