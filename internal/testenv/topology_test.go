package testenv_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestTopology checks that a topology comes up as documented and that its cleanup leaves
// nothing behind.
func TestTopology(t *testing.T) {
	testenv.Privileged(t)

	var tp *testenv.Topology
	var pids []int
	t.Run("up", func(t *testing.T) {
		tp = testenv.NewTopology(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()

		pids = append(pids, tp.PodPID())

		out, err := tp.InPod(ctx, "hostname").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != testenv.PodHostname {
			t.Errorf("hostname in pod = %q, %v; want %s", out, err, testenv.PodHostname)
		}
		out, err = tp.InPod(ctx, "cat", "/etc/resolv.conf").CombinedOutput()
		if err != nil || string(out) != testenv.PodResolvConf {
			t.Errorf("pod resolv.conf = %q, %v", out, err)
		}
		out, err = tp.InLaptop(ctx, "ip", "-o", "addr").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr in laptop: %v: %s", err, out)
		}
		for _, want := range []string{"127.0.0.1/8", "::1/128"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("laptop addresses lack %s:\n%s", want, out)
			}
		}
		if strings.Count(strings.TrimSpace(string(out)), "\n") != 1 {
			t.Errorf("laptop has more than loopback:\n%s", out)
		}
		out, err = tp.InPod(ctx, "ip", "-o", "addr").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr in pod: %v: %s", err, out)
		}
		for _, want := range []string{testenv.PodIP + "/24", testenv.PodIP6 + "/64"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("pod addresses lack %s:\n%s", want, out)
			}
		}
		out, err = tp.InPod(ctx, "ip", "-6", "route", "show", "default").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "via "+testenv.ClusterGatewayIP6) {
			t.Errorf("pod IPv6 default route = %q, %v; want via %s", out, err, testenv.ClusterGatewayIP6)
		}
		out, err = tp.InLaptop(ctx, "ip", "route").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("laptop routes = %q, %v; want none", out, err)
		}
		environ, err := os.ReadFile("/proc/" + strconv.Itoa(tp.PodPID()) + "/environ")
		if err != nil || !strings.Contains(string(environ), "POD_NAME="+testenv.PodHostname+"\x00") {
			t.Errorf("pod environ = %q, %v", environ, err)
		}
		out, err = tp.InClient(ctx, "ip", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr in client: %v: %s", err, out)
		}
		for _, want := range []string{testenv.ClientIP + "/24", testenv.ClientIP6 + "/64"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("client addresses lack %s:\n%s", want, out)
			}
		}
		for _, ns := range []string{tp.ClusterNetNS(), tp.PodNetNS(), tp.LaptopNetNS(), tp.ClientNetNS()} {
			pids = append(pids, pidsInNetNS(t, ns)...)
		}
	})
	if tp == nil {
		t.Fatal("no topology")
	}
	for _, ns := range []string{tp.ClusterNetNS(), tp.PodNetNS(), tp.LaptopNetNS(), tp.ClientNetNS()} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
		if _, err := os.Stat("/etc/netns/" + ns); err == nil {
			t.Errorf("/etc/netns/%s left behind", ns)
		}
	}
	if _, err := os.Stat(tp.Dir()); err == nil {
		t.Errorf("%s left behind", tp.Dir())
	}
	for _, pid := range pids {
		if testenv.Alive(pid, "") {
			t.Errorf("pid %d left behind", pid)
		}
	}
	ps, err := testenv.Processes()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if strings.Contains(p.Cmdline, tp.ID()) {
			t.Errorf("process %d (%s) left behind", p.PID, p.Cmdline)
		}
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), tp.ID()) {
		t.Errorf("ip netns list still shows %s:\n%s", tp.ID(), out)
	}
}

