package intercept

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Supervisor is a running program under supervision.
type Supervisor struct {
	cfg      Config
	log      *slog.Logger
	proc     *os.Process
	pid      int
	start    uint64 // the program's start time (/proc/PID/stat field 22)
	filters  int    // Seccomp_filters of the program: its descendants have at least as many
	sizes    seccompNotifSizes
	handlers map[int]Handler

	pidfds pidfdCache // of the program's threads, for GetRawFD

	listenerMu sync.RWMutex // write-held while closing the listener
	listener   int          // -1 once closed

	stopFD   int           // eventfd that stops the notification loop
	loopDone chan struct{} // closed when the notification loop has returned

	ttyPgrp int // foreground process group of Stdin before Start, if Foreground

	waitOnce sync.Once
	state    *os.ProcessState
	waitErr  error
}

// Pid is the program's process id.
func (s *Supervisor) Pid() int { return s.pid }

// Signal sends sig to the program (not to its process group).
func (s *Supervisor) Signal(sig os.Signal) error { return s.proc.Signal(sig) }

var subreaperOnce = sync.OnceValue(func() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
})

// Start launches the program under supervision and returns once it has been exec'd with the
// filter installed (Seccomp: 2 in its /proc/PID/status). ctx bounds the launch only; once Start
// has returned, cancelling it has no effect (use Signal). An exec failure comes back as an
// *os.PathError with Op "exec" wrapping the errno (ENOENT, EACCES, ...); a bad Dir as one with
// Op "chdir".
func Start(ctx context.Context, cfg Config) (*Supervisor, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if len(cfg.Argv) == 0 {
		return nil, errors.New("intercept: empty argv")
	}
	if cfg.Foreground && cfg.Stdin == nil {
		return nil, errors.New("intercept: Foreground needs Stdin (the terminal)")
	}
	if _, err := buildFilter(cfg.Rules, 0); err != nil {
		return nil, err
	}
	if err := subreaperOnce(); err != nil {
		return nil, err
	}
	sizes, err := getNotifSizes()
	if err != nil {
		return nil, err
	}
	s := &Supervisor{
		cfg:      cfg,
		log:      cfg.Logger,
		sizes:    sizes,
		handlers: cfg.Handlers,
		listener: -1,
		stopFD:   -1,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.launch(ctx); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) || errors.Is(err, ctx.Err()) {
			return nil, err // "exec /bin/x: no such file or directory" says it all
		}
		return nil, fmt.Errorf("start %s: %w", cfg.Path, err)
	}
	return s, nil
}

