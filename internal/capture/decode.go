package capture

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// TCP flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// packet is one decoded TCP segment.
type packet struct {
	src, dst netip.AddrPort
	seq      uint32
	flags    uint8
	// payload is the captured part of the segment's data; size is the data length the headers
	// give. They differ only when the capture was truncated (the packet did not fit the ring).
	payload []byte
	size    int
}

var (
	errShort    = errors.New("packet too short")
	errVersion  = errors.New("not IPv4 or IPv6")
	errNotTCP   = errors.New("not TCP (or IPv6 extension headers)")
	errFragment = errors.New("IPv4 fragment")
	errLength   = errors.New("bad length")
)

// decode reads an IPv4 or IPv6 packet that carries TCP. b is what was captured, starting at the
// IP header; wireLen is the packet's length as received (at least len(b)). Link-layer padding
// after the IP packet is ignored. Checksums are not checked.
func decode(b []byte, wireLen int) (packet, error) {
	if len(b) < 1 {
		return packet{}, errShort
	}
	if wireLen < len(b) {
		wireLen = len(b)
	}
	var p packet
	var total, hlen int // IP packet length, IP header length
	var src, dst netip.Addr
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return packet{}, errShort
		}
		hlen = int(b[0]&0x0f) * 4
		if hlen < 20 || len(b) < hlen {
			return packet{}, errLength
		}
		if b[9] != 6 {
			return packet{}, errNotTCP
		}
		if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
			return packet{}, errFragment
		}
		total = int(binary.BigEndian.Uint16(b[2:4]))
		if total == 0 { // BIG TCP (GRO beyond 64 KiB): the length is the packet's
			total = wireLen
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
	case 6:
		if len(b) < 40 {
			return packet{}, errShort
		}
		hlen = 40
		if b[6] != 6 {
			return packet{}, errNotTCP
		}
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		if plen == 0 { // a jumbogram or BIG TCP: the length is the packet's
			plen = wireLen - hlen
		}
		total = hlen + plen
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return packet{}, errVersion
	}
	if total < hlen || total > wireLen {
		return packet{}, errLength
	}
	tcp := b[hlen:min(total, len(b))]
	tcpLen := total - hlen
	if len(tcp) < 20 {
		return packet{}, errShort
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return packet{}, errLength
	}
	p.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2]))
	p.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4]))
	p.seq = binary.BigEndian.Uint32(tcp[4:8])
	p.flags = tcp[13]
	p.payload = tcp[off:]
	p.size = tcpLen - off
	return p, nil
}
