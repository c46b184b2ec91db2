package intercept

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompPacket lays out struct seccomp_data for the x/net/bpf VM. The VM loads 32-bit words
// big-endian while the kernel loads them in host order, so each word is written big-endian at
// the offset where the kernel would find it.
func seccompPacket(nr int, arch uint32, args [6]uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[offNr:], uint32(nr))
	binary.BigEndian.PutUint32(b[offArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[argLow(i):], uint32(a))
		binary.BigEndian.PutUint32(b[argHigh(i):], uint32(a>>32))
	}
	return b
}

func TestFilter(t *testing.T) {
	const cookie = 0x1234_5678_9abc_def1
	rules := []Rule{
		{Nr: unix.SYS_CONNECT, ArgNonZero: -1},
		{Nr: unix.SYS_SENDTO, ArgNonZero: 4},
		{Nr: unix.SYS_OPENAT, ArgNonZero: -1},
		{Nr: unix.SYS_RECVFROM, ArgNonZero: 4},
		{Nr: unix.SYS_RECVFROM, ArgNonZero: 5}, // a second rule for one number: either traps
		{Nr: unix.SYS_SOCKET, ArgNonZero: -1, Match: []ArgMatch{
			{Arg: 0, In: []uint32{unix.AF_INET, unix.AF_INET6}},
			{Arg: 1, Mask: 0xf, In: []uint32{unix.SOCK_STREAM}},
		}},
		{Nr: unix.SYS_SOCKET, ArgNonZero: 2, Match: []ArgMatch{{Arg: 0, In: []uint32{unix.AF_UNIX}}}},
		{Nr: unix.SYS_BIND, ArgNonZero: -1},
	}
	raw, err := buildFilter(rules, cookie)
	if err != nil {
		t.Fatal(err)
	}
	insns, allDecoded := bpf.Disassemble(raw)
	if !allDecoded {
		t.Fatalf("program does not disassemble: %v", insns)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	const (
		allow  = unix.SECCOMP_RET_ALLOW
		notify = unix.SECCOMP_RET_USER_NOTIF
	)
	tests := []struct {
		name string
		nr   int
		arch uint32
		args [6]uint64
		want int
	}{
		{"untrapped", unix.SYS_READ, nativeArch, [6]uint64{}, allow},
		{"untrapped with cookie", unix.SYS_READ, nativeArch, [6]uint64{5: cookie}, allow},
		{"always", unix.SYS_CONNECT, nativeArch, [6]uint64{3, 0x7fff0000, 16}, notify},
		{"always, other rule", unix.SYS_OPENAT, nativeArch, [6]uint64{}, notify},
		{"other arch", unix.SYS_CONNECT, unix.AUDIT_ARCH_I386, [6]uint64{}, allow},
		{"arg zero", unix.SYS_SENDTO, nativeArch, [6]uint64{3, 1, 1, 0, 0, 0}, allow},
		{"arg low half", unix.SYS_SENDTO, nativeArch, [6]uint64{3, 1, 1, 0, 0x10, 16}, notify},
		{"arg high half", unix.SYS_SENDTO, nativeArch, [6]uint64{3, 1, 1, 0, 0x7f00_0000_0000, 16}, notify},
		{"other arg non-zero", unix.SYS_SENDTO, nativeArch, [6]uint64{3, 1, 1, 1, 0, 16}, allow},
		{"second rule", unix.SYS_RECVFROM, nativeArch, [6]uint64{3, 1, 1, 0, 0, 0x7fff0000}, notify},
		{"first rule", unix.SYS_RECVFROM, nativeArch, [6]uint64{3, 1, 1, 0, 0x7fff0000, 0}, notify},
		{"neither rule", unix.SYS_RECVFROM, nativeArch, [6]uint64{3, 1, 1, 0, 0, 0}, allow},
		{"match both", unix.SYS_SOCKET, nativeArch, [6]uint64{unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_NONBLOCK, 0}, notify},
		{"match first value", unix.SYS_SOCKET, nativeArch, [6]uint64{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 6}, notify},
		{"match high half ignored", unix.SYS_SOCKET, nativeArch, [6]uint64{1<<32 | unix.AF_INET, unix.SOCK_STREAM}, notify},
		{"match first fails", unix.SYS_SOCKET, nativeArch, [6]uint64{unix.AF_NETLINK, unix.SOCK_STREAM}, allow},
		{"match second fails", unix.SYS_SOCKET, nativeArch, [6]uint64{unix.AF_INET, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC}, allow},
		{"match, later rule holds", unix.SYS_SOCKET, nativeArch, [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM, 1}, notify},
		{"match, later rule's arg zero", unix.SYS_SOCKET, nativeArch, [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0}, allow},
		{"rule after matches", unix.SYS_BIND, nativeArch, [6]uint64{3}, notify},
		{"cookie", unix.SYS_CONNECT, nativeArch, [6]uint64{5: cookie}, allow},
		{"half cookie low", unix.SYS_CONNECT, nativeArch, [6]uint64{5: cookie & 0xffffffff}, notify},
		{"half cookie high", unix.SYS_CONNECT, nativeArch, [6]uint64{5: cookie &^ 0xffffffff}, notify},
	}
	if x32Bit != 0 {
		tests = append(tests, struct {
			name string
			nr   int
			arch uint32
			args [6]uint64
			want int
		}{"x32", unix.SYS_CONNECT | x32Bit, nativeArch, [6]uint64{}, allow})
	}
	for _, tt := range tests {
		got, err := vm.Run(seccompPacket(tt.nr, tt.arch, tt.args))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: nr %d args %#x: got %#x, want %#x", tt.name, tt.nr, tt.args, got, tt.want)
		}
	}
}

func TestFilterNoRules(t *testing.T) {
	raw, err := buildFilter(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	insns, _ := bpf.Disassemble(raw)
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	for _, nr := range []int{unix.SYS_READ, unix.SYS_CONNECT, unix.SYS_OPENAT} {
		if got, _ := vm.Run(seccompPacket(nr, nativeArch, [6]uint64{})); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("nr %d: got %#x, want allow", nr, got)
		}
	}
}

func TestFilterBadRule(t *testing.T) {
	for _, r := range []Rule{{Nr: -1, ArgNonZero: -1}, {Nr: 1, ArgNonZero: 6}, {Nr: 1, ArgNonZero: -2},
		{Nr: 1, ArgNonZero: -1, Match: []ArgMatch{{Arg: 6, In: []uint32{1}}}},
		{Nr: 1, ArgNonZero: -1, Match: []ArgMatch{{Arg: 0}}}} {
		if _, err := buildFilter([]Rule{r}, 1); err == nil {
			t.Errorf("buildFilter(%+v) succeeded", r)
		}
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615"
	st, err := parseStat(1234, line)
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{pid: 1234, ppid: 1, pgrp: 1234, state: 'S', start: 98765}
	if st != want {
		t.Errorf("parseStat = %+v, want %+v", st, want)
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for _, tt := range []struct {
		release, want string
		ok            bool
	}{
		{"6.18.44-fc-v769", "6.0", true},
		{"5.15.0-91-generic", "6.0", false},
		{"5.9", "5.9", true},
		{"5.10.1", "5.9", true},
		{"4.19.0", "5.0", false},
		{"junk", "5.0", false},
	} {
		if got := releaseAtLeast(tt.release, tt.want); got != tt.ok {
			t.Errorf("releaseAtLeast(%q, %q) = %v", tt.release, tt.want, got)
		}
	}
}
