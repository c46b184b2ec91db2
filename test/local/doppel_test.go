package local_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/testenv"
)

// The tests below run `doppel exec --target pid:<pod process>` in the laptop namespace, as root
// with SUDO_UID/SUDO_GID/SUDO_USER set to nobody, as `sudo doppel exec` would: doppel runs the
// program as nobody. After each run they check that no process of the doppel binary remains.
//
// A wrong session secret is tested at the agent level, not here.

// sudoEnv is what sudo would add to doppel's environment for a user "nobody".
var sudoEnv = []string{
	fmt.Sprintf("SUDO_UID=%d", testenv.NobodyUID),
	fmt.Sprintf("SUDO_GID=%d", testenv.NobodyGID),
	"SUDO_USER=nobody",
}

type result struct {
	stdout, stderr string
	exitCode       int // -1 when killed by a signal or not started
	err            error
	elapsed        time.Duration
}

// execArgs returns the arguments of `doppel exec [flags] --target pid:<pod> -- argv...`.
func execArgs(tp *testenv.Topology, flags []string, argv []string) []string {
	args := append([]string{"exec", "--target", fmt.Sprintf("pid:%d", tp.PodPID())}, flags...)
	args = append(args, "--")
	return append(args, argv...)
}

// doppelCmd returns `doppel exec [flags] --target pid:<pod> -- argv...` in the laptop namespace.
func doppelCmd(ctx context.Context, tp *testenv.Topology, doppel string, flags []string, env []string, argv ...string) *exec.Cmd {
	cmd := tp.InLaptop(ctx, doppel, execArgs(tp, flags, argv)...)
	cmd.Env = append(cmd.Env, sudoEnv...)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func runDoppel(t *testing.T, tp *testenv.Topology, doppel string, flags []string, env []string, argv ...string) result {
	t.Helper()
	return runDoppelArgs(t, tp, doppel, "", env, execArgs(tp, flags, argv)...)
}

// runDoppelArgs runs `doppel args...` in the laptop namespace as sudo would, in the working
// directory dir ("" for the test's), and checks that nothing of it stays behind.
func runDoppelArgs(t *testing.T, tp *testenv.Topology, doppel, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := tp.InLaptop(ctx, doppel, args...)
	cmd.Env = append(cmd.Env, sudoEnv...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = dir
	r := run(cmd)
	if ctx.Err() != nil {
		t.Errorf("doppel %v did not end within 30s\nstderr:\n%s", args, r.stderr)
	}
	checkNoLeftovers(t, doppel)
	return r
}

// run runs cmd to its end and returns what it printed and how it ended.
func run(cmd *exec.Cmd) result {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), exitCode: -1, err: err, elapsed: time.Since(start)}
	if cmd.ProcessState != nil {
		r.exitCode = cmd.ProcessState.ExitCode()
	}
	return r
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (%v) after %v\nstdout:\n%s\nstderr:\n%s", r.exitCode, r.err, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
}

// setup is the common start of every doppel test.
func setup(t *testing.T) (*testenv.Topology, string) {
	testenv.Privileged(t)
	doppel := testenv.BuildDoppel(t)
	tp := testenv.NewTopology(t)
	// Registered after the topology, so it runs before the topology's cleanup.
	t.Cleanup(func() { killLeftovers(t, doppel) })
	return tp, doppel
}

// checkNoLeftovers fails t when processes of the doppel binary (the client or its agent) are
// still running a few seconds after doppel exec returned, and ends them.
func checkNoLeftovers(t *testing.T, doppel string) {
	t.Helper()
	var left []testenv.Process
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		left, err = testenv.ProcessesOf(doppel)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range left {
		t.Errorf("left behind after doppel exec ended: pid %d: %s", p.PID, p.Cmdline)
	}
	killLeftovers(t, doppel)
}

