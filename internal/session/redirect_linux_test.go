package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"doppel.dev/doppel/internal/agent"
	"doppel.dev/doppel/internal/intercept"
)

// These tests run the test binary itself as a supervised program (helper modes below) with a
// Redirector whose router sends everything remote, loopback included, through a real agent
// whose target is this test process. Everything stays on loopback in the test's own network
// namespace, so they need no privilege; what they check is that the program's syscalls go
// through the agent and that what the program can observe is what it asked for.

const helperEnv = "DOPPEL_SESSION_TEST_HELPER"

func TestMain(m *testing.M) {
	intercept.MaybeRunTrampoline()
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("doppel.dev/doppel/internal/intercept.forker"))
}

// helper is the supervised program: it prints what it observed.
func helper(mode string, args []string) int {
	switch mode {
	case "tcp":
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			fmt.Println("dial error:", err)
			return 1
		}
		sc, _ := c.(*net.TCPConn).SyscallConn()
		var peer syscall.Sockaddr
		sc.Control(func(fd uintptr) { peer, _ = syscall.Getpeername(int(fd)) })
		p := peer.(*syscall.SockaddrInet4)
		fmt.Printf("peer %v:%d\n", net.IP(p.Addr[:]), p.Port)
		c.Write([]byte("ping\n"))
		line := make([]byte, 64)
		n, _ := c.Read(line)
		fmt.Printf("reply %s", line[:n])
		c.Close()
	case "udp":
		pc, err := net.ListenUDP("udp4", nil)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(args[0]))
		pc.WriteTo([]byte("hi"), to)
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			fmt.Println("read error:", err)
			return 1
		}
		fmt.Printf("udp %s from %v\n", buf[:n], from)
	case "file":
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Printf("file %s", b)
	case "hostname":
		h, _ := os.Hostname()
		fmt.Println("hostname", h)
	}
	return 0
}

type routeAll struct{}

func (routeAll) Remote(netip.AddrPort, []string) bool { return true }

// runUnder runs the helper in mode under a Redirector connected to an agent for this process.
func runUnder(t *testing.T, files map[string][]byte, mode string, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secret := NewSecret()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { agent.Run(ctx, agent.Options{PID: os.Getpid(), Listener: ln, Secret: secret}) })
	defer wg.Wait()
	defer cancel()
	client, err := Connect(ctx, ln.Addr().String(), secret)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	red, err := NewRedirector(Options{Client: client, Outgoing: true, Route: routeAll{}, DNS: true, Files: files, Hostname: "pod-7f9c"})
	if err != nil {
		t.Fatal(err)
	}
	defer red.Close()
	r, w, _ := os.Pipe()
	self, _ := os.Executable()
	sup, err := intercept.Start(ctx, intercept.Config{
		Path: self, Argv: append([]string{self}, args...),
		Env:    []string{helperEnv + "=" + mode},
		Stdout: w, Stderr: w,
		Rules: red.Rules(), Handlers: red.Handlers(),
	})
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, r); r.Close(); close(done) }()
	if _, err := sup.Wait(); err != nil {
		t.Fatal(err)
	}
	<-done
	return out.String()
}

func TestTCPConnectGoesThroughAgent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var seen netip.AddrPort
	var fromAgent bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		seen = netip.MustParseAddrPort(c.RemoteAddr().String())
		fromAgent = ownSocket("tcp", seen.Port())
		line := make([]byte, 64)
		n, _ := c.Read(line)
		c.Write(append([]byte("echo:"), line[:n]...))
	}()
	out := runUnder(t, nil, "tcp", ln.Addr().String())
	<-done
	if want := "peer " + ln.Addr().String() + "\n"; !strings.Contains(out, want) {
		t.Errorf("program output %q lacks %q: getpeername must answer the address it connected to", out, want)
	}
	if !strings.Contains(out, "reply echo:ping") {
		t.Errorf("program output %q lacks the server's reply", out)
	}
	// The server's peer is the agent's socket (in this process), not the program's own.
	if !fromAgent {
		t.Errorf("the server's peer %v is not a socket of the agent: the connect was not redirected", seen)
	}
}

// ownSocket says whether the socket bound to local port (any address) in /proc/net/<proto> or
// <proto>6 is open in this process. It is safe to call from any goroutine.
func ownSocket(proto string, port uint16) bool {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/" + proto, "/proc/net/" + proto + "6"} {
		b, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); inodes[l] {
			return true
		}
	}
	return false
}

func TestTCPRefusedPassesThrough(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	out := runUnder(t, nil, "tcp", addr)
	if !strings.Contains(out, "connection refused") {
		t.Errorf("program output %q: want the target's 'connection refused'", out)
	}
}

func TestUDPSourceAddressIsTheRemote(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fromAgent := make(chan bool, 1) // buffered: the server never blocks on it
	go func() {
		buf := make([]byte, 64)
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err == nil {
			fromAgent <- ownSocket("udp", from.Port())
			pc.WriteToUDPAddrPort(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	out := runUnder(t, nil, "udp", pc.LocalAddr().String())
	if want := "udp echo:hi from " + pc.LocalAddr().String(); !strings.Contains(out, want) {
		t.Errorf("program output %q lacks %q", out, want)
	}
	select {
	case ok := <-fromAgent:
		if !ok {
			t.Error("the datagram did not come from the agent's socket: the sendto was not redirected")
		}
	case <-time.After(5 * time.Second):
		t.Error("the server got no datagram")
	}
}

func TestTargetFilesAndHostname(t *testing.T) {
	files := map[string][]byte{"/etc/resolv.conf": []byte("nameserver 10.96.0.10\nsearch shop.svc.cluster.local\n")}
	if out := runUnder(t, files, "file", "/etc/resolv.conf"); out != "file "+string(files["/etc/resolv.conf"]) {
		t.Errorf("program read %q, want the target's resolv.conf", out)
	}
	if out := runUnder(t, nil, "hostname"); out != "hostname pod-7f9c\n" {
		t.Errorf("program saw %q, want the target's hostname", out)
	}
}
