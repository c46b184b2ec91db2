//go:build !linux

package intercept

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// errOther is what everything returns on other systems.
var errOther = fmt.Errorf("syscall interception (seccomp user notification, Linux only) on %s: %w", runtime.GOOS, ErrNotSupported)

// MaybeRunTrampoline returns at once: there is no trampoline on this system.
func MaybeRunTrampoline() {}

// Supervisor is a running program under supervision; it cannot exist on this system.
type Supervisor struct{}

// Start fails with an error wrapping ErrNotSupported.
func Start(ctx context.Context, cfg Config) (*Supervisor, error) { return nil, errOther }

// Pid returns -1.
func (s *Supervisor) Pid() int { return -1 }

// Signal fails with an error wrapping ErrNotSupported.
func (s *Supervisor) Signal(sig os.Signal) error { return errOther }

// Wait fails with an error wrapping ErrNotSupported.
func (s *Supervisor) Wait() (*os.ProcessState, error) { return nil, errOther }

// Request is one trapped system call; it cannot exist on this system.
type Request struct{}

func (r *Request) Nr() int                                                     { return -1 }
func (r *Request) Arg(i int) uint64                                            { return 0 }
func (r *Request) Pid() int                                                    { return -1 }
func (r *Request) ReadMem(addr uint64, buf []byte) error                       { return errOther }
func (r *Request) WriteMem(addr uint64, data []byte) error                     { return errOther }
func (r *Request) ReadString(addr uint64, max int) (string, error)             { return "", errOther }
func (r *Request) ReadIov(iovAddr uint64, iovCnt int, max int) ([]byte, error) { return nil, errOther }
func (r *Request) WriteIov(iovAddr uint64, iovCnt int, data []byte) (int, error) {
	return 0, errOther
}
func (r *Request) GetFD(fd int) (*os.File, error)                     { return nil, errOther }
func (r *Request) FDInode(fd int) (uint64, error)                     { return 0, errOther }
func (r *Request) AddFD(f *os.File, cloexec bool) (int, error)        { return -1, errOther }
func (r *Request) AddFDAt(f *os.File, target int, cloexec bool) error { return errOther }
func (r *Request) GetRawFD(fd int) (int, error)                       { return -1, errOther }
func (r *Request) Valid() bool                                        { return false }
func (r *Request) Continue()                                          {}
func (r *Request) Return(val int64)                                   {}
func (r *Request) Errno(e syscall.Errno)                              {}

// Probe reports that the supervisor's one prerequisite, Linux, is missing.
func Probe() []Feature {
	return []Feature{{Name: "seccomp user notification", Kernel: "5.0", Required: true, Detail: "not Linux: " + runtime.GOOS}}
}

// Check fails with an error wrapping ErrNotSupported.
func Check() error { return errOther }
