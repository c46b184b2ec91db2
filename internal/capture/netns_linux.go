package capture

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// runIn runs fn in the namespace that opt names (see Options.InNetns and Options.NetnsFD).
func runIn(opt Options, fn func() error) error {
	switch {
	case opt.InNetns != nil:
		return opt.InNetns(fn)
	case opt.NetnsFD >= 0:
		return inNetns(opt.NetnsFD, fn)
	}
	return fn()
}

// inNetns runs fn on an OS thread that has entered the network namespace netnsFD, in a
// goroutine of its own, and waits for it. The thread goes back to its namespace afterwards; if it
// cannot, it stays locked to the goroutine and the Go runtime ends it with the goroutine, so no
// other goroutine ever runs there.
func inNetns(netnsFD int, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(netnsFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("return from network namespace: %w", err))
			return // still locked: the thread ends with the goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
