//go:build linux

package local_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/incoming"
	"doppel.dev/doppel/internal/testenv"
)

// session is a `doppel exec` running in the background whose program serves incoming traffic.
type session struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc

	mu     sync.Mutex
	lines  []string
	stderr strings.Builder
	waited chan struct{}
	res    result
}

// startSession starts `doppel exec [flags] -- argv...` and waits until the program printed a
// line starting with "listening on".
func startSession(t *testing.T, tp *testenv.Topology, doppel string, flags []string, argv ...string) *session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	s := &session{cmd: doppelCmd(ctx, tp, doppel, flags, nil, argv...), cancel: cancel, waited: make(chan struct{})}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "listening on") {
				once.Do(func() { close(listening) })
			}
		}
		err := s.cmd.Wait()
		s.mu.Lock()
		s.res = result{stdout: strings.Join(s.lines, "\n") + "\n", stderr: s.stderr.String(), exitCode: s.cmd.ProcessState.ExitCode(), err: err, elapsed: time.Since(start)}
		s.mu.Unlock()
		close(s.waited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-s.waited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.waited
		}
		cancel()
	})
	select {
	case <-listening:
	case <-s.waited:
		t.Fatalf("doppel exec ended before the program listened:\n%s", s.res)
	case <-time.After(30 * time.Second):
		t.Fatalf("the program did not listen within 30s; stderr:\n%s", s.stderrText())
	}
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (s *session) stderrText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// wait waits for doppel exec to end by itself.
func (s *session) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-s.waited:
	case <-time.After(30 * time.Second):
		t.Fatalf("doppel exec did not end; stderr:\n%s", s.stderrText())
	}
	return s.res
}

// output is what the program printed so far.
func (s *session) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n") + "\n"
}

// curlFromClient fetches url from the client namespace and returns the body.
func curlFromClient(t *testing.T, tp *testenv.Topology, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r := run(tp.InClient(ctx, "curl", append([]string{"-sS", "--max-time", "10"}, args...)...))
	if r.exitCode != 0 {
		t.Fatalf("curl %v from the client namespace: %s", args, r)
	}
	return r.stdout
}