// killLeftovers ends the processes of this test binary's doppel build, by pid.
func killLeftovers(t *testing.T, doppel string) {
	left, err := testenv.ProcessesOf(doppel)
	if err != nil {
		t.Error(err)
		return
	}
	for _, p := range left {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
}

// TestDoppelExecReachesPod runs each client case under doppel in the laptop namespace, where
// TestBaseline shows they fail without it.
func TestDoppelExecReachesPod(t *testing.T) {
	tp, doppel := setup(t)
	cases := clientCases(t)
	// Two TCP paths: sockets of the pod's network put in the program's place (the default for a
	// local target), and doppel's proxy with the agent connection (what remote targets use).
	for _, mode := range []struct {
		name  string
		flags []string
	}{{"in-place", nil}, {"proxy", []string{"--no-socket-passing"}}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					r := runDoppel(t, tp, doppel, mode.flags, nil, c.argv...)
					if r.exitCode != 0 {
						t.Fatalf("doppel exec %v: %v", c.argv, r)
					}
					if m := missing(r.stdout, c.want); len(m) > 0 {
						t.Errorf("doppel exec %v: stdout lacks %q: %v", c.argv, m, r)
					}
				})
			}
		})
	}
}

// TestDoppelExecInPlace checks that a TCP connection of the program really is a socket of the
// pod's network by default (nginx sees the pod's address, and so does the program's
// getsockname), and that --no-socket-passing sends it through doppel's proxy instead.
func TestDoppelExecInPlace(t *testing.T) {
	tp, doppel := setup(t)
	// Options set before connect must hold on the socket put in place.
	const py = `
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
s.connect(("10.96.0.80", 80))
print("local", s.getsockname()[0])
print("peer", s.getpeername()[0])
print("options", s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
print("reply", s.recv(64).split(b"\r\n")[0].decode())
`
	for _, c := range []struct {
		flags []string
		local string
	}{{nil, testenv.PodIP}, {[]string{"--no-join-netns"}, testenv.PodIP}, {[]string{"--no-socket-passing"}, "127.0.0.1"}} {
		r := runDoppel(t, tp, doppel, c.flags, nil, "/usr/bin/python3", "-c", py)
		if r.exitCode != 0 {
			t.Fatalf("doppel exec %v: %v", c.flags, r)
		}
		if m := missing(r.stdout, []string{"local " + c.local + "\n", "peer 10.96.0.80\n", "options 1 1 77\n", "reply HTTP/1.1 200 OK\n"}); len(m) > 0 {
			t.Errorf("doppel exec %v: stdout lacks %q: %v", c.flags, m, r)
		}
	}
}

