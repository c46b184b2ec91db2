package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// DialClient connects to address (an IP literal and a port, such as "10.244.1.5:80" or
// "[fd00:10:244:1::5]:7000") from the client namespace, as a process there would: the socket
// is made in that namespace, so its local address is ClientIP or ClientIP6. The connection
// then works like any other, in the test process. network is "tcp", "tcp4", "tcp6", "udp",
// "udp4" or "udp6". Its signature fits http.Transport.DialContext:
//
//	client := &http.Client{Transport: &http.Transport{DialContext: tp.DialClient}}
//
// Names are refused: they would be resolved outside the client namespace.
func (tp *Topology) DialClient(ctx context.Context, network, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("dial %s %s from the client namespace: want IP:port: %w", network, address, err)
	}
	var conn net.Conn
	err := inNetNS(filepath.Join("/run/netns", tp.client), func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from the client namespace: %w", network, address, err)
	}
	return conn, nil
}

// inNetNS runs f on an OS thread that has entered the network namespace at path, in a goroutine
// of its own, and waits for it. Sockets f makes belong to that namespace for their whole life.
// The thread goes back to its namespace afterwards; if it cannot, it stays locked to the
// goroutine and the Go runtime ends it with the goroutine, so no other goroutine runs there.
func inNetNS(path string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- runInNetNS(path, f) }()
	return <-done
}

func runInNetNS(path string, f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Stay locked: the thread ends with the goroutine.
		return errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
