package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/incoming"
	"doppel.dev/doppel/internal/wire"
)

// target holds the handles on the target process: its pidfd, network and UTS namespaces and
// root directory.
type target struct {
	pid     int
	pidFile *os.File // a non-blocking pidfd: readable once the target has exited
	netns   *namespace
	utsns   *namespace
	rootfd  int
}

func openTarget(pid int) (*target, error) {
	pidfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("target pid %d: no such process", pid)
		}
		return nil, fmt.Errorf("open target pid %d: %w", pid, err)
	}
	t := &target{pid: pid, pidFile: os.NewFile(uintptr(pidfd), "pidfd"), rootfd: -1}
	if t.netns, err = openNamespace(pid, "net", unix.CLONE_NEWNET); err != nil {
		t.Close()
		return nil, err
	}
	if t.utsns, err = openNamespace(pid, "uts", unix.CLONE_NEWUTS); err != nil {
		t.Close()
		return nil, err
	}
	if t.rootfd, err = unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		t.Close()
		return nil, fmt.Errorf("open root of target pid %d: %w", pid, err)
	}
	return t, nil
}

func (t *target) Close() {
	t.pidFile.Close()
	t.netns.Close()
	t.utsns.Close()
	if t.rootfd >= 0 {
		unix.Close(t.rootfd)
	}
}