// TestDoppelExecPlacedSockets checks the sockets doppel places at socket(2) when the program
// runs in this machine's network namespace (--no-join-netns): a TCP socket is one of the pod's
// network from the start, and one that turns out to be local (a connect to loopback, with
// options, non-blocking mode and an epoll registration made before; a bind and listen; TCP Fast
// Open to loopback) is put back, so that everything the program does with it happens on this
// machine. Once placing is off, a socket registered with epoll before its remote connect is
// replaced at the connect, its registration moved with it.
func TestDoppelExecPlacedSockets(t *testing.T) {
	tp, doppel := setup(t)
	const py = `
import errno, os, select, socket
print("netns", os.readlink("/proc/self/ns/net"))
COOKIE = 71  # SO_NETNS_COOKIE
def cookie(s):
    return s.getsockopt(socket.SOL_SOCKET, COOKIE, 8)
here = cookie(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))  # UDP: never placed

srv = socket.socket()
print("server placed before bind", cookie(srv) != here)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
port = srv.getsockname()[1]
print("server local", cookie(srv) == here, srv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))

c = socket.socket()
print("client placed", cookie(c) != here)
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
c.setblocking(False)
ep = select.epoll()
ep.register(c.fileno(), select.EPOLLOUT | select.EPOLLET)
print("connect", errno.errorcode.get(c.connect_ex(("127.0.0.1", port)), "0"))
print("events", ep.poll(5))
ep.unregister(c.fileno())  # ENOENT if the registration was not moved with its key
a, peer = srv.accept()
print("client local", cookie(c) == here, c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
      c.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), c.getblocking())
c.setblocking(True)
c.sendall(b"ping")
print("got", a.recv(4).decode())

f = socket.socket()
f.sendto(b"fast", socket.MSG_FASTOPEN, ("127.0.0.1", port))
b, _ = srv.accept()
print("fastopen", cookie(f) == here, b.recv(4).decode())

r = socket.socket()
r.connect(("10.96.0.80", 80))
print("remote", cookie(r) != here, r.getsockname()[0])

# Two more local connects turn placing off (a program whose connects stay local): the next
# socket is this machine's, and its remote connect replaces it, epoll registration included.
for _ in range(2):
    socket.create_connection(("127.0.0.1", port)).close()
e = socket.socket()
print("not placed", cookie(e) == here)
e.setblocking(False)
ep2 = select.epoll()
pipes = [os.pipe() for _ in range(100)]  # an fdinfo longer than a page, the socket's line last
for rd, _ in pipes:
    ep2.register(rd, select.EPOLLIN)
ep2.register(e.fileno(), select.EPOLLOUT)
e.connect_ex(("10.96.0.80", 80))
print("replaced events", ep2.poll(5) == [(e.fileno(), select.EPOLLOUT)])
ep2.unregister(e.fileno())
print("replaced", cookie(e) != here, e.getsockname()[0])
`
	r := runDoppel(t, tp, doppel, []string{"--no-join-netns"}, nil, "/usr/bin/python3", "-c", py)
	if r.exitCode != 0 {
		t.Fatalf("doppel exec: %v", r)
	}
	if want := "netns " + netnsOf(t, "/run/netns/"+tp.LaptopNetNS()) + "\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q (the laptop's network namespace): %v", want, r)
	}
	fd := "" // the registration's data is the client's descriptor number, which epoll reports back
	if m := missing(r.stdout, []string{
		"server placed before bind True\n", "server local True 1\n",
		"client placed True\n", "connect EINPROGRESS\n", "client local True 1 77 False\n", "got ping\n",
		"fastopen True fast\n", "remote True " + testenv.PodIP + "\n",
		"not placed True\n", "replaced events True\n", "replaced True " + testenv.PodIP + "\n",
	}); len(m) > 0 {
		t.Errorf("stdout lacks %q: %v", m, r)
	}
	for line := range strings.Lines(r.stdout) {
		if v, ok := strings.CutPrefix(line, "events "); ok {
			fd = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(fd, "[(") || !strings.HasSuffix(fd, ", 4)]") {
		t.Errorf("epoll did not report the moved registration (EPOLLOUT = 4): events %q: %v", fd, r)
	}
}

// TestDoppelExecInTargetNetns checks the default for a local target: the program runs in the
// target's network namespace, its TCP sockets are the target's before they connect, and what
// stays on this machine does: a TCP connect and a UDP datagram to loopback, and a unix socket's
// abstract name, reach servers of the laptop namespace (nothing listens on those in the pod).
func TestDoppelExecInTargetNetns(t *testing.T) {
	tp, doppel := setup(t)
	const server = `
import socket, sys, threading
u = socket.socket(socket.AF_UNIX)
u.bind("\0" + sys.argv[1])
u.listen(4)
t = socket.socket()
t.bind(("127.0.0.1", 0))
t.listen(4)
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.bind(("127.0.0.1", 0))
print(t.getsockname()[1], d.getsockname()[1], flush=True)
def serve(s, word):
    while True:
        c, _ = s.accept()
        c.sendall(word)
        c.close()
threading.Thread(target=serve, args=(u, b"laptop unix"), daemon=True).start()
threading.Thread(target=serve, args=(t, b"laptop tcp"), daemon=True).start()
while True:
    b, a = d.recvfrom(64)
    d.sendto(b"laptop " + b, a)
`
	name := fmt.Sprintf("doppel-test-%d", os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	srv := tp.InLaptop(ctx, "/usr/bin/python3", "-c", server, name)
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = srv.Wait()
	})
	ports, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the laptop's server: %v", err)
	}
	tcpPort, udpPort, _ := strings.Cut(strings.TrimSpace(ports), " ")

	const py = `
import os, socket, sys
def cookie(s):
    return s.getsockopt(socket.SOL_SOCKET, 71, 8)  # SO_NETNS_COOKIE
print("netns", os.readlink("/proc/self/ns/net"))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t = socket.socket()
print("tcp target", cookie(t) != cookie(u))
t.connect(("127.0.0.1", int(sys.argv[1])))
print("loopback", t.recv(32).decode(), cookie(t) == cookie(u))
x = socket.socket(socket.AF_UNIX)
x.connect("\0" + sys.argv[3])
print("abstract", x.recv(32).decode())
u.settimeout(5)
u.sendto(b"ping", ("127.0.0.1", int(sys.argv[2])))
print("udp", u.recvfrom(64)[0].decode())
r = socket.socket()
r.connect(("10.96.0.80", 80))
print("remote", cookie(r) != cookie(u), r.getsockname()[0])
`
	r := runDoppel(t, tp, doppel, nil, nil, "/usr/bin/python3", "-c", py, tcpPort, udpPort, name)
	if r.exitCode != 0 {
		t.Fatalf("doppel exec: %v", r)
	}
	if m := missing(r.stdout, []string{
		"netns " + netnsOf(t, fmt.Sprintf("/proc/%d/ns/net", tp.PodPID())) + "\n",
		"tcp target True\n", "loopback laptop tcp True\n", "abstract laptop unix\n", "udp laptop ping\n",
		"remote True " + testenv.PodIP + "\n",
	}); len(m) > 0 {
		t.Errorf("stdout lacks %q: %v", m, r)
	}
}

