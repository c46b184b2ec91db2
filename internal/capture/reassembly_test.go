package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

// recordSink keeps what a connection delivered, and notes calls that break the Sink contract.
type recordSink struct {
	data      []byte
	ends      int
	complete  bool
	reason    string
	failAfter int // fail a Write once this many bytes were taken; 0: never
	misuse    []string
}

func (s *recordSink) Write(p []byte) error {
	if s.ends > 0 {
		s.misuse = append(s.misuse, "Write after End")
	}
	if len(p) == 0 {
		s.misuse = append(s.misuse, "empty Write")
	}
	if s.failAfter > 0 && len(s.data)+len(p) > s.failAfter {
		return errors.New("queue full")
	}
	s.data = append(s.data, p...)
	return nil
}

func (s *recordSink) End(complete bool, reason string) {
	s.ends++
	if s.ends > 1 {
		s.misuse = append(s.misuse, "End called again")
	}
	s.complete, s.reason = complete, reason
}

// step is one event: a segment from the client (seq relative to the ISN: 0 is the SYN, 1 the
// first byte of data) or, with tick, a tick of the tracker's clock.
type step struct {
	at    time.Duration
	seq   uint32
	flags uint8
	data  string
	size  int // data length on the wire when more than len(data): a truncated capture
	tick  bool
}

func syn(at time.Duration) step { return step{at: at, flags: flagSYN} }
func ack(at time.Duration, seq uint32) step {
	return step{at: at, seq: seq, flags: flagACK}
}
func data(at time.Duration, seq uint32, s string) step {
	return step{at: at, seq: seq, flags: flagACK | 0x08, data: s}
}
func fin(at time.Duration, seq uint32, s string) step {
	return step{at: at, seq: seq, flags: flagACK | flagFIN, data: s}
}
func rst(at time.Duration, seq uint32) step { return step{at: at, seq: seq, flags: flagRST | flagACK} }
func tick(at time.Duration) step            { return step{at: at, tick: true} }

// handshake is the SYN and the ACK that completes the handshake.
var handshake = []step{syn(0), ack(0, 1)}