// podSessions reads the doppel tables in the pod's network namespace back over netlink.
func podSessions(t *testing.T, tp *testenv.Topology) []incoming.Session {
	t.Helper()
	fd, err := unix.Open("/run/netns/"+tp.PodNetNS(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	s, err := incoming.ListSessions(fd)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The product's canonical scenario, in mirror mode: a Go program, run as nobody, resolves
// nginx, listens on :80 and logs each request; every request that reaches the pod's own nginx
// reaches the program too, with the real client's address, and the client still gets nginx's
// byte-exact answer.
func TestIncomingMirrorCanonical(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	const n = 5
	s := startSession(t, tp, doppel, nil, prog, "-n", fmt.Sprint(n+1))
	if got := podSessions(t, tp); len(got) != 1 || got[0].Kind != incoming.KindMirror || fmt.Sprint(got[0].Ports) != "[80]" {
		t.Errorf("doppel tables in the pod: %+v, want one mirror session on port 80", got)
	}
	for i := range n {
		if body := curlFromClient(t, tp, fmt.Sprintf("http://%s/mirror-%d", testenv.PodIP, i)); body != testenv.PodNginxBody {
			t.Errorf("request %d: the client got %q, want nginx's %q", i, body, testenv.PodNginxBody)
		}
	}
	// IPv6: the program sees the client's IPv6 address.
	if body := curlFromClient(t, tp, "http://["+testenv.PodIP6+"]/mirror-v6"); body != testenv.PodNginxBody {
		t.Errorf("over IPv6 the client got %q", body)
	}
	// The big body, byte for byte, through the mirror.
	if body := curlFromClient(t, tp, "http://"+testenv.PodIP+testenv.PodBigPath); body != string(testenv.PodBigBody()) {
		t.Errorf("the client got %d bytes of %s, not nginx's %d", len(body), testenv.PodBigPath, testenv.PodBigSize)
	}
	r := s.wait(t)
	if r.exitCode != 0 {
		t.Fatalf("doppel exec: %s", r)
	}
	want := []string{"resolved nginx: " + testenv.NginxIP, "listening on [::]:80"}
	for i := range n {
		want = append(want, fmt.Sprintf("request GET /mirror-%d from %s:", i, testenv.ClientIP))
	}
	want = append(want, fmt.Sprintf("request GET /mirror-v6 from [%s]:", testenv.ClientIP6), " to ["+testenv.PodIP6+"]:80")
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("program output lacks %q\n%s", w, r)
		}
	}
	t.Logf("program output:\n%s", r.stdout)
	if !strings.Contains(r.stdout, " to "+testenv.PodIP+":80") {
		t.Errorf("accepted connections should be on the pod's address %s:80:\n%s", testenv.PodIP, r.stdout)
	}
	checkNoLeftovers(t, doppel)
	if got := podSessions(t, tp); len(got) != 0 {
		t.Errorf("doppel tables left in the pod after the session: %+v", got)
	}
	if body := curlFromClient(t, tp, "http://"+testenv.PodIP+"/after"); body != testenv.PodNginxBody {
		t.Errorf("after the session: %q", body)
	}
}

// Steal: the program answers the pod's clients.
func TestIncomingSteal(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s := startSession(t, tp, doppel, []string{"--steal"}, prog, "-n", "2")
	for _, path := range []string{"/one", "/two"} {
		if body := curlFromClient(t, tp, "http://"+testenv.PodIP+path); body != "program: "+path+"\n" {
			t.Errorf("stolen %s answered %q", path, body)
		}
	}
	if r := s.wait(t); r.exitCode != 0 || !strings.Contains(r.stdout, "request GET /two from "+testenv.ClientIP+":") {
		t.Errorf("doppel exec: %s", r)
	}
	checkNoLeftovers(t, doppel)
	if body := curlFromClient(t, tp, "http://"+testenv.PodIP+"/after"); body != testenv.PodNginxBody {
		t.Errorf("after the session: %q", body)
	}
}

// Steal with a header filter over one keep-alive connection with pipelined requests: the
// requests that match go to the program, the others to the pod's nginx, answered in order.
func TestIncomingFilteredKeepAlive(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s := startSession(t, tp, doppel, []string{"--steal", "--http-header", "X-Debug-User: alice"}, prog, "-n", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := tp.DialClient(ctx, "tcp", testenv.PodIP+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	reqs := []struct {
		path, header, want string
	}{
		{"/a", "X-Debug-User: alice\r\n", "program: /a\n"},
		{"/b", "", testenv.PodNginxBody},
		{"/c", "x-debug-user: alice\r\n", "program: /c\n"},
		{"/d", "X-Debug-User: bob\r\n", testenv.PodNginxBody},
	}
	var raw strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&raw, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", r.path, testenv.PodIP, r.header)
	}
	if _, err := io.WriteString(c, raw.String()); err != nil { // all pipelined in one write
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, r := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response to %s: %v", r.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != r.want {
			t.Errorf("%s %q: got %q (%v), want %q", r.path, r.header, body, err, r.want)
		}
	}
	res := s.wait(t)
	if res.exitCode != 0 || !strings.Contains(res.stdout, "request GET /a from "+testenv.ClientIP) ||
		!strings.Contains(res.stdout, "request GET /c from "+testenv.ClientIP) || strings.Contains(res.stdout, "GET /b") {
		t.Errorf("program saw the wrong requests: %s", res)
	}
}

// Two developers steal from one target with different filters at the same time: each gets
// only the requests their filter matches, and everything else reaches the pod's nginx.
func TestIncomingTwoFilteredSessions(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	alice := startSession(t, tp, doppel, []string{"--steal", "--http-header", "X-Debug-User: ^alice$"}, prog, "-name", "", "-n", "2")
	api := startSession(t, tp, doppel, []string{"--steal", "--http-path", "^/api/", "--http-method", "POST"}, prog, "-name", "", "-n", "1")
	if got := podSessions(t, tp); len(got) != 2 || got[0].Kind != incoming.KindFiltered || got[1].Kind != incoming.KindFiltered {
		t.Errorf("doppel tables in the pod: %+v, want two filtered sessions", got)
	}
	url := func(path string) string { return "http://" + testenv.PodIP + path }
	checks := []struct {
		args []string
		want string
	}{
		{[]string{"-H", "X-Debug-User: alice", url("/alice-1")}, "program: /alice-1\n"},
		{[]string{"-X", "POST", url("/api/orders")}, "program: /api/orders\n"},
		{[]string{url("/nobody")}, testenv.PodNginxBody},
		{[]string{"-H", "X-Debug-User: alicex", url("/api/get")}, testenv.PodNginxBody}, // GET: not api's
		{[]string{"-H", "X-Debug-User: alice", url("/alice-2")}, "program: /alice-2\n"},
	}
	for _, c := range checks {
		if got := curlFromClient(t, tp, c.args...); got != c.want {
			t.Errorf("curl %v: got %q, want %q", c.args, got, c.want)
		}
	}
	a, b := alice.wait(t), api.wait(t)
	if a.exitCode != 0 || strings.Contains(a.stdout, "/api/") || strings.Contains(a.stdout, "/nobody") ||
		!strings.Contains(a.stdout, "request GET /alice-1 from "+testenv.ClientIP) {
		t.Errorf("alice's program: %s", a)
	}
	if b.exitCode != 0 || strings.Contains(b.stdout, "alice") || !strings.Contains(b.stdout, "request POST /api/orders") {
		t.Errorf("the api program: %s", b)
	}
	checkNoLeftovers(t, doppel)
	if got := podSessions(t, tp); len(got) != 0 {
		t.Errorf("doppel tables left in the pod: %+v", got)
	}
}

// Mirror of a protocol that is not HTTP: a line echo. The real client gets the pod's echo
// server's answers; the program gets every line with the client's address.
func TestIncomingMirrorLines(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	port := fmt.Sprint(testenv.PodEchoPort)
	s := startSession(t, tp, doppel, nil, prog, "-name", "", "-lines", "-listen", ":"+port, "-n", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := tp.DialClient(ctx, "tcp", net.JoinHostPort(testenv.PodIP, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, line := range []string{"one", "two", "three"} {
		fmt.Fprintf(c, "%s\n", line)
		got, err := br.ReadString('\n')
		if err != nil || got != "echo:"+line+"\n" {
			t.Errorf("the client got %q (%v), want the pod echo server's %q", got, err, "echo:"+line)
		}
	}
	c.Close()
	r := s.wait(t)
	for _, line := range []string{"one", "two", "three"} {
		want := fmt.Sprintf("line %s from %s:", line, testenv.ClientIP)
		if !strings.Contains(r.stdout, want) {
			t.Errorf("program output lacks %q: %s", want, r)
		}
	}
	if !strings.Contains(r.stdout, " to "+testenv.PodIP+":"+port) {
		t.Errorf("program output: accepted connections should be on %s:%s: %s", testenv.PodIP, port, r)
	}
}

// SIGKILL of the agent mid-load: its rules are gone within a second (the kernel removes the
// owned table with the agent's netlink socket), and the pod's clients are served again.
func TestIncomingAgentKilledRulesGone(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s := startSession(t, tp, doppel, []string{"--steal"}, prog, "-name", "")
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Go(func() {
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: tp.DialClient}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if resp, err := client.Get("http://" + testenv.PodIP + "/load"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})
	defer func() { close(stop); load.Wait() }()
	time.Sleep(300 * time.Millisecond)
	if len(podSessions(t, tp)) != 1 {
		t.Fatalf("no session table while the session runs")
	}
	killAgent(t, tp, s, "doppel tables", func() int { return len(podSessions(t, tp)) })
}

// killAgent kills the session's agent with SIGKILL, and checks that left (what it had made in
// the pod) is zero within a second, that the pod's clients get nginx, and that doppel fails.
func killAgent(t *testing.T, tp *testenv.Topology, s *session, what string, left func() int) {
	t.Helper()
	if err := syscall.Kill(agentOf(t, s), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for n := left(); n != 0; n = left() {
		if time.Since(killed) > time.Second {
			t.Fatalf("%d %s still in the pod 1s after the agent was killed", n, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%s gone %v after SIGKILL", what, time.Since(killed).Round(time.Millisecond))
	if body := curlFromClient(t, tp, "http://"+testenv.PodIP+"/after"); body != testenv.PodNginxBody {
		t.Errorf("after the agent was killed the client got %q, want nginx's answer", body)
	}
	if r := s.wait(t); r.exitCode == 0 {
		t.Errorf("doppel exec after its agent was killed: want a failure, got %s", r)
	}
}

// agentOf returns the pid of the agent below a session's doppel exec.
func agentOf(t *testing.T, s *session) int {
	t.Helper()
	procs, err := testenv.Descendants(s.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if strings.Contains(p.Cmdline, " agent") {
			return p.PID
		}
	}
	t.Fatalf("no agent below doppel: %v", procs)
	return 0
}

// SIGKILL of the agent of a tap session: the kernel detaches the tap with the agent's last
// descriptor of it, and the pod's clients are served as before.
func TestIncomingAgentKilledTapGone(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s := startSession(t, tp, doppel, []string{"--mirror-tap"}, prog, "-name", "")
	if body := curlFromClient(t, tp, "http://"+testenv.PodIP+"/before"); body != testenv.PodNginxBody {
		t.Errorf("the client got %q, want nginx's answer", body)
	}
	if podTaps(t, tp) == 0 {
		t.Fatalf("no tap attached while the session runs")
	}
	killAgent(t, tp, s, "taps", func() int { return podTaps(t, tp) })
}

// pyServeOnce listens on :80, answers one request, closes its listener and stays a while: a
// program that stopped listening while its session goes on.
const pyServeOnce = `
import socket, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 80))
s.listen()
print("listening on", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nprogram\n")
c.close()
s.close()
print("closed", flush=True)
time.sleep(20)
`

// A stealing program that no longer listens: the connections (with a filter, the requests) it
// would have got go to the pod's own service, not to nobody. The client refuses the agent's
// stream when it cannot reach the program's listener, and the agent passes the connection on.
func TestIncomingStealProgramGone(t *testing.T) {
	tp, doppel := setup(t)
	for _, flags := range [][]string{{"--steal"}, {"--steal", "--http-header", "X-Dev: alice"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			s := startSession(t, tp, doppel, flags, "/usr/bin/python3", "-c", pyServeOnce)
			curl := func(path string) string {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				r := run(tp.InClient(ctx, "curl", "-sS", "--max-time", "5", "-H", "X-Dev: alice", "http://"+testenv.PodIP+path))
				return r.stdout + r.stderr
			}
			if got := curl("/first"); got != "program\n" {
				t.Fatalf("the first request got %q, want the program's answer", got)
			}
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.output(), "closed"); {
				if time.Now().After(deadline) {
					t.Fatalf("the program did not close its listener: %s", s.output())
				}
				time.Sleep(20 * time.Millisecond)
			}
			for i := range 3 {
				if got := curl(fmt.Sprintf("/after-%d", i)); got != testenv.PodNginxBody {
					t.Errorf("request %d after the program closed its listener got %q, want nginx's answer", i, got)
				}
			}
		})
	}
}

// Steal with a header filter over HTTP/2 without TLS (h2c): two requests on one connection,
// concurrently, one for the program and one for the pod's own h2c server.
func TestIncomingFilteredHTTP2(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	port := fmt.Sprint(testenv.PodH2Port)
	s := startSession(t, tp, doppel, []string{"--steal", "--http-header", "X-Debug-User: alice"}, prog, "-name", "", "-h2c", "-listen", ":"+port, "-n", "2")
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	conns := 0
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: protos,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns++
			return tp.DialClient(ctx, network, addr)
		}}}
	get := func(path, user string) (string, error) {
		req, _ := http.NewRequest("GET", "http://"+net.JoinHostPort(testenv.PodIP, port)+path, nil)
		if user != "" {
			req.Header.Set("X-Debug-User", user)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			return "", fmt.Errorf("answered over %s", resp.Proto)
		}
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// The first request opens the connection; the next ones share it, concurrently.
	if got, err := get("/first", "alice"); err != nil || got != "program: /first\n" {
		t.Fatalf("/first: %q, %v", got, err)
	}
	var wg sync.WaitGroup
	for _, c := range []struct{ path, user, want string }{
		{"/second", "alice", "program: /second\n"},
		{"/nginx", "bob", testenv.PodNginxBody},
		{"/nginx2", "", testenv.PodNginxBody},
	} {
		wg.Go(func() {
			if got, err := get(c.path, c.user); err != nil || got != c.want {
				t.Errorf("%s (user %q): %q, %v; want %q", c.path, c.user, got, err, c.want)
			}
		})
	}
	wg.Wait()
	if conns != 1 {
		t.Errorf("the client made %d connections, want 1 (HTTP/2 multiplexing)", conns)
	}
	r := s.wait(t)
	if r.exitCode != 0 || !strings.Contains(r.stdout, "request GET /second") || strings.Contains(r.stdout, "/nginx") {
		t.Errorf("program: %s", r)
	}
}

// Passive capture: the program gets a copy of every request without rules in the pod (no
// table, no agent in the connections' path), and the clients get nginx's answers.
func TestIncomingMirrorCapture(t *testing.T) { testIncomingCopies(t, "--mirror-capture") }

// The eBPF tap: the same, with the tap's programs attached in the pod while the session runs
// and gone after it.
func TestIncomingMirrorTap(t *testing.T) { testIncomingCopies(t, "--mirror-tap") }

func testIncomingCopies(t *testing.T, flag string) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	const n = 4
	s := startSession(t, tp, doppel, []string{flag}, prog, "-name", "", "-n", fmt.Sprint(n))
	if got := podSessions(t, tp); len(got) != 0 {
		t.Errorf("%s wrote tables in the pod: %+v", flag, got)
	}
	if taps := podTaps(t, tp); (flag == "--mirror-tap") != (taps > 0) {
		t.Errorf("%s: %d taps attached in the pod", flag, taps)
	}
	for i := range n {
		if body := curlFromClient(t, tp, fmt.Sprintf("http://%s/captured-%d", testenv.PodIP, i)); body != testenv.PodNginxBody {
			t.Errorf("request %d: the client got %q", i, body)
		}
	}
	r := s.wait(t)
	if r.exitCode != 0 {
		t.Fatalf("doppel exec: %s", r)
	}
	for i := range n {
		if want := fmt.Sprintf("request GET /captured-%d from %s:", i, testenv.ClientIP); !strings.Contains(r.stdout, want) {
			t.Errorf("program output lacks %q: %s", want, r)
		}
	}
	// nginx saw the clients themselves: nothing stood in between.
	reqs, err := tp.PodNginxLog()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range reqs {
		if strings.HasPrefix(q.URI, "/captured-") && q.Remote.Addr().String() != testenv.ClientIP {
			t.Errorf("nginx saw %s from %v, want the client %s", q.URI, q.Remote, testenv.ClientIP)
		}
	}
	if taps := podTaps(t, tp); taps != 0 {
		t.Errorf("%d taps left attached in the pod after the session", taps)
	}
}

// Two tap sessions and a filtered steal session on one pod at once: each tap session's program
// gets a copy of every request, the steal session's program only the requests its filter
// matches, and the clients get nginx's answers (or the stealing program's); when one tap
// session ends, the other keeps its tap.
func TestIncomingTapSessionsBeside(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	const n = 3
	a := startSession(t, tp, doppel, []string{"--mirror-tap"}, prog, "-name", "", "-n", fmt.Sprint(n+1))
	b := startSession(t, tp, doppel, []string{"--mirror-tap"}, prog, "-name", "", "-n", fmt.Sprint(2*n+1))
	steal := startSession(t, tp, doppel, []string{"--steal", "--http-header", "X-Dev: alice"}, prog, "-name", "", "-n", "1")
	if taps := podTaps(t, tp); taps < 2 {
		t.Errorf("%d taps attached in the pod with two tap sessions", taps)
	}
	get := func(path string, alice bool) string {
		args := []string{"http://" + testenv.PodIP + path}
		if alice {
			args = append([]string{"-H", "X-Dev: alice"}, args...)
		}
		return curlFromClient(t, tp, args...)
	}
	for i := range n {
		if body := get(fmt.Sprintf("/both-%d", i), false); body != testenv.PodNginxBody {
			t.Errorf("request %d: the client got %q", i, body)
		}
	}
	if body := get("/alice", true); body != "program: /alice\n" {
		t.Errorf("alice's request got %q, want the stealing program's answer", body)
	}
	ra := a.wait(t)
	for i := range n {
		if body := get(fmt.Sprintf("/b-only-%d", i), false); body != testenv.PodNginxBody {
			t.Errorf("request %d after a ended: the client got %q", i, body)
		}
	}
	rb, rs := b.wait(t), steal.wait(t)
	for name, r := range map[string]result{"a": ra, "b": rb, "steal": rs} {
		if r.exitCode != 0 {
			t.Errorf("session %s: %s", name, r)
		}
	}
	for i := range n {
		for name, r := range map[string]result{"a": ra, "b": rb} {
			if want := fmt.Sprintf("request GET /both-%d from %s:", i, testenv.ClientIP); !strings.Contains(r.stdout, want) {
				t.Errorf("session %s's program lacks %q: %s", name, want, r)
			}
		}
		if want := fmt.Sprintf("request GET /b-only-%d from", i); !strings.Contains(rb.stdout, want) {
			t.Errorf("session b's program lacks %q after a ended: %s", want, rb)
		}
	}
	if !strings.Contains(rs.stdout, "request GET /alice from") || strings.Contains(rs.stdout, "/both-") {
		t.Errorf("the stealing program got other requests than alice's: %s", rs)
	}
	for name, r := range map[string]result{"a": ra, "b": rb} {
		if !strings.Contains(r.stdout, "request GET /alice from") {
			t.Errorf("session %s's tap missed alice's request, which another session stole: %s", name, r)
		}
	}
	if taps := podTaps(t, tp); taps != 0 {
		t.Errorf("%d taps left attached in the pod after the sessions", taps)
	}
}

// podTaps counts the doppel taps attached to the pod's interfaces.
func podTaps(t *testing.T, tp *testenv.Topology) int {
	t.Helper()
	fd, err := unix.Open("/run/netns/"+tp.PodNetNS(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	n, err := capture.TapPrograms(fd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Port mapping: the program listens on local port 8080 and receives the pod's port 80.
func TestIncomingPortMap(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s := startSession(t, tp, doppel, []string{"--steal", "--port-map", "8080:80"}, prog, "-name", "", "-listen", ":8080", "-n", "1")
	if got := podSessions(t, tp); len(got) != 1 || fmt.Sprint(got[0].Ports) != "[80]" {
		t.Errorf("doppel tables in the pod: %+v, want one session on port 80", got)
	}
	if body := curlFromClient(t, tp, "http://"+testenv.PodIP+"/mapped"); body != "program: /mapped\n" {
		t.Errorf("port 80 answered %q, want the program listening on 8080", body)
	}
	if r := s.wait(t); r.exitCode != 0 || !strings.Contains(r.stdout, "listening on [::]:8080") ||
		!strings.Contains(r.stdout, "request GET /mapped from "+testenv.ClientIP) || !strings.Contains(r.stdout, " to "+testenv.PodIP+":80") {
		t.Errorf("doppel exec: %s", r)
	}
}

// An ignored port, and --no-incoming: the program listens on this machine only; nothing is
// written in the pod and the pod's clients keep getting nginx.
func TestIncomingIgnoredAndOff(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	// The program runs as nobody: an ignored port stays the program's own business, so it uses
	// one it may bind.
	for _, flags := range [][]string{{"--steal", "--ignore-port", "8081"}, {"--steal", "--no-incoming"}} {
		s := startSession(t, tp, doppel, flags, prog, "-name", "", "-listen", "127.0.0.1:8081")
		if got := podSessions(t, tp); len(got) != 0 {
			t.Errorf("%v: doppel tables in the pod: %+v", flags, got)
		}
		if body := curlFromClient(t, tp, "http://"+testenv.PodIP+"/"); body != testenv.PodNginxBody {
			t.Errorf("%v: the pod's port 80 answered %q, want nginx", flags, body)
		}
		if r := run(tp.InClient(context.Background(), "curl", "-sS", "--max-time", "2", "http://"+testenv.PodIP+":8081/")); r.exitCode == 0 {
			t.Errorf("%v: the pod's port 8081 answered: %s", flags, r)
		}
		// The program really listens on this machine, on the port it asked for.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := run(tp.InLaptop(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:8081/local"))
		cancel()
		if r.stdout != "program: /local\n" {
			t.Errorf("%v: the program on 127.0.0.1:8081 in the laptop: %s", flags, r)
		}
		if !strings.Contains(s.output(), "listening on 127.0.0.1:8081") {
			t.Errorf("%v: program output: %s", flags, s.output())
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.wait(t)
	}
}

// A port the kernel picked (listen on port 0) is nobody's service port: it is not subscribed.
func TestIncomingEphemeralPortStaysLocal(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s := startSession(t, tp, doppel, []string{"--steal"}, prog, "-name", "", "-listen", "127.0.0.1:0")
	if got := podSessions(t, tp); len(got) != 0 {
		t.Errorf("an ephemeral port was subscribed: %+v", got)
	}
	if strings.Contains(s.stderrText(), "receiving the target's incoming traffic") {
		t.Errorf("doppel says it receives traffic for an ephemeral port:\n%s", s.stderrText())
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait(t)
}