// pidsInNetNS returns the processes in the named network namespace.
func pidsInNetNS(t *testing.T, ns string) []int {
	t.Helper()
	var want syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &want); err != nil {
		t.Fatal(err)
	}
	ps, err := testenv.Processes()
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range ps {
		var s syscall.Stat_t
		if err := syscall.Stat("/proc/"+strconv.Itoa(p.PID)+"/ns/net", &s); err == nil && s.Dev == want.Dev && s.Ino == want.Ino {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// TestTopologyIncoming checks the pod's incoming side: the client namespace reaches the pod's
// own nginx (HTTP/1.1 and h2c, IPv4 and IPv6) and echo servers through the cluster, nginx sees
// the client's address and logs every request, and the laptop reaches none of it.
func TestTopologyIncoming(t *testing.T) {
	testenv.Privileged(t)
	tp := testenv.NewTopology(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pod4 := netip.AddrPortFrom(netip.MustParseAddr(testenv.PodIP), testenv.PodNginxPort).String()
	pod6 := netip.AddrPortFrom(netip.MustParseAddr(testenv.PodIP6), testenv.PodNginxPort).String()
	curl := func(args ...string) []byte {
		t.Helper()
		argv := append([]string{"-sS", "-g", "--max-time", "10"}, args...)
		var stderr bytes.Buffer
		cmd := tp.InClient(ctx, "curl", argv...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("curl %s in client: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out
	}
	requests := 0 // that reach the pod's nginx

	for _, c := range []struct {
		hostport string
		client   string
	}{{pod4, testenv.ClientIP}, {pod6, testenv.ClientIP6}} {
		if out := curl("http://" + c.hostport + "/"); string(out) != testenv.PodNginxBody {
			t.Errorf("GET http://%s/ from client = %q, want %q", c.hostport, out, testenv.PodNginxBody)
		}
		out := curl("http://" + c.hostport + testenv.PodWhoamiPath)
		seen, err := netip.ParseAddrPort(strings.TrimSuffix(string(out), "\n"))
		if err != nil || seen.Addr().String() != c.client || seen.Port() == 0 || !strings.HasSuffix(string(out), "\n") {
			t.Errorf("GET http://%s%s from client = %q (%v), want %s:<port>", c.hostport, testenv.PodWhoamiPath, out, err, c.client)
		}
		requests += 2
	}
	big := curl("http://" + pod4 + testenv.PodBigPath)
	requests++
	if want := testenv.PodBigBody(); !bytes.Equal(big, want) || len(want) != testenv.PodBigSize {
		t.Errorf("GET %s from client: %d bytes, want the %d bytes of PodBigBody (%d); first difference at %d",
			testenv.PodBigPath, len(big), len(want), testenv.PodBigSize, firstDiff(big, want))
	}

	// h2c with prior knowledge on PodH2Port.
	for _, ip := range []string{testenv.PodIP, testenv.PodIP6} {
		url := "http://" + netip.AddrPortFrom(netip.MustParseAddr(ip), testenv.PodH2Port).String() + "/"
		out := curl("--http2-prior-knowledge", "-w", "%{http_version}", url)
		requests++
		if want := testenv.PodNginxBody + "2"; string(out) != want {
			t.Errorf("curl --http2-prior-knowledge %s from client = %q, want %q (body and HTTP version)", url, out, want)
		}
	}

	// A connection made by DialClient: nginx sees exactly its local address.
	conn, err := tp.DialClient(ctx, "tcp", pod4)
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().String()
	if !strings.HasPrefix(local, testenv.ClientIP+":") {
		t.Errorf("DialClient local address %s, want %s:<port>", local, testenv.ClientIP)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", testenv.PodWhoamiPath)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read whoami response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	conn.Close()
	requests++
	if err != nil || string(body) != local+"\n" {
		t.Errorf("whoami over DialClient = %q, %v; want %q", body, err, local+"\n")
	}

	// The echo servers on PodEchoPort, over IPv4 and IPv6.
	for _, ip := range []string{testenv.PodIP, testenv.PodIP6} {
		addr := netip.AddrPortFrom(netip.MustParseAddr(ip), testenv.PodEchoPort).String()
		conn, err := tp.DialClient(ctx, "tcp", addr)
		if err != nil {
			t.Errorf("echo: %v", err)
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		for _, line := range []string{"hello", "second line"} {
			fmt.Fprintf(conn, "%s\n", line)
			got, err := r.ReadString('\n')
			if want := "echo:" + line + "\n"; err != nil || got != want {
				t.Errorf("echo %s answered %q, %v; want %q", addr, got, err, want)
			}
		}
		conn.Close()
	}

	// The client resolves and reaches the cluster's services like a pod.
	if out := curl("http://" + testenv.NginxName + "/"); string(out) != testenv.NginxBody {
		t.Errorf("GET http://%s/ from client = %q, want %q", testenv.NginxName, out, testenv.NginxBody)
	}

	// The pod's servers are in the pod process's network namespace, on PodIP and PodIP6 only.
	out, err := tp.InPod(ctx, "ss", "-Hltn").CombinedOutput()
	if err != nil {
		t.Fatalf("ss in pod: %v: %s", err, out)
	}
	for _, port := range []int{testenv.PodNginxPort, testenv.PodH2Port, testenv.PodEchoPort} {
		for _, ip := range []string{testenv.PodIP, "[" + testenv.PodIP6 + "]"} {
			if want := ip + ":" + strconv.Itoa(port); !strings.Contains(string(out), want+" ") {
				t.Errorf("no listener on %s in the pod process's namespace:\n%s", want, out)
			}
		}
	}
	if strings.Contains(string(out), "127.0.0.1:80 ") || strings.Contains(string(out), "*:80 ") || strings.Contains(string(out), "0.0.0.0:80 ") {
		t.Errorf("something listens on the pod's port 80 beyond PodIP and PodIP6:\n%s", out)
	}
	if out, err := tp.InPod(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1/").CombinedOutput(); err == nil {
		t.Errorf("GET http://127.0.0.1/ in the pod answered %q; want nothing listening", out)
	}

	// The laptop reaches neither the pod nor the client.
	for _, url := range []string{"http://" + pod4 + "/", "http://" + pod6 + "/", "http://" + testenv.ClientIP + "/"} {
		if out, err := tp.InLaptop(ctx, "curl", "-sS", "-g", "--max-time", "3", url).CombinedOutput(); err == nil {
			t.Errorf("GET %s from the laptop answered %q; want unreachable", url, out)
		}
	}

	// Every request that reached the pod's nginx is in its log, and nothing else.
	got, err := tp.WaitPodNginxRequests(ctx, requests)
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := tp.PodNginxLog()
	if err != nil {
		t.Fatal(err)
	}
	if got != requests || len(reqs) != requests {
		t.Errorf("pod nginx counted %d requests (log has %d), want %d:\n%+v", got, len(reqs), requests, reqs)
	}
	var h2, big6 int
	for _, r := range reqs {
		if a := r.Remote.Addr().String(); a != testenv.ClientIP && a != testenv.ClientIP6 {
			t.Errorf("pod nginx logged a request from %s: %+v", a, r)
		}
		if r.Status != 200 || r.Method != "GET" {
			t.Errorf("pod nginx logged %+v, want GET with status 200", r)
		}
		if r.ServerPort == testenv.PodH2Port && r.Protocol == "HTTP/2.0" {
			h2++
		}
		if r.URI == testenv.PodBigPath && r.Bytes == testenv.PodBigSize {
			big6++
		}
	}
	if h2 != 2 || big6 != 1 {
		t.Errorf("pod nginx log has %d HTTP/2.0 requests on %d (want 2) and %d full %s (want 1):\n%+v", h2, testenv.PodH2Port, big6, testenv.PodBigPath, reqs)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
