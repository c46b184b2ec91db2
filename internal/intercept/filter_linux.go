package intercept

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets into struct seccomp_data. BPF loads 32-bit words in host byte order; amd64 and arm64
// are little-endian, so the low half of a 64-bit argument comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func argLow(i int) uint32  { return uint32(offArgs + 8*i) }
func argHigh(i int) uint32 { return uint32(offArgs + 8*i + 4) }

// buildFilter returns the classic BPF program for rules:
//
//	arch != native                -> allow
//	nr has the x32 bit            -> allow
//	for each rule, in order: nr == rule.Nr (and its argument conditions hold) -> trap
//	otherwise                     -> allow
//	trap: args[5] == cookie       -> allow (the trampoline's own calls between install and exec)
//	      else                    -> SECCOMP_RET_USER_NOTIF
//
// Several rules for one number are alternatives: the call is trapped if any matches.
func buildFilter(rules []Rule, cookie uint64) ([]bpf.RawInstruction, error) {
	const (
		labelAllow = -1
		labelTrap  = -2
	)
	type jump struct {
		at           int // index of the jump instruction
		target       int // labelAllow, labelTrap, or an instruction index
		ifTrue, cond bool
	}
	var prog []bpf.Instruction
	var jumps []jump
	emit := func(in bpf.Instruction) int {
		prog = append(prog, in)
		return len(prog) - 1
	}
	// jumpIf emits "if A == val goto target" (ifTrue) or "if A != val goto target".
	jumpIf := func(val uint32, ifTrue bool, target int) {
		at := emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
		jumps = append(jumps, jump{at: at, target: target, ifTrue: ifTrue, cond: true})
	}
	jumpTo := func(target int) {
		at := emit(bpf.Jump{})
		jumps = append(jumps, jump{at: at, target: target})
	}

	if nativeArch == 0 {
		return nil, fmt.Errorf("seccomp filter for this architecture: %w", ErrNotSupported)
	}
	emit(bpf.LoadAbsolute{Off: offArch, Size: 4})
	jumpIf(nativeArch, false, labelAllow)
	emit(bpf.LoadAbsolute{Off: offNr, Size: 4})
	if x32Bit != 0 {
		at := emit(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: x32Bit})
		jumps = append(jumps, jump{at: at, target: labelAllow, ifTrue: true, cond: true})
	}
	for _, r := range rules {
		if r.Nr < 0 || r.ArgNonZero < -1 || r.ArgNonZero > 5 {
			return nil, fmt.Errorf("invalid rule %+v", r)
		}
		for _, m := range r.Match {
			if m.Arg < 0 || m.Arg > 5 || len(m.In) == 0 {
				return nil, fmt.Errorf("invalid rule %+v", r)
			}
		}
		otherNr := len(jumps) // the jump to the next rule, patched below
		jumpIf(uint32(r.Nr), false, 0)
		var fail []int // jumps to "this rule does not hold": reload the number, next rule
		for _, m := range r.Match {
			emit(bpf.LoadAbsolute{Off: argLow(m.Arg), Size: 4})
			if m.Mask != 0 {
				emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: m.Mask})
			}
			var held []int
			for i, v := range m.In {
				if i < len(m.In)-1 {
					held = append(held, len(jumps))
					jumpIf(v, true, 0)
				} else {
					fail = append(fail, len(jumps))
					jumpIf(v, false, 0)
				}
			}
			for _, j := range held {
				jumps[j].target = len(prog)
			}
		}
		if r.ArgNonZero == -1 {
			jumpTo(labelTrap)
		} else {
			emit(bpf.LoadAbsolute{Off: argLow(r.ArgNonZero), Size: 4})
			jumpIf(0, false, labelTrap)
			emit(bpf.LoadAbsolute{Off: argHigh(r.ArgNonZero), Size: 4})
			jumpIf(0, false, labelTrap)
		}
		if r.ArgNonZero != -1 || len(fail) > 0 {
			// The rule does not hold: reload the number for the rules that follow.
			for _, j := range fail {
				jumps[j].target = len(prog)
			}
			emit(bpf.LoadAbsolute{Off: offNr, Size: 4})
		}
		jumps[otherNr].target = len(prog)
	}
	allow := emit(bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW})
	trap := emit(bpf.LoadAbsolute{Off: argLow(5), Size: 4})
	notify := len(prog) + 4
	jumpIf(uint32(cookie), false, notify)
	emit(bpf.LoadAbsolute{Off: argHigh(5), Size: 4})
	jumpIf(uint32(cookie>>32), false, notify)
	emit(bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW})
	emit(bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF})

	for _, j := range jumps {
		target := j.target
		switch target {
		case labelAllow:
			target = allow
		case labelTrap:
			target = trap
		}
		skip := target - j.at - 1
		if skip < 0 || (j.cond && skip > 255) {
			return nil, fmt.Errorf("seccomp filter too long (%d rules)", len(rules))
		}
		if !j.cond {
			prog[j.at] = bpf.Jump{Skip: uint32(skip)}
			continue
		}
		in := prog[j.at].(bpf.JumpIf)
		if j.ifTrue {
			in.SkipTrue = uint8(skip)
		} else {
			in.SkipFalse = uint8(skip)
		}
		prog[j.at] = in
	}
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp filter too long (%d rules)", len(rules))
	}
	return bpf.Assemble(prog)
}

// sockFilters converts an assembled program for unix.SockFprog.
func sockFilters(raw []bpf.RawInstruction) []unix.SockFilter {
	out := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		out[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return out
}
