package intercept

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// runHelper runs the test binary as a test program (helperEnv=mode).
func runHelper(mode string, args []string) int {
	switch mode {
	case "iov":
		// readv from stdin into two buffers (trapped: the test fills them), then writev them.
		a, b := make([]byte, 3), make([]byte, 10)
		n, err := unix.Readv(0, [][]byte{a, b})
		if err != nil {
			fmt.Fprintln(os.Stderr, "readv:", err)
			return 1
		}
		all := append(a, b...)[:n]
		if _, err := unix.Writev(1, [][]byte{[]byte("got "), all, []byte("\n")}); err != nil {
			fmt.Fprintln(os.Stderr, "writev:", err)
			return 1
		}
		return 0
	case "getfd":
		// fsync (trapped) a file from a thread that is not the main thread.
		f, err := os.Open(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		done := make(chan error)
		go func() {
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				// Try again on another thread.
				go func() {
					runtime.LockOSThread()
					done <- unix.Fsync(int(f.Fd()))
				}()
				return
			}
			done <- unix.Fsync(int(f.Fd()))
		}()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "fsync:", err)
			return 1
		}
		return 0
	case "signals":
		// Many trapped calls while signals keep arriving.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGUSR1)
		for range 3000 {
			unix.Getppid()
		}
		fmt.Println("done")
		return 0
	case "foreground":
		// Stdin is a terminal whose session this process leads: run fgcheck in the foreground,
		// then check the terminal came back to this process group.
		s, err := Start(context.Background(), Config{
			Path: args[0], Argv: []string{"fgcheck"}, Env: []string{helperEnv + "=fgcheck"},
			Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Foreground: true,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "Start:", err)
			return 1
		}
		state, err := s.Wait()
		if err != nil || !state.Success() {
			fmt.Fprintln(os.Stderr, "program:", state, err)
			return 1
		}
		if pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err != nil || pgrp != unix.Getpgrp() {
			fmt.Fprintf(os.Stderr, "terminal foreground group %d (%v), want ours %d\n", pgrp, err, unix.Getpgrp())
			return 1
		}
		fmt.Println("foreground ok")
		return 0
	case "fgcheck":
		pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
		if err != nil || pgrp != unix.Getpgrp() || pgrp != unix.Getpid() {
			fmt.Fprintf(os.Stderr, "program: foreground group %d (%v), own group %d, pid %d\n", pgrp, err, unix.Getpgrp(), unix.Getpid())
			return 1
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}