// launch starts the trampoline and runs the handshake with it.
func (s *Supervisor) launch(ctx context.Context) (err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	sock := fds[0]
	defer unix.Close(sock)
	childSock := os.NewFile(uintptr(fds[1]), "trampoline-socket")
	defer childSock.Close()

	configFile, err := s.writeConfig()
	if err != nil {
		return err
	}
	defer configFile.Close()

	var stdio []*os.File
	for _, f := range []*os.File{s.cfg.Stdin, s.cfg.Stdout, s.cfg.Stderr} {
		if f == nil {
			null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer null.Close()
			f = null
		}
		stdio = append(stdio, f)
	}
	if s.cfg.Foreground {
		pgrp, err := unix.IoctlGetInt(int(s.cfg.Stdin.Fd()), unix.TIOCGPGRP)
		if err != nil {
			return fmt.Errorf("foreground process group of stdin: %w", err)
		}
		s.ttyPgrp = pgrp
	}
	attr := &os.ProcAttr{
		Env:   []string{trampolineEnv + "=1"},
		Files: append(stdio, childSock, configFile),
		Sys: &syscall.SysProcAttr{
			Credential: s.cfg.Credential,
			Setpgid:    true,
			Foreground: s.cfg.Foreground,
			Ctty:       0, // the child's stdin
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	// /proc/self/exe rather than os.Executable(): it needs no search permission on the
	// directories above the executable, which matters when Credential switches users.
	proc, err := forkExec("/proc/self/exe", []string{"doppel-trampoline"}, attr, s.cfg.NetNS)
	if err != nil {
		return fmt.Errorf("start trampoline: %w", err)
	}
	s.proc, s.pid = proc, proc.Pid
	programs.add(s.pid)
	childSock.Close()
	configFile.Close()

	stopKill := context.AfterFunc(ctx, func() { _ = proc.Kill() })
	defer stopKill()
	// fail ends the trampoline or program and returns err (or the context's error).
	fail := func(err error) error {
		_ = proc.Kill()
		_, _ = proc.Wait()
		programs.remove(s.pid)
		if s.loopDone != nil {
			s.stopLoop()
		}
		s.closeListener()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}

	// 1. The listener, or an error.
	kind, body, listener, err := recvMsg(sock)
	switch {
	case err != nil:
		return fail(fmt.Errorf("read from trampoline: %w", err))
	case kind == 0:
		return fail(errors.New("trampoline exited before installing the filter"))
	case kind == msgError:
		return fail(decodeTrampolineError(body))
	case kind != msgListener || listener < 0:
		return fail(fmt.Errorf("unexpected message %q from trampoline", kind))
	}
	s.listener = listener
	// Linux 6.6: wake the supervisor and the program on the CPU of the waker, which spares a
	// cross-CPU wake-up on each notification, reply and ADDFD. Older kernels do without.
	// The flags are the ioctl's argument itself, not a pointer to them.
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener), seccompIoctlNotifSetFlags, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP); errno != 0 {
		s.log.Debug("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP unavailable", "err", errno)
	}
	// The trampoline waits for the go-ahead: read what identifies its descendants now.
	stat, err := readStat(s.pid)
	if err != nil {
		return fail(fmt.Errorf("read trampoline state: %w", err))
	}
	s.start = stat.start
	s.filters = forkerFilters + 1
	if err := s.startLoop(); err != nil {
		return fail(err)
	}

	// 2. Go ahead; then EOF (exec'd: the socket was close-on-exec) or an error.
	if _, err := unix.Write(sock, []byte{msgGo}); err != nil {
		return fail(fmt.Errorf("write to trampoline: %w", err))
	}
	kind, body, _, err = recvMsg(sock)
	switch {
	case err != nil:
		return fail(fmt.Errorf("read from trampoline: %w", err))
	case kind == msgError:
		return fail(decodeTrampolineError(body))
	case kind != 0:
		return fail(fmt.Errorf("unexpected message %q from trampoline", kind))
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}

	// 3. Check that the program runs under the filter.
	st, err := readStatus(s.pid)
	if err != nil {
		// Gone already (a very short program): /proc no longer tells; trust the handshake.
		s.log.Debug("cannot verify seccomp status of program", "pid", s.pid, "err", err)
		return nil
	}
	if st.seccomp != 2 {
		return fail(fmt.Errorf("program %d runs with Seccomp: %d, want 2 (filter not installed)", s.pid, st.seccomp))
	}
	if st.filters >= 0 && st.filters != s.filters {
		s.log.Debug("unexpected filter count", "pid", s.pid, "have", st.filters, "want", s.filters)
		s.filters = min(s.filters, st.filters)
	}
	return nil
}

func decodeTrampolineError(body []byte) error {
	var e trampolineError
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("bad error message from trampoline: %q", body)
	}
	return e.err()
}

// writeConfig puts the trampoline's configuration in a memfd, positioned at its start.
func (s *Supervisor) writeConfig() (*os.File, error) {
	body, err := json.Marshal(trampolineConfig{
		Path:      s.cfg.Path,
		Argv:      s.cfg.Argv,
		Env:       s.cfg.Env,
		Dir:       s.cfg.Dir,
		Rules:     s.cfg.Rules,
		ParentPid: os.Getpid(),
	})
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("doppel-trampoline-config", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "trampoline-config")
	if _, err := f.Write(body); err != nil {
		f.Close()
		return nil, fmt.Errorf("write trampoline config: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write trampoline config: %w", err)
	}
	return f, nil
}

// recvMsg reads one message from the trampoline: kind 0 means EOF; fd is -1 if none came.
func recvMsg(sock int) (kind byte, body []byte, fd int, err error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		var n, oobn int
		n, oobn, _, _, err = unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, nil, -1, err
		}
		fd = -1
		if oobn > 0 {
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err == nil && len(msgs) > 0 {
				if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) > 0 {
					fd = fds[0]
					for _, extra := range fds[1:] {
						unix.Close(extra)
					}
				}
			}
		}
		if n == 0 {
			return 0, nil, fd, nil
		}
		return buf[0], buf[1:n], fd, nil
	}
}

// Wait waits for the program to exit, ends the descendants still running (SIGTERM, 2 s,
// SIGKILL), stops the notification goroutine, closes the listener, and returns the program's
// state. Later calls return the same.
func (s *Supervisor) Wait() (*os.ProcessState, error) {
	s.waitOnce.Do(func() {
		s.state, s.waitErr = s.proc.Wait()
		if s.cfg.Foreground {
			s.restoreForeground()
		}
		// Descendants blocked in a trapped call still need answers to act on SIGTERM, so the
		// loop runs until they are gone.
		s.endDescendants()
		programs.remove(s.pid)
		s.stopLoop()
		s.closeListener()
	})
	return s.state, s.waitErr
}

