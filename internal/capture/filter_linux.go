package capture

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// filter returns the classic BPF program of the packet socket. The socket is SOCK_DGRAM, so the
// program sees the packet from its IP header on. It accepts, whole, the packets that
//   - the namespace receives (pkt_type PACKET_HOST: not the copies of packets it sends, which
//     on lo are the second copy of every packet, and not other hosts' packets),
//   - are IPv4 without fragmentation, or IPv6 whose next header is TCP (no extension headers),
//   - carry TCP to one of ports.
//
// Each port takes two instructions (a test and an accept), so no jump is longer than the few
// fixed instructions before the port list, whatever the number of ports.
func filter(ports []uint16) ([]unix.SockFilter, error) {
	drop := bpf.RetConstant{Val: 0}
	accept := bpf.RetConstant{Val: 0xffffffff}
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_HOST, SkipTrue: 1},
		/* 2 */ drop,
		/* 3 */ bpf.LoadExtension{Num: bpf.ExtProto},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6, SkipTrue: 11},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipTrue: 1},
		/* 6 */ drop,
		// IPv4
		/* 7 */ bpf.LoadAbsolute{Off: 9, Size: 1},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipTrue: 1},
		/* 9 */ drop,
		/* 10 */ bpf.LoadAbsolute{Off: 6, Size: 2},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: 0x3fff, SkipTrue: 1}, // MF, offset
		/* 12 */ drop,
		/* 13 */ bpf.LoadMemShift{Off: 0}, // X = IP header length
		/* 14 */ bpf.LoadIndirect{Off: 2, Size: 2}, // TCP destination port
		/* 15 */ bpf.Jump{Skip: 4},
		// IPv6
		/* 16 */ bpf.LoadAbsolute{Off: 6, Size: 1},
		/* 17 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipTrue: 1},
		/* 18 */ drop,
		/* 19 */ bpf.LoadAbsolute{Off: 40 + 2, Size: 2},
		// 20: the port list, A = destination port
	}
	for _, p := range ports {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(p), SkipTrue: 1}, accept)
	}
	prog = append(prog, drop)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble packet filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// attachFilter replaces the socket's filter; the kernel swaps it atomically.
func attachFilter(fd int, f []unix.SockFilter) error {
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: unsafe.SliceData(f)}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attach packet filter: %w", err)
	}
	return nil
}
