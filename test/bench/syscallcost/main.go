// Command syscallcost measures what one system call costs, for the benchmark of doppel's
// interception (scripts/bench.sh). It connects a TCP socket to a listener of its own on
// 127.0.0.1 (doppel traps that connect and lets it through, loopback stays local), then calls
// getpeername(2) on it in a loop for a fixed time: doppel traps getpeername and lets it through
// too, so under doppel each call is one seccomp user notification and one CONTINUE. It does the
// same with fcntl(2) F_GETFL on the socket, which doppel does not trap, as the control, and with
// socket(2) of a TCP socket and its close: doppel answers a local target's socket with one of
// the target's network. It prints "<call> <calls> <ns/op>" lines.
//
// With -remote ADDR it first opens a TCP connection to ADDR and keeps it open: under doppel that
// connection is redirected, so the getpeername handler has a table to look the socket up in
// (the slower path it takes while a program has remote connections).
//
// It is built static (CGO_ENABLED=0) so that nothing but the measured calls is trapped in the loop.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	dur := flag.Duration("d", 2*time.Second, "how long to call each syscall")
	remote := flag.String("remote", "", "open a TCP connection to this address first and keep it open")
	flag.Parse()
	if err := run(*dur, *remote); err != nil {
		fmt.Fprintln(os.Stderr, "syscallcost:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, remote string) error {
	if remote != "" {
		rc, err := net.DialTimeout("tcp", remote, 10*time.Second)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", remote, err)
		}
		defer rc.Close()
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		var sa [128]byte
		for _, call := range []struct {
			name string
			fn   func() syscall.Errno
		}{
			{"getpeername", func() syscall.Errno {
				n := uint32(len(sa))
				_, _, e := syscall.Syscall(syscall.SYS_GETPEERNAME, fd, uintptr(unsafe.Pointer(&sa[0])), uintptr(unsafe.Pointer(&n)))
				return e
			}},
			{"fcntl", func() syscall.Errno {
				_, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
				return e
			}},
			{"socket", func() syscall.Errno {
				s, _, e := syscall.Syscall(syscall.SYS_SOCKET, syscall.AF_INET, syscall.SOCK_STREAM, 0)
				if e == 0 {
					syscall.Close(int(s))
				}
				return e
			}},
		} {
			n, per, err := measure(call.fn, dur)
			if err != nil {
				ctlErr = fmt.Errorf("%s: %w", call.name, err)
				return
			}
			fmt.Printf("%s %d %.1f\n", call.name, n, per)
		}
	})
	if err != nil {
		return err
	}
	return ctlErr
}

// measure makes the call fn in batches until dur has passed and returns the number of calls
// and the mean nanoseconds per call.
func measure(fn func() syscall.Errno, dur time.Duration) (int, float64, error) {
	call := func() error {
		if e := fn(); e != 0 {
			return e
		}
		return nil
	}
	for range 1000 { // warm-up
		if err := call(); err != nil {
			return 0, 0, err
		}
	}
	const batch = 500
	calls := 0
	start := time.Now()
	for time.Since(start) < dur {
		for range batch {
			if err := call(); err != nil {
				return 0, 0, err
			}
		}
		calls += batch
	}
	return calls, float64(time.Since(start).Nanoseconds()) / float64(calls), nil
}