// netnsOf names the network namespace at path as readlink of /proc/PID/ns/net does.
func netnsOf(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

// TestDoppelExecTargetView checks that the program sees the target's hostname, files and
// environment, and that its own environment wins over the target's.
func TestDoppelExecTargetView(t *testing.T) {
	tp, doppel := setup(t)
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"hostname"}, testenv.PodHostname + "\n"},
		{[]string{"uname", "-n"}, testenv.PodHostname + "\n"},
		{[]string{"cat", "/etc/hostname"}, testenv.PodHostname + "\n"},
		{[]string{"cat", "/etc/resolv.conf"}, testenv.PodResolvConf},
		{[]string{"cat", "/etc/hosts"}, testenv.PodHosts},
		{[]string{"id", "-u"}, fmt.Sprintf("%d\n", testenv.NobodyUID)},
	} {
		t.Run(strings.Join(c.argv, " "), func(t *testing.T) {
			r := runDoppel(t, tp, doppel, nil, nil, c.argv...)
			if r.exitCode != 0 || r.stdout != c.want {
				t.Errorf("doppel exec %v: want stdout %q, exit 0; got %v", c.argv, c.want, r)
			}
		})
	}
	t.Run("env", func(t *testing.T) {
		own := []string{"SHOP_DB_URL=postgres://localhost:5432", "DOPPEL_TEST_OWN=yes"}
		r := runDoppel(t, tp, doppel, nil, own, "env")
		if r.exitCode != 0 {
			t.Fatalf("doppel exec env: %v", r)
		}
		lines := "\n" + r.stdout
		for _, kv := range append([]string{"POD_NAME=" + testenv.PodHostname, "POD_NAMESPACE=" + testenv.PodNamespace}, own...) {
			if !strings.Contains(lines, "\n"+kv+"\n") {
				t.Errorf("env under doppel lacks %s:\n%s", kv, r.stdout)
			}
		}
		if strings.Contains(lines, "\nSHOP_DB_URL=postgres://db.shop:5432\n") {
			t.Errorf("the target's SHOP_DB_URL won over the program's own:\n%s", r.stdout)
		}
	})
}

// TestDoppelExecNoOutgoing checks that --no-outgoing leaves the program's connections local.
func TestDoppelExecNoOutgoing(t *testing.T) {
	tp, doppel := setup(t)
	r := runDoppel(t, tp, doppel, []string{"--no-outgoing"}, nil, "curl", "-sS", "--max-time", "5", "http://nginx/")
	if r.exitCode == 0 || strings.Contains(r.stdout, testenv.NginxBody) {
		t.Errorf("curl http://nginx/ under doppel --no-outgoing reached nginx: %v", r)
	}
}

// TestDoppelExecExitStatus checks that the program's exit status is doppel's.
func TestDoppelExecExitStatus(t *testing.T) {
	tp, doppel := setup(t)
	for _, c := range []struct {
		name string
		argv []string
		want int
	}{
		{"exit-0", []string{"true"}, 0},
		{"exit-7", []string{"sh", "-c", "exit 7"}, 7},
		{"missing-program", []string{"doppel-test-no-such-program"}, 127},
		{"killed-by-TERM", []string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
		{"killed-by-KILL", []string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runDoppel(t, tp, doppel, nil, nil, c.argv...)
			if r.exitCode != c.want {
				t.Errorf("doppel exec %v: want exit %d; got %v", c.argv, c.want, r)
			}
		})
	}
}