// waitExit returns nil when the target exits, or ctx's error when ctx ends first.
func (t *target) waitExit(ctx context.Context) error {
	rc, err := t.pidFile.SyscallConn()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { t.pidFile.SetReadDeadline(time.Now()) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool {
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// namespace is a target's namespace of one type, entered by a locked thread for the duration of
// one piece of work. same is true when the agent already lives in it.
type namespace struct {
	kind         int
	target, self int
	same         bool
}

func openNamespace(pid int, name string, kind int) (*namespace, error) {
	path := fmt.Sprintf("/proc/%d/ns/%s", pid, name)
	tfd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s namespace of target pid %d: %w", name, pid, err)
	}
	sfd, err := unix.Open(fmt.Sprintf("/proc/thread-self/ns/%s", name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(tfd)
		return nil, fmt.Errorf("open own %s namespace: %w", name, err)
	}
	var ts, ss unix.Stat_t
	unix.Fstat(tfd, &ts)
	unix.Fstat(sfd, &ss)
	return &namespace{kind: kind, target: tfd, self: sfd, same: ts.Ino == ss.Ino && ts.Dev == ss.Dev}, nil
}

func (n *namespace) Close() {
	if n == nil {
		return
	}
	unix.Close(n.target)
	unix.Close(n.self)
}

// Do runs fn on an OS thread that is inside the namespace. Sockets keep the network namespace
// they were created in, so fn may hand them to other goroutines.
func (n *namespace) Do(fn func() error) error {
	if n.same {
		return fn()
	}
	runtime.LockOSThread()
	if err := unix.Setns(n.target, n.kind); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter target namespace: %w", err)
	}
	err := fn()
	if unix.Setns(n.self, n.kind) != nil {
		// The thread cannot go back: leave it locked so it ends with this goroutine.
		return err
	}
	runtime.UnlockOSThread()
	return err
}

const dialTimeout = 10 * time.Second

func (a *agent) dialTCP(ctx context.Context, st net.Conn, addr netip.AddrPort) {
	var c net.Conn
	err := a.target.netns.Do(func() error {
		var err error
		d := net.Dialer{Timeout: dialTimeout}
		c, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		a.log.Debug("dial failed", "addr", addr, "err", err)
		reply(st, err)
		return
	}
	defer c.Close()
	if reply(st, nil) != nil {
		return
	}
	wire.Splice(st, c)
}

// udpIdle ends a UDP flow that carried nothing either way for this long.
const udpIdle = 2 * time.Minute

func (a *agent) udpFlow(ctx context.Context, st net.Conn) {
	var pc *net.UDPConn
	err := a.target.netns.Do(func() error {
		var err error
		pc, err = net.ListenUDP("udp", nil)
		if err != nil {
			pc, err = net.ListenUDP("udp4", nil)
		}
		return err
	})
	if err != nil {
		reply(st, err)
		return
	}
	defer pc.Close()
	if reply(st, nil) != nil {
		return
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			pc.SetReadDeadline(time.Now().Add(udpIdle))
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				st.Close()
				return
			}
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			if wire.WriteDatagram(st, wire.Datagram{Addr: from, Payload: buf[:n]}) != nil {
				pc.Close()
				return
			}
		}
	}()
	buf := make([]byte, 65535+32)
	for {
		d, err := wire.ReadDatagram(st, buf)
		if err != nil {
			return
		}
		if _, err := pc.WriteToUDPAddrPort(d.Payload, d.Addr); err != nil {
			a.log.Debug("udp send failed", "to", d.Addr, "err", err)
		}
	}
}

// readFile serves a file from inside the target's root: "..", absolute symlinks and symlink
// chains resolve inside that root (openat2 RESOLVE_IN_ROOT) and never escape it.
func (a *agent) readFile(st net.Conn, path string) {
	f, err := a.openInRoot(path)
	if err != nil {
		reply(st, err)
		return
	}
	defer f.Close()
	if reply(st, nil) != nil {
		return
	}
	io.Copy(st, f)
}

func (a *agent) openInRoot(path string) (*os.File, error) {
	fd, err := unix.Openat2(a.target.rootfd, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func (a *agent) info(st net.Conn) {
	info, err := a.readInfo()
	if err != nil {
		reply(st, err)
		return
	}
	if reply(st, nil) != nil {
		return
	}
	json.NewEncoder(st).Encode(info)
}

func (a *agent) readInfo() (wire.Info, error) {
	info := wire.Info{PID: a.target.pid}
	if a.opt.ContainerID != "" {
		env, err := bundleEnv("/proc", a.target.pid, a.opt.ContainerID)
		if err == nil {
			info.Env = env
		} else {
			a.log.Info("the container's bundle gives no environment; reading the process's", "err", err)
		}
	}
	if info.Env == nil {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(a.target.pid) + "/environ")
		if err != nil {
			return info, fmt.Errorf("read environment of target pid %d: %w", a.target.pid, err)
		}
		info.Env = []string{}
		for _, kv := range strings.Split(string(env), "\x00") {
			if strings.HasPrefix(kv, secretEnv+"=") {
				continue // the agent's own (a session without a target serves the agent's environment)
			}
			if strings.Contains(kv, "=") {
				info.Env = append(info.Env, kv)
			} else if kv != "" {
				// Not a variable: the process wrote over its environment (a process
				// title, as nginx does).
				info.EnvNote = fmt.Sprintf("the environment of target pid %d is incomplete: the process wrote over it (%q)", a.target.pid, truncateNote(kv))
			}
		}
	}
	if mi, err := os.ReadFile("/proc/" + strconv.Itoa(a.target.pid) + "/mountinfo"); err == nil {
		own, _ := os.ReadFile("/proc/self/mountinfo")
		info.Mounts = ownMounts(mi, own)
	}
	err := a.target.utsns.Do(func() error {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		info.Hostname = unix.ByteSliceToString(u.Nodename[:])
		return nil
	})
	return info, err
}

// secretEnv carries the session's secret to an agent in a pod; it is never part of the target's
// environment.
const secretEnv = "DOPPEL_AGENT_SECRET"

func truncateNote(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// errnoOf digs the errno out of a dial or file error.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return syscall.ETIMEDOUT
	}
	return syscall.EIO
}

// newIncoming returns the incoming engine for the target's network namespace.
func (t *target) newIncoming(log *slog.Logger) *incoming.Engine {
	fd := t.netns.target
	if t.netns.same {
		fd = -1 // the agent's own: entering it would take CAP_SYS_ADMIN for nothing
	}
	return incoming.New(incoming.Options{NetnsFD: fd, InNetns: t.netns.Do, Logger: log})
}

// mountPoints reads the mount points (the fifth field, with its octal escapes undone) of a
// mountinfo file.
func mountPoints(mountinfo []byte) []string {
	var out []string
	for line := range strings.Lines(string(mountinfo)) {
		if f := strings.Fields(line); len(f) >= 5 {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// ownMounts returns the mount points of the target's mountinfo that the agent's own mount
// namespace does not have as they are (same device, root and place): the target's volumes,
// not the file systems it shares with the machine.
func ownMounts(target, self []byte) []string {
	key := func(f []string) string { return f[2] + " " + f[3] + " " + f[4] }
	shared := make(map[string]bool)
	for line := range strings.Lines(string(self)) {
		if f := strings.Fields(line); len(f) >= 5 {
			shared[key(f)] = true
		}
	}
	var out []string
	for line := range strings.Lines(string(target)) {
		if f := strings.Fields(line); len(f) >= 5 && !shared[key(f)] {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// unescapeMount undoes mountinfo's \ooo escapes (of space, tab, newline and backslash).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
