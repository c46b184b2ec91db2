package intercept

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The trampoline's inherited descriptors.
const (
	trampolineSockFD   = 3 // SOCK_SEQPACKET to the supervisor
	trampolineConfigFD = 4 // memfd holding the trampolineConfig as JSON
)

// Messages on the trampoline socket. The trampoline sends msgListener (with the listener fd) or
// msgError; the supervisor answers msgGo; then the trampoline execs, which closes its end (EOF),
// or sends msgError if exec failed.
const (
	msgListener = 'L'
	msgError    = 'E'
	msgGo       = 'G'
)

// trampolineConfig is what the trampoline needs; it travels in a memfd, never in the environment.
type trampolineConfig struct {
	Path      string
	Argv      []string
	Env       []string
	Dir       string
	Rules     []Rule
	ParentPid int
}

// trampolineError is the body of a msgError.
type trampolineError struct {
	Op, Path string
	Errno    int    // 0: see Msg
	Msg      string `json:",omitempty"`
}

func (e *trampolineError) err() error {
	if e.Errno != 0 {
		return &os.PathError{Op: e.Op, Path: e.Path, Err: syscall.Errno(e.Errno)}
	}
	return errors.New(e.Op + " " + e.Path + ": " + e.Msg)
}

// MaybeRunTrampoline must be the first thing main (and TestMain of tests using Start) calls. If
// the process was started as the trampoline (DOPPEL_TRAMPOLINE=1 and the trampoline socket on
// fd 3), it runs the trampoline and never returns; otherwise it returns at once.
func MaybeRunTrampoline() {
	if os.Getenv(trampolineEnv) != "1" {
		return
	}
	if typ, err := unix.GetsockoptInt(trampolineSockFD, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_SEQPACKET {
		return // the variable leaked into an ordinary run
	}
	runTrampoline()
}

// runTrampoline installs the filter on its locked thread and execs the program on that thread.
// Once the filter is installed every system call of this thread may be trapped, and until the
// supervisor holds the listener nobody would answer; so the few calls it makes from then on go
// through cookieSyscall, which the filter always allows.
func runTrampoline() {
	runtime.LockOSThread() // never unlocked: exec replaces the process

	var cookieBuf [8]byte
	_, _ = rand.Read(cookieBuf[:])
	cookie := binary.LittleEndian.Uint64(cookieBuf[:]) | 1
	fail := func(op, path string, err error) {
		e := trampolineError{Op: op, Path: path}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			e.Errno = int(errno)
		} else {
			e.Msg = err.Error()
		}
		body, _ := json.Marshal(e)
		_ = cookieSend(cookie, append([]byte{msgError}, body...), -1)
		cookieExit(cookie, 127)
	}

	unix.CloseOnExec(trampolineSockFD)
	cfgFile := os.NewFile(trampolineConfigFD, "trampoline-config")
	raw, err := io.ReadAll(cfgFile)
	if err != nil {
		fail("read", "trampoline config", err)
	}
	cfgFile.Close()
	var cfg trampolineConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		fail("decode", "trampoline config", err)
	}
	if cfg.Dir != "" {
		if err := unix.Chdir(cfg.Dir); err != nil {
			fail("chdir", cfg.Dir, err)
		}
	}
	// The parent-death signal is per thread and exec does not carry the main thread's over to
	// the exec'ing thread, so set it on this one; then close the race with the parent's death.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fail("prctl", "PR_SET_PDEATHSIG", err)
	}
	if os.Getppid() != cfg.ParentPid {
		cookieExit(cookie, 127)
	}
	filter, err := buildFilter(cfg.Rules, cookie)
	if err != nil {
		fail("build", "seccomp filter", err)
	}
	insns := sockFilters(filter)
	prog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("prctl", "PR_SET_NO_NEW_PRIVS", err)
	}
	listener, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
		uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(insns)
	if errno != 0 {
		fail("seccomp", "SECCOMP_SET_MODE_FILTER", errno)
	}

	// From here on: cookie calls only.
	if err := cookieSend(cookie, []byte{msgListener}, int(listener)); err != nil {
		cookieExit(cookie, 127)
	}
	_, _ = cookieSyscall(cookie, unix.SYS_CLOSE, listener, nil, 0)
	var buf [1]byte
	if n, err := cookieSyscall(cookie, unix.SYS_READ, trampolineSockFD, unsafe.Pointer(&buf[0]), 1); err != nil || n != 1 || buf[0] != msgGo {
		cookieExit(cookie, 127)
	}
	// syscall.Exec also restores the RLIMIT_NOFILE soft limit the Go runtime raised. If exec
	// succeeds, the socket (close-on-exec) closes and the supervisor reads EOF.
	err = syscall.Exec(cfg.Path, cfg.Argv, cfg.Env)
	fail("exec", cfg.Path, err)
}

// cookieSyscall makes a system call of up to three arguments with the cookie as sixth argument.
// The second argument is a pointer (or nil) so that it is converted in the call expression.
func cookieSyscall(cookie uint64, nr, a1 uintptr, a2 unsafe.Pointer, a3 uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall6(nr, a1, uintptr(a2), a3, 0, 0, uintptr(cookie))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// cookieSend sends one message on the trampoline socket, with fd attached if fd >= 0.
func cookieSend(cookie uint64, data []byte, fd int) error {
	iov := unix.Iovec{Base: &data[0]}
	iov.SetLen(len(data))
	msg := unix.Msghdr{Iov: &iov, Iovlen: 1}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	_, err := cookieSyscall(cookie, unix.SYS_SENDMSG, trampolineSockFD, unsafe.Pointer(&msg), 0)
	runtime.KeepAlive(data)
	runtime.KeepAlive(oob)
	return err
}

// cookieExit ends the trampoline process.
func cookieExit(cookie uint64, code int) {
	for {
		_, _ = cookieSyscall(cookie, unix.SYS_EXIT_GROUP, uintptr(code), nil, 0)
	}
}

// The trampoline runs from this package's initialisation rather than from main: the doppel
// binary links client-go, whose packages take milliseconds to initialise (k8s.io/client-go/
// kubernetes/scheme alone 3 to 13 ms), and the trampoline, a fresh process at every launch,
// needs none of them. Go initialises a package after the packages it imports, and this one
// imports none of those, so they are not initialised yet (measured with GODEBUG=inittrace=1:
// a third of the binary's initialisation time comes before this package). main still calls
// MaybeRunTrampoline first, for binaries where the order differs.
func init() { MaybeRunTrampoline() }
