package session

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Sizes of struct sockaddr_in and sockaddr_in6.
const (
	sizeofSockaddrInet4 = 16
	sizeofSockaddrInet6 = 28
)

// parseSockaddr decodes an AF_INET or AF_INET6 sockaddr as a program passed it. ok is false
// for every other family (AF_UNIX, AF_UNSPEC, AF_NETLINK...) and for short buffers.
func parseSockaddr(b []byte) (ap netip.AddrPort, family int, ok bool) {
	if len(b) < 2 {
		return ap, 0, false
	}
	family = int(binary.NativeEndian.Uint16(b))
	switch family {
	case unix.AF_INET:
		if len(b) < 8 {
			return ap, family, false
		}
		ip := netip.AddrFrom4([4]byte(b[4:8]))
		return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[2:4])), family, true
	case unix.AF_INET6:
		if len(b) < 24 {
			return ap, family, false
		}
		ip := netip.AddrFrom16([16]byte(b[8:24]))
		return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[2:4])), family, true
	}
	return ap, family, false
}

// encodeSockaddr encodes ap as a sockaddr of family: an IPv4 address in an AF_INET6 sockaddr
// becomes the v4-mapped form, and a v4-mapped one in AF_INET is unmapped.
func encodeSockaddr(family int, ap netip.AddrPort) []byte {
	if family == unix.AF_INET {
		b := make([]byte, sizeofSockaddrInet4)
		binary.NativeEndian.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		ip := ap.Addr().Unmap().As4()
		copy(b[4:8], ip[:])
		return b
	}
	b := make([]byte, sizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	ip := ap.Addr().As16()
	copy(b[8:24], ip[:])
	return b
}

// toUnix turns ap into a unix.Sockaddr of the given family, mapping or unmapping IPv4.
func toUnix(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// fromUnix converts a unix.Sockaddr of an inet family; IPv4-mapped addresses are unmapped.
func fromUnix(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}
