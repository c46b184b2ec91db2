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
//   - carry TCP to one of ports,
//   - carry data, or SYN, FIN or RST: a bare ACK tells the reassembly nothing it needs,
//   - do not carry the ignored mark.
//
// Each port takes two instructions (a test and a jump), so no conditional jump is longer than
// the few fixed instructions before the port list, whatever the number of ports.
func filter(ports []uint16, ignore mark) ([]unix.SockFilter, error) {
	drop := bpf.RetConstant{Val: 0}
	accept := bpf.RetConstant{Val: 0xffffffff}
	var prog []bpf.Instruction
	if ignore.mask != 0 {
		prog = append(prog,
			bpf.LoadExtension{Num: bpf.ExtMark},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ignore.mask},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ignore.value & ignore.mask, SkipTrue: 1},
			drop,
		)
	}
	prog = append(prog, []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_HOST, SkipTrue: 1},
		/* 2 */ drop,
		/* 3 */ bpf.LoadExtension{Num: bpf.ExtProto},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6, SkipTrue: 13},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipTrue: 1},
		/* 6 */ drop,
		// IPv4
		/* 7 */ bpf.LoadAbsolute{Off: 9, Size: 1},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipTrue: 1},
		/* 9 */ drop,
		/* 10 */ bpf.LoadAbsolute{Off: 6, Size: 2},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: 0x3fff, SkipTrue: 1}, // MF, offset
		/* 12 */ drop,
		/* 13 */ bpf.LoadAbsolute{Off: 2, Size: 2}, // total length
		/* 14 */ bpf.StoreScratch{Src: bpf.RegA, N: 0},
		/* 15 */ bpf.LoadMemShift{Off: 0}, // X = IP header length
		/* 16 */ bpf.LoadIndirect{Off: 2, Size: 2}, // TCP destination port
		/* 17 */ bpf.Jump{Skip: 8},
		// IPv6
		/* 18 */ bpf.LoadAbsolute{Off: 6, Size: 1},
		/* 19 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipTrue: 1},
		/* 20 */ drop,
		/* 21 */ bpf.LoadAbsolute{Off: 4, Size: 2}, // payload length
		/* 22 */ bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40},
		/* 23 */ bpf.StoreScratch{Src: bpf.RegA, N: 0},
		/* 24 */ bpf.LoadConstant{Dst: bpf.RegX, Val: 40},
		/* 25 */ bpf.LoadAbsolute{Off: 40 + 2, Size: 2},
		// 26: the port list, A = destination port, X = offset of the TCP header, M[0] = the
		// IP packet's length as its header gives it (0 or 40 with BIG TCP: then the packet's)
	}...)
	for i, p := range ports {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(p), SkipTrue: 1},
			bpf.Jump{Skip: uint32(2*(len(ports)-1-i) + 1)})
	}
	prog = append(prog,
		drop,
		// A captured port: SYN, FIN or RST, or data?
		bpf.LoadIndirect{Off: 13, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: flagSYN | flagFIN | flagRST, SkipTrue: 10},
		bpf.LoadIndirect{Off: 12, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.TAX{}, // X = offset of the data
		bpf.LoadScratch{Dst: bpf.RegA, N: 0},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 40, SkipTrue: 1},
		bpf.LoadExtension{Num: bpf.ExtLen}, // BIG TCP: no length in the header
		bpf.JumpIfX{Cond: bpf.JumpGreaterThan, SkipTrue: 1},
		drop, // a bare ACK
		accept,
	)
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

// mark is a packet mark and the mask to compare it under.
type mark struct{ value, mask uint32 }

// attachFilter replaces the socket's filter; the kernel swaps it atomically.
func attachFilter(fd int, f []unix.SockFilter) error {
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: unsafe.SliceData(f)}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attach packet filter: %w", err)
	}
	return nil
}
