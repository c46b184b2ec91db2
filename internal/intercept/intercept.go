package intercept

import (
	"errors"
	"log/slog"
	"os"
	"syscall"
)

// trampolineEnv is the environment variable that turns the own executable into the trampoline.
// It is the trampoline's only environment variable; the program's environment travels separately.
const trampolineEnv = "DOPPEL_TRAMPOLINE"

// ErrNotSupported is wrapped by the errors of everything this package cannot do on the current
// platform or kernel.
var ErrNotSupported = errors.New("not supported on this system")

// Rule selects a system call to trap: every condition it lists must hold.
type Rule struct {
	Nr         int        // syscall number (unix.SYS_*)
	ArgNonZero int        // -1: no condition; 0..5: notify only when that argument is non-zero
	Match      []ArgMatch // further conditions on arguments
}

// ArgMatch holds when the low 32 bits of argument Arg, masked with Mask (0: no mask), equal one
// of In: for example socket's family in {AF_INET, AF_INET6}, or its type & 0xf == SOCK_STREAM.
type ArgMatch struct {
	Arg  int
	Mask uint32
	In   []uint32
}

// Handler handles one trapped system call. It runs on the notification goroutine, which serves
// every trapped call of the whole process tree: it must answer quickly (Continue, Return, Errno)
// or hand the Request to a goroutine of its own and answer from there. Every Request must be
// answered exactly once, or the calling thread stays blocked. A trapped call may be re-issued
// as a new Request after a signal (SA_RESTART), so handlers must be idempotent. A handler that
// panics takes the whole process down.
type Handler func(*Request)

// Config describes the program to run and the calls to trap.
type Config struct {
	Path                  string   // absolute path of the program (already looked up by the caller)
	Argv                  []string // argv including argv[0]
	Env                   []string // the program's full environment
	Dir                   string   // working directory; "" keeps the caller's
	Stdin, Stdout, Stderr *os.File // nil: /dev/null
	// Credential, if not nil, is the user the program runs as (setgroups, setgid, setuid).
	Credential *syscall.Credential
	// Foreground puts the program's process group in the foreground of the terminal on Stdin,
	// and gives the terminal back to the caller's process group in Wait. The program gets its
	// own process group either way.
	Foreground bool
	// NetNS, if not nil, is a network namespace (an open /proc/PID/ns/net) the program starts
	// in, instead of the caller's. Entering it needs CAP_SYS_ADMIN.
	NetNS    *os.File
	Rules    []Rule
	Handlers map[int]Handler // by syscall number; a trapped call without handler is continued; not modified after Start
	Logger   *slog.Logger    // nil: discard
}

// Feature is one kernel feature the supervisor uses, as Probe found it.
type Feature struct {
	Name     string // e.g. "SECCOMP_RET_USER_NOTIF"
	Kernel   string // the Linux version that brought it
	Have     bool
	Required bool   // Start refuses to run without it
	Detail   string // how it was found out, or the kernel release for the "kernel" entry
}

// UnsupportedFeatureError reports a required kernel feature that is missing.
type UnsupportedFeatureError struct {
	Name      string // the feature
	MinKernel string // the Linux version that brought it
	Have      string // the running kernel's release
}

func (e *UnsupportedFeatureError) Error() string {
	return "doppel exec needs " + e.Name + " (Linux " + e.MinKernel + " or newer); this kernel is " + e.Have
}

// Is makes errors.Is(err, ErrNotSupported) true for a missing feature.
func (e *UnsupportedFeatureError) Is(target error) bool { return target == ErrNotSupported }