// restoreForeground gives the terminal back to the process group that had it before Start.
// tcsetpgrp from a background group raises SIGTTOU unless it is blocked, so it is blocked on
// this thread for the call, without touching the process-wide disposition.
func (s *Supervisor) restoreForeground() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set, old unix.Sigset_t
	sigaddset(&set, unix.SIGTTOU)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, &old); err != nil {
		s.log.Debug("block SIGTTOU", "err", err)
		return
	}
	defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	if err := unix.IoctlSetPointerInt(int(s.cfg.Stdin.Fd()), unix.TIOCSPGRP, s.ttyPgrp); err != nil {
		s.log.Debug("restore terminal foreground process group", "pgrp", s.ttyPgrp, "err", err)
	}
}

func sigaddset(set *unix.Sigset_t, sig unix.Signal) {
	n := uint(sig - 1)
	set.Val[n/64] |= 1 << (n % 64)
}

// startLoop starts the notification goroutine.
func (s *Supervisor) startLoop() error {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	s.stopFD = fd
	s.loopDone = make(chan struct{})
	go s.loop()
	return nil
}

// stopLoop stops the notification goroutine and waits for it.
func (s *Supervisor) stopLoop() {
	var one [8]byte
	*(*uint64)(unsafe.Pointer(&one[0])) = 1
	_, _ = unix.Write(s.stopFD, one[:])
	<-s.loopDone
	unix.Close(s.stopFD)
	s.stopFD = -1
	s.loopDone = nil
}

// seccompIoctlNotifSetFlags is SECCOMP_IOCTL_NOTIF_SET_FLAGS, _IOW('!', 4, __u64) (Linux 6.6).
const seccompIoctlNotifSetFlags = 0x40082104

// closeListener closes the listener once no Request method is using it.
func (s *Supervisor) closeListener() {
	s.listenerMu.Lock()
	defer s.listenerMu.Unlock()
	if s.listener >= 0 {
		unix.Close(s.listener)
		s.listener = -1
	}
	s.pidfds.closeAll()
}

// loop receives notifications and dispatches them, until stopped or until no process uses the
// filter any more (POLLHUP). It runs on a locked thread with asynchronous signals blocked: a
// signal (Go's preemption signal) hitting the supervisor during ADDFD with the SEND flag was
// measured to hand the target fd 0, and Request.ReturnFD uses SEND.
// Synchronous fault signals stay unblocked so that a bug in a handler panics normally.
func (s *Supervisor) loop() {
	defer close(s.loopDone)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP, unix.SIGSYS} {
		n := uint(sig - 1)
		all.Val[n/64] &^= 1 << (n % 64)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, &old); err != nil {
		s.log.Warn("block signals on the notification thread", "err", err)
	}
	// Restore the mask so that the thread can go back to the pool (letting it exit instead
	// would kill children whose parent-death signal is tied to it).
	defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)

	buf := make([]uint64, (max(int(s.sizes.Notif), int(unsafe.Sizeof(seccompNotif{})))+7)/8)
	pfd := []unix.PollFd{
		{Fd: int32(s.listener), Events: unix.POLLIN},
		{Fd: int32(s.stopFD), Events: unix.POLLIN},
	}
	for {
		_, err := unix.Poll(pfd, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			s.log.Warn("poll seccomp listener", "err", err)
			return
		}
		if pfd[1].Revents != 0 {
			return
		}
		if pfd[0].Revents&unix.POLLIN != 0 {
			clear(buf)
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.listener), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&buf[0])))
			switch errno {
			case 0:
				n := (*seccompNotif)(unsafe.Pointer(&buf[0]))
				s.dispatch(n)
				continue
			case unix.ENOENT, unix.EINTR:
				// The caller died or was interrupted before we got it.
				continue
			default:
				s.log.Warn("receive seccomp notification", "err", errno)
				return
			}
		}
		if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return // no process uses the filter any more
		}
	}
}

func (s *Supervisor) dispatch(n *seccompNotif) {
	r := &Request{s: s, id: n.ID, pid: int(n.Pid), data: n.Data, reply: s.reply}
	h := s.handlers[int(n.Data.Nr)]
	if h == nil {
		r.Continue()
		return
	}
	h(r)
}

// procStatus holds the fields of /proc/PID/status this package uses.
type procStatus struct {
	seccomp, filters int
}

func readStatus(pid int) (procStatus, error) {
	return readStatusFile("/proc/" + strconv.Itoa(pid) + "/status")
}

func readStatusFile(path string) (procStatus, error) {
	st := procStatus{seccomp: -1, filters: -1}
	data, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	for line := range strings.Lines(string(data)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch key {
		case "Seccomp":
			st.seccomp, _ = strconv.Atoi(strings.TrimSpace(val))
		case "Seccomp_filters":
			st.filters, _ = strconv.Atoi(strings.TrimSpace(val))
		}
	}
	return st, nil
}