// TestDoppelExecDeadTarget checks that a target pid that does not exist is refused before the
// program starts.
func TestDoppelExecDeadTarget(t *testing.T) {
	tp, doppel := setup(t)
	const pid = 999999
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Skipf("pid %d exists on this machine", pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := tp.InLaptop(ctx, doppel, "exec", "--target", fmt.Sprintf("pid:%d", pid), "--", "sh", "-c", "echo started")
	cmd.Env = append(cmd.Env, sudoEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() <= 0 {
		t.Errorf("doppel exec --target pid:%d: want a non-zero exit, got %v", pid, err)
	}
	if !strings.Contains(strings.ToLower(stderr.String()), "no such process") {
		t.Errorf("stderr does not say \"no such process\":\n%s", &stderr)
	}
	if strings.Contains(stdout.String(), "started") {
		t.Errorf("the program ran although the target does not exist")
	}
	if elapsed > 5*time.Second {
		t.Errorf("refusal took %v; want it before anything starts", elapsed)
	}
	checkNoLeftovers(t, doppel)
}

// TestDoppelExecAgentKilled kills the agent of a running session: doppel must end with a
// non-zero status within seconds, say that the agent is gone, and leave nothing behind.
func TestDoppelExecAgentKilled(t *testing.T) {
	tp, doppel := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := doppelCmd(ctx, tp, doppel, nil, nil, "sleep", "30")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once Wait has returned
		<-done
	})
	// `ip netns exec` execs doppel, so the started pid is doppel's.
	doppelPID := cmd.Process.Pid

	var agent testenv.Process
	var below []testenv.Process
	deadline := time.Now().Add(15 * time.Second)
	for agent.PID == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no agent process below doppel (pid %d) after 15s; processes below it: %v\nstderr:\n%s", doppelPID, below, &stderr)
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("doppel exited before its agent was found: %v\nstderr:\n%s", err, &stderr)
		case <-time.After(100 * time.Millisecond):
		}
		var err error
		below, err = testenv.Descendants(doppelPID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range below {
			if strings.Contains(p.Cmdline, "agent") {
				agent = p
				break
			}
		}
	}
	// Let the session settle, then take the final picture of what runs below doppel.
	time.Sleep(500 * time.Millisecond)
	below, _ = testenv.Descendants(doppelPID)
	if err := syscall.Kill(agent.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill agent %d: %v", agent.PID, err)
	}
	killed := time.Now()

	var err error
	select {
	case err = <-done:
		done <- err // for the cleanup's receive
	case <-time.After(10 * time.Second):
		t.Fatalf("doppel still runs 10s after its agent was killed\nstderr:\n%s", &stderr)
	}
	t.Logf("doppel ended %v after the agent was killed: %v", time.Since(killed).Round(time.Millisecond), err)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() <= 0 {
		t.Errorf("doppel after its agent was killed: want a non-zero exit, got %v", err)
	}
	if !strings.Contains(strings.ToLower(stderr.String()), "agent") {
		t.Errorf("stderr does not mention the agent:\n%s", &stderr)
	}
	checkNoLeftovers(t, doppel)
	time.Sleep(time.Second) // the program may take a moment to follow
	for _, p := range below {
		if testenv.Alive(p.PID, p.Cmdline) {
			t.Errorf("left behind after the agent was killed: pid %d: %s", p.PID, p.Cmdline)
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// A Kubernetes target without a cluster configured (no kubeconfig, not in a pod) is one clear
// error before anything starts, not a connection to client-go's default localhost:8080.
func TestDoppelExecKubernetesTargetWithoutCluster(t *testing.T) {
	tp, doppel := setup(t)
	for spec, want := range map[string]string{
		"deployment/nginx":        "no Kubernetes cluster configured: pass --kubeconfig",
		"pod/nginx/container/app": "no Kubernetes cluster configured: pass --kubeconfig",
		"none":                    "no Kubernetes cluster configured: pass --kubeconfig",
	} {
		r := runDoppelArgs(t, tp, doppel, "", nil, "exec", "--target", spec, "--", "sh", "-c", "echo started")
		if r.exitCode != 125 || !strings.Contains(r.stderr, want) || strings.Contains(r.stdout, "started") {
			t.Errorf("--target %s: %s", spec, r)
		}
	}
	r := runDoppelArgs(t, tp, doppel, "", nil, "exec", "--target", "cronjob/x", "--", "true")
	if r.exitCode != 125 || !strings.Contains(r.stderr, "unknown kind") {
		t.Errorf("--target cronjob/x: %s", r)
	}
}
