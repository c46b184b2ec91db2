package intercept

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Which processes Wait ends.
//
// By the time Wait runs, the program has exited and its children have been re-parented to this
// process (a child subreaper), so the program's pid no longer links them. A descendant is
// therefore: a process whose parent chain (through live processes) reaches an orphan of the
// program, where an orphan of the program is a child of this process that
//   - was started no earlier than the program (start time, /proc/PID/stat field 22),
//   - carries the program's seccomp filter: at least as many filters (Seccomp_filters) as the
//     program had, which is one more than the thread that forked it; this process's other
//     children (its agent, helpers) are forked from ordinary threads and have fewer,
//   - is not itself the program of another live Supervisor,
//   - and, only while several Supervisors are live in this process, is still in the program's
//     process group. (Then an orphan that left the group, e.g. with setsid, is not ended.)

// programs holds the pids of the programs of all live Supervisors of this process.
var programs = &programSet{pids: map[int]bool{}}

type programSet struct {
	mu   sync.Mutex
	pids map[int]bool
}

func (p *programSet) add(pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pids[pid] = true
}

func (p *programSet) remove(pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pids, pid)
}

func (p *programSet) has(pid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pids[pid]
}

func (p *programSet) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pids)
}

// procStat holds the fields of /proc/PID/stat this package uses.
type procStat struct {
	pid, ppid, pgrp int
	state           byte
	start           uint64
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, string(data))
}

// parseStat parses /proc/PID/stat; the command name (field 2) may contain spaces and ')'.
func parseStat(pid int, data string) (procStat, error) {
	i := strings.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(data[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	st := procStat{pid: pid, state: f[0][0]}
	var errs [3]error
	st.ppid, errs[0] = strconv.Atoi(f[1])
	st.pgrp, errs[1] = strconv.Atoi(f[2])
	st.start, errs[2] = strconv.ParseUint(f[19], 10, 64)
	for _, err := range errs {
		if err != nil {
			return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		}
	}
	return st, nil
}

// scanProcs reads the stat of every process.
func scanProcs() map[int]procStat {
	procs := map[int]procStat{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return procs
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			procs[pid] = st
		}
	}
	return procs
}

// isOrphan reports whether p, a child of this process, is an orphaned descendant of the program.
func (s *Supervisor) isOrphan(p procStat, ambiguous bool) bool {
	if p.start < s.start || programs.has(p.pid) || (ambiguous && p.pgrp != s.pid) {
		return false
	}
	st, err := readStatus(p.pid)
	return err == nil && st.filters >= s.filters
}

// descendants returns the program's remaining descendants, zombies included.
func (s *Supervisor) descendants(procs map[int]procStat, self int) []procStat {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	ambiguous := programs.count() > 1
	var out []procStat
	for _, pid := range children[self] {
		if s.isOrphan(procs[pid], ambiguous) {
			out = append(out, procs[pid])
		}
	}
	for i := 0; i < len(out); i++ {
		for _, pid := range children[out[i].pid] {
			out = append(out, procs[pid])
		}
	}
	return out
}

const (
	termGrace = 2 * time.Second // between SIGTERM and SIGKILL
	killGrace = 3 * time.Second // after SIGKILL, before giving up on reaping
)

// endDescendants sends SIGTERM and SIGCONT to the program's remaining descendants, SIGKILL to
// those still running termGrace later, and reaps those that are children of this process. It
// signals through pidfds, checked against the start time, so that a reused pid is never hit.
func (s *Supervisor) endDescendants() {
	type target struct {
		pidfd          int
		start          uint64
		termed, killed bool
	}
	targets := map[int]*target{}
	defer func() {
		for _, t := range targets {
			unix.Close(t.pidfd)
		}
	}()
	self := os.Getpid()
	killAt := time.Now().Add(termGrace)
	giveUpAt := killAt.Add(killGrace)
	for {
		desc := s.descendants(scanProcs(), self)
		if len(desc) == 0 {
			return
		}
		kill := time.Now().After(killAt)
		for _, p := range desc {
			if p.state == 'Z' || p.state == 'X' {
				if p.ppid == self {
					var ws unix.WaitStatus
					_, _ = unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
				}
				continue
			}
			t := targets[p.pid]
			if t != nil && t.start != p.start {
				unix.Close(t.pidfd) // the pid was reused
				delete(targets, p.pid)
				t = nil
			}
			if t == nil {
				fd, err := unix.PidfdOpen(p.pid, 0)
				if err != nil {
					continue // gone already
				}
				// The pidfd pins the process: check it is still the one scanned.
				if st, err := readStat(p.pid); err != nil || st.start != p.start {
					unix.Close(fd)
					continue
				}
				t = &target{pidfd: fd, start: p.start}
				targets[p.pid] = t
			}
			if !t.termed {
				t.termed = true
				s.log.Debug("ending descendant", "pid", p.pid)
				_ = unix.PidfdSendSignal(t.pidfd, unix.SIGTERM, nil, 0)
				_ = unix.PidfdSendSignal(t.pidfd, unix.SIGCONT, nil, 0)
			}
			if kill && !t.killed {
				t.killed = true
				s.log.Debug("killing descendant", "pid", p.pid)
				_ = unix.PidfdSendSignal(t.pidfd, unix.SIGKILL, nil, 0)
			}
		}
		if time.Now().After(giveUpAt) {
			s.log.Warn("descendants of the program still around after SIGKILL", "count", len(desc))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
