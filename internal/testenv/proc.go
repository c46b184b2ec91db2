package testenv

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Process is a snapshot of one process read from /proc.
type Process struct {
	PID     int
	PPID    int
	State   byte   // as in /proc/<pid>/stat: 'R', 'S', 'Z', ...
	Cmdline string // arguments joined by spaces
	Exe     string // target of /proc/<pid>/exe, without " (deleted)"; empty if unreadable
}

// Processes returns a snapshot of all processes. Processes that exit while it reads are left out.
func Processes() ([]Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var ps []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProcess(pid)
		if ok {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

func readProcess(pid int) (Process, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Process{}, false
	}
	// The command name is in parentheses and may hold spaces; the fields after the last ')' are
	// state, ppid, ...
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Process{}, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return Process{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	p := Process{PID: pid, PPID: ppid, State: fields[0][0]}
	if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		p.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		p.Exe = strings.TrimSuffix(exe, " (deleted)")
	}
	return p, true
}

// Descendants returns the live processes below pid (children, their children, ...).
func Descendants(pid int) ([]Process, error) {
	ps, err := Processes()
	if err != nil {
		return nil, err
	}
	children := make(map[int][]Process)
	for _, p := range ps {
		children[p.PPID] = append(children[p.PPID], p)
	}
	var out []Process
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c.PID)
		}
	}
	return out, nil
}

// ProcessesOf returns the live (not zombie) processes running the executable at path.
func ProcessesOf(path string) ([]Process, error) {
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	ps, err := Processes()
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, p := range ps {
		if p.Exe == path && p.State != 'Z' {
			out = append(out, p)
		}
	}
	return out, nil
}

// Alive reports whether pid exists and is not a zombie, and, when cmdline is not empty, still
// runs that command line (guarding against pid reuse).
func Alive(pid int, cmdline string) bool {
	p, ok := readProcess(pid)
	if !ok || p.State == 'Z' {
		return false
	}
	return cmdline == "" || p.Cmdline == cmdline
}

// listening reports whether a socket bound to addr exists in the network namespace of pid,
// read from /proc/<pid>/net/{tcp,udp} (IPv4) or {tcp6,udp6} (IPv6). proto is "tcp" or "udp".
func listening(pid int, proto string, addr netip.AddrPort) bool {
	file := proto
	if addr.Addr().Is6() {
		file += "6"
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
	if err != nil {
		return false
	}
	// The kernel prints the address as host-order u32s (one for IPv4, four for IPv6): each
	// group of four bytes reversed on little-endian machines (amd64, arm64).
	ip := addr.Addr().AsSlice()
	var want strings.Builder
	for i := 0; i < len(ip); i += 4 {
		fmt.Fprintf(&want, "%02X%02X%02X%02X", ip[i+3], ip[i+2], ip[i+1], ip[i])
	}
	fmt.Fprintf(&want, ":%04X", addr.Port())
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want.String() && (proto == "udp" || f[3] == "0A") {
			return true
		}
	}
	return false
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