type result struct {
	Opened   int
	Data     string
	Ended    bool
	Complete bool
	Reason   string
	Missed   uint64
	Misuse   []string
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// replay runs steps through a tracker that follows port 80, with the given ISN.
func replay(isn uint32, steps []step, failAfter int) (result, *tracker) {
	var sinks []*recordSink
	var stats counters
	tr := newTracker(func(remote, local netip.AddrPort) (Sink, error) {
		s := &recordSink{failAfter: failAfter}
		sinks = append(sinks, s)
		return s, nil
	}, slog.New(slog.DiscardHandler), &stats, time.Second)
	tr.ports = newPortSet([]uint16{80})
	for _, st := range steps {
		now := t0.Add(st.at)
		if st.tick {
			tr.tick(now)
			continue
		}
		size := max(st.size, len(st.data))
		p := packet{src: client4, dst: server4, seq: isn + st.seq, flags: st.flags, payload: []byte(st.data), size: size}
		tr.handle(now, &p)
	}
	r := result{Opened: len(sinks), Missed: stats.missed.Load()}
	if len(sinks) > 0 {
		s := sinks[len(sinks)-1]
		r.Data, r.Ended, r.Complete, r.Reason, r.Misuse = string(s.data), s.ends > 0, s.complete, s.reason, s.misuse
	}
	return r, tr
}

func seq(parts ...[]step) []step { return slices.Concat(parts...) }

func TestTracker(t *testing.T) {
	defer goleak.VerifyNone(t)
	big := strings.Repeat("x", 64<<10)
	var overflow []step // out-of-order segments beyond the per-connection buffer
	for i := range maxConnBuffer/len(big) + 1 {
		overflow = append(overflow, data(0, uint32(3+i*len(big)), big))
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		steps []step
		fail  int
		want  result
	}{
		{"in order", seq(handshake, []step{data(0, 1, "hello "), data(0, 7, "world"), fin(0, 12, "")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"fin with data", seq(handshake, []step{data(0, 1, "hello "), fin(0, 7, "world")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"open, no fin yet", seq(handshake, []step{data(0, 1, "hello")}),
			0, result{Opened: 1, Data: "hello"}},
		{"empty connection", seq(handshake, []step{fin(0, 1, "")}),
			0, result{Opened: 1, Ended: true, Complete: true}},
		{"out of order", seq(handshake, []step{data(0, 7, "world"), data(0, 1, "hello "), fin(0, 12, "")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"reversed", seq(handshake, []step{fin(0, 10, "ld"), data(0, 7, "wor"), data(0, 4, "lo "), data(0, 1, "hel")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"duplicates", seq(handshake, []step{data(0, 1, "hello "), data(0, 1, "hello "), data(0, 7, "world"),
			data(0, 7, "world"), data(0, 1, "hello "), fin(0, 12, ""), fin(0, 12, "")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"overlaps in order", seq(handshake, []step{data(0, 1, "hello"), data(0, 3, "llo wo"), data(0, 6, " world"), fin(0, 12, "")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"overlaps out of order", seq(handshake, []step{data(0, 8, "orld"), data(0, 5, "o wor"), data(0, 10, "ld"),
			data(0, 4, "lo wo"), data(0, 1, "hell"), fin(0, 12, "")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"one retransmission covers several", seq(handshake, []step{data(0, 3, "l"), data(0, 7, "w"), data(0, 10, "l"),
			data(0, 1, "hello world"), fin(0, 12, "")}),
			0, result{Opened: 1, Data: "hello world", Ended: true, Complete: true}},
		{"gap filled by retransmission", seq(handshake, []step{data(0, 1, "aaa"), data(0, 7, "ccc"), tick(500 * ms),
			data(900*ms, 4, "bbb"), tick(1500 * ms), fin(2000*ms, 10, "")}),
			0, result{Opened: 1, Data: "aaabbbccc", Ended: true, Complete: true}},
		{"gap never filled", seq(handshake, []step{data(0, 1, "aaa"), data(0, 7, "ccc"), tick(999 * ms),
			tick(1000 * ms), data(1100*ms, 4, "bbb")}),
			0, result{Opened: 1, Data: "aaa", Ended: true, Reason: "lost 3 bytes at offset 3"}},
		{"gap still open", seq(handshake, []step{data(0, 1, "aaa"), data(0, 7, "ccc"), tick(999 * ms)}),
			0, result{Opened: 1, Data: "aaa"}},
		{"progress restarts the gap timer", seq(handshake, []step{data(0, 1, "a"), data(0, 6, "f"), data(800*ms, 2, "b"),
			tick(1500 * ms), data(1600*ms, 3, "c"), tick(2599 * ms), tick(2600 * ms)}),
			0, result{Opened: 1, Data: "abc", Ended: true, Reason: "lost 2 bytes at offset 3"}},
		{"lost tail seen from a bare ack", seq(handshake, []step{data(0, 1, "aaa"), ack(10*ms, 7), tick(1010 * ms)}),
			0, result{Opened: 1, Data: "aaa", Ended: true, Reason: "lost 3 bytes at offset 3"}},
		{"keepalive probe is no gap", seq(handshake, []step{data(0, 1, "aaa"), ack(10*ms, 3), tick(5000 * ms)}),
			0, result{Opened: 1, Data: "aaa"}},
		{"fin with pending out-of-order data", seq(handshake, []step{data(0, 1, "aaa"), data(0, 7, "ccc"), fin(0, 10, ""),
			data(100*ms, 4, "bbb")}),
			0, result{Opened: 1, Data: "aaabbbccc", Ended: true, Complete: true}},
		{"fin before a gap is filled times out", seq(handshake, []step{data(0, 1, "aaa"), fin(0, 7, "ccc"), tick(time.Second)}),
			0, result{Opened: 1, Data: "aaa", Ended: true, Reason: "lost 3 bytes at offset 3"}},
		{"data after the fin is ignored", seq(handshake, []step{data(0, 1, "ab"), fin(0, 4, ""), data(0, 3, "cdef")}),
			0, result{Opened: 1, Data: "abc", Ended: true, Complete: true}},
		{"kept data after the fin is dropped", seq(handshake, []step{data(0, 1, "ab"), data(0, 4, "defg"), fin(0, 5, ""),
			data(0, 3, "c")}),
			0, result{Opened: 1, Data: "abcd", Ended: true, Complete: true}},
		{"reset after all data", seq(handshake, []step{data(0, 1, "abc"), rst(0, 4)}),
			0, result{Opened: 1, Data: "abc", Ended: true, Complete: true}},
		{"reset after lost data", seq(handshake, []step{data(0, 1, "abc"), rst(0, 7)}),
			0, result{Opened: 1, Data: "abc", Ended: true, Reason: "lost 3 bytes at offset 3 before the client's reset"}},
		{"truncated capture is a gap", seq(handshake, []step{{flags: flagACK, seq: 1, data: "ab", size: 5}, tick(time.Second)}),
			0, result{Opened: 1, Data: "ab", Ended: true, Reason: "lost 3 bytes at offset 2"}},
		{"buffer limit", seq(handshake, []step{data(0, 1, "a")}, overflow),
			0, result{Opened: 1, Data: "a", Ended: true, Reason: "buffer limit"}},
		{"write error", seq(handshake, []step{data(0, 1, "abc"), data(0, 4, "def"), data(0, 7, "ghi"), fin(0, 10, "")}),
			5, result{Opened: 1, Data: "abc", Ended: true, Reason: "write: queue full"}},
		{"data on the syn", []step{{flags: flagSYN, data: "hi"}, ack(0, 3), data(0, 3, "there"), fin(0, 8, "")},
			0, result{Opened: 1, Data: "hithere", Ended: true, Complete: true}},
		{"syn retransmitted", seq(handshake, []step{data(0, 1, "abc"), syn(0), fin(0, 4, "")}),
			0, result{Opened: 1, Data: "abc", Ended: true, Complete: true}},
		{"refused: only a syn", []step{syn(0), syn(time.Second), tick(20 * time.Second)},
			0, result{}},
		{"client resets its handshake", []step{syn(0), rst(0, 1), data(0, 1, "x")},
			0, result{Missed: 1}},
		{"mid-connection", []step{data(0, 1, "abc"), data(0, 4, "def"), fin(0, 7, "")},
			0, result{Missed: 1}},
		{"mid-connection bare acks", []step{ack(0, 1), ack(0, 1), fin(0, 1, "")},
			0, result{}},
		{"retransmission after the end", seq(handshake, []step{data(0, 1, "abc"), fin(0, 4, ""), data(10*ms, 1, "abc")}),
			0, result{Opened: 1, Data: "abc", Ended: true, Complete: true}},
		// An ended connection is remembered for one to two endedLinger (two generations, turned
		// by the ticks), so a retransmission 4 s after the end is still recognised, and one
		// after the memory of it is gone counts as a connection seen mid-way.
		{"retransmission seconds after the end", seq(handshake, []step{data(0, 1, "abc"), fin(0, 4, ""),
			tick(time.Second), tick(4 * time.Second), data(4*time.Second, 1, "abc")}),
			0, result{Opened: 1, Data: "abc", Ended: true, Complete: true}},
		{"retransmission long after the end", seq(handshake, []step{data(0, 1, "abc"), fin(0, 4, ""),
			tick(time.Second), tick(7 * time.Second), data(7*time.Second, 1, "abc")}),
			0, result{Opened: 1, Data: "abc", Ended: true, Complete: true, Missed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The same steps with ISNs that make the sequence numbers wrap around 2^32 at
			// every place of the stream.
			for _, isn := range []uint32{1000, 0xffffffff, 0xfffffffe, 0xfffffff8, 0xfffffff0, 0x7ffffffc} {
				got, tr := replay(isn, tc.steps, tc.fail)
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("isn %#x (-want +got):\n%s", isn, diff)
				}
				if got.Ended && (len(tr.flows) != 0 || len(tr.gapped) != 0) {
					t.Errorf("isn %#x: ended connection still followed", isn)
				}
				if tr.buffered < 0 || (len(tr.flows) == 0 && tr.buffered != 0) {
					t.Errorf("isn %#x: %d bytes buffered", isn, tr.buffered)
				}
			}
		})
	}
}

func TestTrackerReuse(t *testing.T) {
	defer goleak.VerifyNone(t)
	// A new SYN (another ISN) on the addresses of an open connection ends it.
	var sinks []*recordSink
	var stats counters
	tr := newTracker(func(remote, local netip.AddrPort) (Sink, error) {
		s := &recordSink{}
		sinks = append(sinks, s)
		return s, nil
	}, slog.New(slog.DiscardHandler), &stats, time.Second)
	tr.ports = newPortSet([]uint16{80})
	send := func(seq uint32, flags uint8, d string) {
		p := packet{src: client4, dst: server4, seq: seq, flags: flags, payload: []byte(d), size: len(d)}
		tr.handle(t0, &p)
	}
	send(100, flagSYN, "")
	send(101, flagACK, "")
	send(101, flagACK, "old")
	send(5000, flagSYN, "")
	send(5001, flagACK, "")
	send(5001, flagACK, "new")
	send(5004, flagACK|flagFIN, "")
	type end struct {
		Data     string
		Complete bool
		Reason   string
	}
	var got []end
	for _, s := range sinks {
		got = append(got, end{string(s.data), s.complete, s.reason})
	}
	want := []end{{"old", false, "connection reused before it ended"}, {"new", true, ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestTrackerPortsAndStop(t *testing.T) {
	defer goleak.VerifyNone(t)
	sinks := map[uint16]*recordSink{}
	var stats counters
	tr := newTracker(func(remote, local netip.AddrPort) (Sink, error) {
		s := &recordSink{}
		sinks[local.Port()] = s
		return s, nil
	}, slog.New(slog.DiscardHandler), &stats, time.Second)
	tr.ports = newPortSet([]uint16{80, 81})
	for _, port := range []uint16{80, 81, 82} {
		dst := netip.AddrPortFrom(server4.Addr(), port)
		for _, p := range []packet{
			{src: client4, dst: dst, seq: 1, flags: flagSYN},
			{src: client4, dst: dst, seq: 2, flags: flagACK},
			{src: client4, dst: dst, seq: 2, flags: flagACK, payload: []byte("x"), size: 1},
		} {
			tr.handle(t0, &p)
		}
	}
	if _, ok := sinks[82]; ok {
		t.Errorf("port 82 is not captured, but a connection to it was opened")
	}
	tr.setPorts(t0, newPortSet([]uint16{81}))
	if s := sinks[80]; s.ends != 1 || s.complete || s.reason != "port no longer captured" {
		t.Errorf("port 80 removed: End calls %d, complete %v, reason %q", s.ends, s.complete, s.reason)
	}
	if s := sinks[81]; s.ends != 0 {
		t.Errorf("port 81 still captured, but its connection ended: %q", s.reason)
	}
	tr.stop(t0, "capture stopped")
	if s := sinks[81]; s.ends != 1 || s.complete || s.reason != "capture stopped" || string(s.data) != "x" {
		t.Errorf("stop: End calls %d, complete %v, reason %q, data %q", s.ends, s.complete, s.reason, s.data)
	}
	want := Stats{Opened: 2, Incomplete: 2, Bytes: 2}
	if diff := cmp.Diff(want, stats.snapshot()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

// TestTrackerRandom cuts random streams into random, overlapping segments, sends them in a
// random order with duplicates, and checks that the stream comes out whole; with some segments
// never sent, that it comes out as a prefix and incomplete.
func TestTrackerRandom(t *testing.T) {
	defer goleak.VerifyNone(t)
	for i := range 300 {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		stream := make([]byte, rng.IntN(200_000))
		for j := range stream {
			stream[j] = byte(rng.Uint32())
		}
		lose := i%3 == 2
		var steps []step
		for off := 0; off < len(stream); {
			n := min(1+rng.IntN(3000), len(stream)-off)
			start := max(0, off-rng.IntN(100)) // overlap with what came before
			steps = append(steps, data(0, uint32(start+1), string(stream[start:off+n])))
			off += n
		}
		if len(steps) > 1 {
			for j := range steps { // local reordering, like a network's
				k := min(len(steps)-1, j+rng.IntN(8))
				steps[j], steps[k] = steps[k], steps[j]
			}
			for range len(steps) / 10 {
				steps = append(steps, steps[rng.IntN(len(steps))])
			}
		}
		lost := -1
		if lose && len(steps) > 2 {
			lost = rng.IntN(len(steps))
			steps = slices.Delete(steps, lost, lost+1)
		}
		all := seq(handshake, steps, []step{fin(0, uint32(len(stream)+1), ""), tick(time.Minute)})
		isn := rng.Uint32()
		got, _ := replay(isn, all, 0)
		name := fmt.Sprintf("case %d (isn %#x, %d bytes, %d segments, lost %d)", i, isn, len(stream), len(steps), lost)
		switch {
		case len(got.Misuse) > 0:
			t.Fatalf("%s: sink misused: %v", name, got.Misuse)
		case !got.Ended:
			t.Fatalf("%s: not ended", name)
		case got.Complete && got.Data != string(stream):
			t.Fatalf("%s: complete, but %d bytes delivered differ from the %d sent", name, len(got.Data), len(stream))
		case !got.Complete && !strings.HasPrefix(string(stream), got.Data):
			t.Fatalf("%s: incomplete (%s) and not a prefix", name, got.Reason)
		case !got.Complete && lost < 0:
			t.Fatalf("%s: incomplete (%s) with nothing lost", name, got.Reason)
		}
	}
}

// nopSink takes everything and keeps nothing.
type nopSink struct{}

func (nopSink) Write([]byte) error { return nil }
func (nopSink) End(bool, string)   {}

// BenchmarkTrackerConnections is the tracker's work for one short connection (SYN, the ACK that
// ends the handshake, a request, FIN) as a load of a connection per request gives it: 30 000
// connections a second from many client ports, with the tracker's once-a-second sweeps, so that
// the ended connections it remembers reach their steady number.
func BenchmarkTrackerConnections(b *testing.B) {
	var stats counters
	tr := newTracker(func(remote, local netip.AddrPort) (Sink, error) { return nopSink{}, nil },
		slog.New(slog.DiscardHandler), &stats, time.Second)
	tr.ports = newPortSet([]uint16{80})
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	const perSecond = 30000
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now := t0.Add(time.Duration(i) * time.Second / perSecond)
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 24), byte(i >> 16)}), uint16(i))
		isn := uint32(i) * 7919
		p := packet{src: src, dst: server4, seq: isn, flags: flagSYN}
		tr.handle(now, &p)
		p = packet{src: src, dst: server4, seq: isn + 1, flags: flagACK}
		tr.handle(now, &p)
		p = packet{src: src, dst: server4, seq: isn + 1, flags: flagACK | 0x08, payload: req, size: len(req)}
		tr.handle(now, &p)
		p = packet{src: src, dst: server4, seq: isn + 1 + uint32(len(req)), flags: flagACK | flagFIN}
		tr.handle(now, &p)
		if i%1000 == 0 {
			tr.tick(now)
		}
	}
	if stats.completed.Load() == 0 || stats.missed.Load() != 0 {
		b.Fatalf("completed %d, missed %d", stats.completed.Load(), stats.missed.Load())
	}
}
