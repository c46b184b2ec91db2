package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"doppel.dev/doppel/internal/agent"
	"doppel.dev/doppel/internal/session"
	"doppel.dev/doppel/internal/wire"
)

// startAgent runs an agent whose target is this test process (same namespaces, so it needs no
// privilege) and returns its address and secret.
func startAgent(t *testing.T, grace time.Duration) (string, [wire.SecretSize]byte, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secret := session.NewSecret()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		done <- agent.Run(ctx, agent.Options{PID: os.Getpid(), Listener: ln, Secret: secret, Grace: grace})
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Error("agent did not stop after cancel")
		}
	})
	return ln.Addr().String(), secret, done
}

func connect(t *testing.T, addr string, secret [wire.SecretSize]byte) *session.Client {
	t.Helper()
	c, err := session.Connect(context.Background(), addr, secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestWrongSecretIsRefusedAndAgentStaysUp(t *testing.T) {
	addr, secret, _ := startAgent(t, 5*time.Second)
	bad := secret
	bad[0] ^= 1
	_, err := session.Connect(context.Background(), addr, bad)
	if !errors.Is(err, session.ErrRejected) {
		t.Fatalf("Connect with a wrong secret: %v, want ErrRejected", err)
	}
	if want := "wrong session secret"; err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not say %q", err, want)
	}
	c := connect(t, addr, secret)
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatalf("right client after a wrong one: %v", err)
	}
}

func TestWrongVersionIsRefused(t *testing.T) {
	addr, secret, _ := startAgent(t, 5*time.Second)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wire.WriteHello(conn, wire.Hello{Version: wire.Version + 1, Secret: secret})
	w, err := wire.ReadWelcome(conn)
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != wire.WelcomeBadVersion {
		t.Errorf("status = %d, want WelcomeBadVersion; message %q", w.Status, w.Message)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("agent kept the connection of a client with the wrong version")
	}
}

func TestGarbagePeerIsDropped(t *testing.T) {
	addr, secret, _ := startAgent(t, 5*time.Second)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: agent\r\nUser-Agent: curl/8\r\n\r\n"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("garbage peer: %v, want the agent to drop the connection", err)
	}
	conn.Close()
	connect(t, addr, secret)
}

func TestDialTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c) // echo until the client half-closes
		c.Close()
	}()
	addr, secret, _ := startAgent(t, 5*time.Second)
	c := connect(t, addr, secret)
	conn, err := c.DialTCP(context.Background(), netip.MustParseAddrPort(ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("ping"))
	conn.Close() // a yamux stream's Close is a half-close: the reply still arrives
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo through agent = %q, %v", got, err)
	}
}

func TestDialTCPRefusedCarriesErrno(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	addr, secret, _ := startAgent(t, 5*time.Second)
	c := connect(t, addr, secret)
	_, err := c.DialTCP(context.Background(), netip.MustParseAddrPort(dead))
	var re *wire.RemoteError
	if !errors.As(err, &re) || syscall.Errno(re.Errno) != syscall.ECONNREFUSED {
		t.Fatalf("dial of a closed port: %v, want a RemoteError with ECONNREFUSED", err)
	}
}

func TestUDPFlow(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	addr, secret, _ := startAgent(t, 5*time.Second)
	c := connect(t, addr, secret)
	flow, err := c.OpenUDP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	server := netip.MustParseAddrPort(pc.LocalAddr().String())
	if err := wire.WriteDatagram(flow, wire.Datagram{Addr: server, Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	flow.SetReadDeadline(time.Now().Add(5 * time.Second))
	d, err := wire.ReadDatagram(flow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr != server || string(d.Payload) != "echo:hi" {
		t.Errorf("reply = %v %q, want %v %q", d.Addr, d.Payload, server, "echo:hi")
	}
}

func TestReadFileAndInfo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	os.WriteFile(path, []byte("key: value\n"), 0o644)
	addr, secret, _ := startAgent(t, 5*time.Second)
	c := connect(t, addr, secret)
	got, err := c.ReadFile(context.Background(), path)
	if err != nil || string(got) != "key: value\n" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	_, err = c.ReadFile(context.Background(), path+".missing")
	var re *wire.RemoteError
	if !errors.As(err, &re) || syscall.Errno(re.Errno) != syscall.ENOENT {
		t.Errorf("ReadFile of a missing file: %v, want a RemoteError with ENOENT", err)
	}
	// The agent reads /proc/PID/environ, the environment this process started with.
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.PID != os.Getpid() || info.Hostname == "" || !slices.ContainsFunc(info.Env, func(s string) bool { return len(s) > 5 && s[:5] == "PATH=" }) {
		t.Errorf("info = pid %d host %q, %d vars; want this process", info.PID, info.Hostname, len(info.Env))
	}
}

func TestExitsAfterGraceWithoutClient(t *testing.T) {
	_, _, done := startAgent(t, 300*time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after the grace period", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("agent did not exit after the grace period")
	}
}

func TestExitsAfterClientGoneForGrace(t *testing.T) {
	addr, secret, done := startAgent(t, 300*time.Millisecond)
	c, err := session.Connect(context.Background(), addr, secret)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("agent exited while its client was connected")
	case <-time.After(600 * time.Millisecond):
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("agent did not exit after its client left")
	}
}

func TestDeadTarget(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	err := agent.Run(context.Background(), agent.Options{PID: 1 << 30, Listener: ln})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("no such process")) {
		t.Errorf("Run for a dead pid = %v, want 'no such process'", err)
	}
}
