package agent_test

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/agent"
	"doppel.dev/doppel/internal/session"
)

// TestSocketPassing asks an agent (whose target is this process) for sockets over a socket pair
// and checks that they are fresh TCP sockets of the requested family.
func TestSocketPassing(t *testing.T) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "agent-sockets")
	defer theirs.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Options{PID: os.Getpid(), Listener: ln, Secret: session.NewSecret(), Grace: time.Minute, Sockets: theirs})
	}()
	defer func() {
		cancel()
		<-done
	}()
	socks := session.NewSockets(os.NewFile(uintptr(pair[0]), "client-sockets"))
	defer socks.Close()
	for _, family := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_INET} {
		f, err := socks.Get(ctx, family)
		if err != nil {
			t.Fatalf("Get(%d): %v", family, err)
		}
		fd := int(f.Fd())
		dom, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		proto, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if dom != family || typ != unix.SOCK_STREAM || proto != unix.IPPROTO_TCP {
			t.Errorf("socket for family %d: domain %d type %d protocol %d, want a TCP socket of that family", family, dom, typ, proto)
		}
		if _, err := unix.Getpeername(fd); err != unix.ENOTCONN {
			t.Errorf("socket for family %d is connected (%v), want a fresh one", family, err)
		}
		f.Close()
	}

	// File requests share the channel: the agent opens inside the target's root and passes
	// the descriptor, or answers the errno.
	dir := t.TempDir()
	os.WriteFile(dir+"/conf", []byte("remote content"), 0o644)
	f, err := socks.OpenFile(ctx, dir+"/conf", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	b := make([]byte, 64)
	n, _ := f.Read(b)
	f.Close()
	if string(b[:n]) != "remote content" {
		t.Errorf("the passed file reads %q", b[:n])
	}
	if _, err := socks.OpenFile(ctx, dir+"/missing", unix.O_RDONLY, 0); err != unix.ENOENT {
		t.Errorf("OpenFile of a missing file: %v, want ENOENT", err)
	}
}
