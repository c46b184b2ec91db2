package capture

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tcpPacket builds an IPv4 or IPv6 packet carrying one TCP segment. ipOpts and tcpOpts are
// option bytes (multiples of 4); pad is link-layer padding appended after the IP packet.
func tcpPacket(src, dst netip.AddrPort, seq uint32, flags uint8, payload []byte, ipOpts, tcpOpts, pad int) []byte {
	tcp := make([]byte, 20+tcpOpts+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = byte((20+tcpOpts)/4) << 4
	tcp[13] = flags
	copy(tcp[20+tcpOpts:], payload)
	var ip []byte
	if src.Addr().Is4() {
		hl := 20 + ipOpts
		ip = make([]byte, hl, hl+len(tcp)+pad)
		ip[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(tcp)))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8], ip[9] = 64, 6
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
	} else {
		ip = make([]byte, 40, 40+len(tcp)+pad)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6], ip[7] = 6, 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	ip = append(ip, tcp...)
	return append(ip, make([]byte, pad)...)
}

var (
	client4 = netip.MustParseAddrPort("10.9.1.2:40000")
	server4 = netip.MustParseAddrPort("10.9.1.1:80")
	client6 = netip.MustParseAddrPort("[fd09:1::2]:40000")
	server6 = netip.MustParseAddrPort("[fd09:1::1]:80")
)

func TestDecode(t *testing.T) {
	type out struct {
		Src, Dst string
		Seq      uint32
		Flags    uint8
		Payload  string
		Size     int
		Err      string
	}
	hello := []byte("hello")
	fragment := tcpPacket(client4, server4, 7, flagACK, hello, 0, 0, 0)
	binary.BigEndian.PutUint16(fragment[6:], 0x2000) // MF
	udp := tcpPacket(client4, server4, 7, flagACK, hello, 0, 0, 0)
	udp[9] = 17
	ext6 := tcpPacket(client6, server6, 7, flagACK, hello, 0, 0, 0)
	ext6[6] = 0 // hop-by-hop options header
	bigTCP := tcpPacket(client4, server4, 7, flagACK, hello, 0, 0, 0)
	binary.BigEndian.PutUint16(bigTCP[2:], 0)
	jumbo6 := tcpPacket(client6, server6, 7, flagACK, hello, 0, 0, 0)
	binary.BigEndian.PutUint16(jumbo6[4:], 0)
	badOff := tcpPacket(client4, server4, 7, flagACK, hello, 0, 0, 0)
	badOff[20+12] = 15 << 4 // 60-byte header in a 25-byte segment
	tooLong := tcpPacket(client4, server4, 7, flagACK, hello, 0, 0, 0)
	binary.BigEndian.PutUint16(tooLong[2:], 1000)

	for _, tc := range []struct {
		name    string
		b       []byte
		wireLen int
		want    out
	}{
		{"ipv4", tcpPacket(client4, server4, 7, flagACK|flagFIN, hello, 0, 0, 0), 0,
			out{Src: client4.String(), Dst: server4.String(), Seq: 7, Flags: flagACK | flagFIN, Payload: "hello", Size: 5}},
		{"ipv4 options and padding", tcpPacket(client4, server4, 0xfffffffe, flagACK, hello, 8, 12, 6), 0,
			out{Src: client4.String(), Dst: server4.String(), Seq: 0xfffffffe, Flags: flagACK, Payload: "hello", Size: 5}},
		{"ipv4 bare ack padded", tcpPacket(client4, server4, 9, flagACK, nil, 0, 0, 6), 0,
			out{Src: client4.String(), Dst: server4.String(), Seq: 9, Flags: flagACK, Payload: "", Size: 0}},
		{"ipv6", tcpPacket(client6, server6, 7, flagSYN, hello, 0, 20, 0), 0,
			out{Src: client6.String(), Dst: server6.String(), Seq: 7, Flags: flagSYN, Payload: "hello", Size: 5}},
		{"truncated capture", tcpPacket(client4, server4, 7, flagACK, hello, 0, 0, 0)[:42], 45,
			out{Src: client4.String(), Dst: server4.String(), Seq: 7, Flags: flagACK, Payload: "he", Size: 5}},
		{"ipv4 big tcp", bigTCP, 0,
			out{Src: client4.String(), Dst: server4.String(), Seq: 7, Flags: flagACK, Payload: "hello", Size: 5}},
		{"ipv6 big tcp", jumbo6, 0,
			out{Src: client6.String(), Dst: server6.String(), Seq: 7, Flags: flagACK, Payload: "hello", Size: 5}},
		{"ipv4 fragment", fragment, 0, out{Err: errFragment.Error()}},
		{"udp", udp, 0, out{Err: errNotTCP.Error()}},
		{"ipv6 extension header", ext6, 0, out{Err: errNotTCP.Error()}},
		{"tcp header beyond segment", badOff, 0, out{Err: errLength.Error()}},
		{"ip length beyond packet", tooLong, 0, out{Err: errLength.Error()}},
		{"headers cut", tcpPacket(client4, server4, 7, flagACK, hello, 0, 0, 0)[:30], 45, out{Err: errShort.Error()}},
		{"empty", nil, 0, out{Err: errShort.Error()}},
		{"arp", []byte{0, 1, 8, 0, 6, 4, 0, 1}, 0, out{Err: errVersion.Error()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := decode(tc.b, tc.wireLen)
			var got out
			if err != nil {
				got.Err = err.Error()
			} else {
				got = out{Src: p.src.String(), Dst: p.dst.String(), Seq: p.seq, Flags: p.flags, Payload: string(p.payload), Size: p.size}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("decode (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(tcpPacket(client4, server4, 7, flagACK, []byte("hello"), 4, 8, 6), 0)
	f.Add(tcpPacket(client6, server6, 7, flagSYN, []byte("hello"), 0, 0, 0), 70)
	f.Add([]byte{0x45}, 1)
	f.Add([]byte{0x60, 0, 0, 0, 0, 0, 6}, 1<<20)
	f.Fuzz(func(t *testing.T, b []byte, wireLen int) {
		p, err := decode(b, wireLen)
		if err != nil {
			return
		}
		if len(p.payload) > p.size {
			t.Fatalf("payload of %d bytes, size %d", len(p.payload), p.size)
		}
		if len(p.payload) > 0 {
			start := cap(b) - cap(p.payload)
			if start < 0 || start+len(p.payload) > len(b) || &b[start] != &p.payload[0] {
				t.Fatalf("payload is not inside the packet")
			}
		}
	})
}
