package local_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"doppel.dev/doppel/internal/testenv"
)

// clientCase is a program that, run in the pod's network namespace, reaches a service of the
// test cluster by its short name, and fails in the laptop namespace.
type clientCase struct {
	name string
	argv []string
	want []string // substrings of stdout when it works
}

const pyHTTP = `
import socket, urllib.request
addrs = sorted({a[4][0] for a in socket.getaddrinfo("nginx", 80, proto=socket.IPPROTO_TCP)})
print("resolved nginx:", " ".join(addrs))
print(urllib.request.urlopen("http://nginx/", timeout=10).read().decode(), end="")
`

const pyUDP = `
import socket
ip = socket.getaddrinfo("echo", 7, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello-python", (ip, 7))
data, src = s.recvfrom(2048)
assert src == (ip, 7), "answer from %s, want %s" % (src, (ip, 7))
print(data.decode(), "from", "%s:%d" % src)
`

// pyBlockingConnect connects a blocking socket (no timeout) to IP PORT, checks that
// getpeername answers that address, and fetches /whoami.
const pyBlockingConnect = `
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
assert s.gettimeout() is None
s.connect((ip, port))
peer = s.getpeername()
assert peer == (ip, port), "getpeername %s, want %s" % (peer, (ip, port))
print("blocking peer: %s:%d" % peer)
s.sendall(b"GET /whoami HTTP/1.0\r\nHost: doppel-test\r\n\r\n")
resp = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    resp += b
print(resp.split(b"\r\n\r\n", 1)[1].decode(), end="")
`

// pyNonBlockingConnect connects a non-blocking socket to IP PORT: connect_ex must give
// EINPROGRESS, the socket becomes writable with SO_ERROR 0, getpeername answers that address
// and a second connect_ex says it is connected; then it fetches /whoami.
const pyNonBlockingConnect = `
import errno, select, socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setblocking(False)
rc = s.connect_ex((ip, port))
assert rc == errno.EINPROGRESS, "connect_ex: %s, want EINPROGRESS" % errno.errorcode.get(rc, rc)
_, w, _ = select.select([], [s], [], 10)
assert w, "not writable after 10s"
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
assert err == 0, "SO_ERROR %s" % errno.errorcode.get(err, err)
peer = s.getpeername()
assert peer == (ip, port), "getpeername %s, want %s" % (peer, (ip, port))
print("nonblocking: EINPROGRESS, SO_ERROR 0, peer %s:%d" % peer)
# A program that polls its connect by calling it again gets the kernel's answer: EISCONN, which
# CPython's connect_ex reports as 0.
again = s.connect_ex((ip, port))
assert again in (0, errno.EISCONN), "second connect_ex: %s, want EISCONN" % errno.errorcode.get(again, again)
print("second connect: connected")
s.setblocking(True)
s.sendall(b"GET /whoami HTTP/1.0\r\nHost: doppel-test\r\n\r\n")
resp = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    resp += b
print(resp.split(b"\r\n\r\n", 1)[1].decode(), end="")
`

// pyRefused connects to IP PORT where nothing listens, with a blocking and with a
// non-blocking socket, and prints "refused" for each that got ECONNREFUSED. A non-blocking
// connect may report it at once or, after EINPROGRESS, in SO_ERROR.
const pyRefused = `
import errno, select, socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.connect((ip, port))
    sys.exit("blocking connect to %s:%d succeeded" % (ip, port))
except ConnectionRefusedError:
    print("blocking: refused")
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setblocking(False)
rc = s.connect_ex((ip, port))
if rc == errno.EINPROGRESS:
    _, w, _ = select.select([], [s], [], 10)
    assert w, "not writable after 10s"
    rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    how = "after EINPROGRESS"
else:
    how = "at once"
assert rc == errno.ECONNREFUSED, "non-blocking connect: %s, want ECONNREFUSED" % errno.errorcode.get(rc, rc)
print("nonblocking: refused", how)
`

// pyUDPMsg exchanges a datagram with the echo server by sendmsg (with an address) and
// recvmsg, checking the answer's source.
const pyUDPMsg = `
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendmsg([b"hello-", b"sendmsg"], [], 0, (ip, port))
data, anc, flags, src = s.recvmsg(2048)
assert src == (ip, port), "answer from %s, want %s" % (src, (ip, port))
print(data.decode(), "from", "%s:%d" % src)
`

// pyDualStack connects an AF_INET6 socket to the IPv4-mapped form of an IPv4 address
// (::ffff:a.b.c.d), checks getpeername and fetches /whoami.
const pyDualStack = `
import socket, sys
ip, port = "::ffff:" + sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(10)
s.connect((ip, port))
peer = s.getpeername()[:2]
assert peer == (ip, port), "getpeername %s, want %s" % (peer, (ip, port))
print("peer: [%s]:%d" % peer)
s.sendall(b"GET /whoami HTTP/1.0\r\nHost: doppel-test\r\n\r\n")
resp = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    resp += b
print(resp.split(b"\r\n\r\n", 1)[1].decode(), end="")
`

// pyDualStackUDP exchanges a datagram with the echo server from an AF_INET6 socket, sent to
// the IPv4-mapped form of its address, checking the answer's source.
const pyDualStackUDP = `
import socket, sys
ip, port = "::ffff:" + sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello-mapped", (ip, port))
data, src = s.recvfrom(2048)
assert src[:2] == (ip, port), "answer from %s, want %s" % (src, (ip, port))
print(data.decode(), "from", "[%s]:%d" % src[:2])
`

// clientCases are the programs of the test matrix. Python is Debian's /usr/bin/python3:
// the unprivileged uid cannot read other installations.
func clientCases(t *testing.T) []clientCase {
	resolvefetch := testenv.BuildGo(t, "./test/local/testdata/resolvefetch")
	udpclient := testenv.BuildGo(t, "./test/local/testdata/udpclient")
	httpget := testenv.BuildGo(t, "./test/local/testdata/httpget")
	resolvetcp := testenv.BuildGo(t, "./test/local/testdata/resolvetcp")
	echoPort := strconv.Itoa(testenv.EchoPort)
	echo := net.JoinHostPort(testenv.EchoIP, echoPort)
	echo6 := net.JoinHostPort(testenv.EchoIP6, echoPort)
	nginx6 := net.JoinHostPort(testenv.NginxIP6, "80")
	return []clientCase{
		{
			name: "curl",
			argv: []string{"curl", "-sS", "--max-time", "10", "http://nginx/"},
			want: []string{testenv.NginxBody},
		},
		{
			name: "curl-source-address",
			argv: []string{"curl", "-sS", "--max-time", "10", "http://nginx" + testenv.NginxWhoamiPath},
			want: []string{testenv.PodIP + "\n"},
		},
		{
			name: "go-static-resolve-fetch",
			argv: []string{resolvefetch, "-name", "nginx"},
			want: []string{"resolved nginx: " + testenv.NginxIP + "\n", testenv.NginxBody},
		},
		{
			name: "python-getaddrinfo-urllib",
			argv: []string{"/usr/bin/python3", "-c", pyHTTP},
			want: []string{"resolved nginx: " + testenv.NginxIP + "\n", testenv.NginxBody},
		},
		{
			name: "getent-hosts",
			argv: []string{"getent", "hosts", "nginx"},
			want: []string{testenv.NginxIP},
		},
		{
			name: "getent-pod-etc-hosts",
			argv: []string{"getent", "hosts", testenv.PodHostsName},
			want: []string{testenv.NginxIP},
		},
		{
			name: "go-static-udp-echo",
			argv: []string{udpclient, "-name", "echo", "-port", fmt.Sprint(testenv.EchoPort)},
			want: []string{"connected: echo:hello-connected\n", "unconnected: echo:hello-unconnected from " + echo + "\n"},
		},
		{
			name: "python-udp-sendto-recvfrom",
			argv: []string{"/usr/bin/python3", "-c", pyUDP},
			want: []string{"echo:hello-python from " + echo + "\n"},
		},
		{
			name: "sh-chain",
			argv: []string{"sh", "-c", "getent hosts nginx && curl -sS --max-time 10 http://nginx/ | head -c 100"},
			want: []string{testenv.NginxIP, testenv.NginxBody},
		},
		{
			name: "curl-ipv6-literal",
			argv: []string{"curl", "-sS", "-g", "--max-time", "10", "http://" + nginx6 + testenv.NginxWhoamiPath},
			want: []string{testenv.PodIP6 + "\n"},
		},
		{
			name: "curl-6-aaaa-name",
			argv: []string{"curl", "-6", "-sS", "--max-time", "10", "http://" + testenv.Nginx6Name + "/"},
			want: []string{testenv.NginxBody},
		},
		{
			name: "go-static-tcp6",
			argv: []string{httpget, "-network", "tcp6", "-addr", nginx6, "-path", testenv.NginxWhoamiPath},
			want: []string{"peer: " + nginx6 + "\n", testenv.PodIP6 + "\n"},
		},
		{
			name: "go-static-udp6-echo",
			argv: []string{udpclient, "-family", "6", "-name", testenv.Echo6Name, "-port", echoPort},
			want: []string{"connected: echo:hello-connected\n", "unconnected: echo:hello-unconnected from " + echo6 + "\n"},
		},
		{
			name: "python-dualstack-v4mapped-tcp",
			argv: []string{"/usr/bin/python3", "-c", pyDualStack, testenv.NginxIP, "80"},
			want: []string{"peer: [::ffff:" + testenv.NginxIP + "]:80\n", testenv.PodIP + "\n"},
		},
		{
			name: "python-dualstack-v4mapped-udp",
			argv: []string{"/usr/bin/python3", "-c", pyDualStackUDP, testenv.EchoIP, echoPort},
			want: []string{"echo:hello-mapped from [::ffff:" + testenv.EchoIP + "]:" + echoPort + "\n"},
		},
		{
			name: "python-blocking-connect-getpeername",
			argv: []string{"/usr/bin/python3", "-c", pyBlockingConnect, testenv.NginxIP, "80"},
			want: []string{"blocking peer: " + testenv.NginxIP + ":80\n", testenv.PodIP + "\n"},
		},
		{
			name: "python-nonblocking-connect",
			argv: []string{"/usr/bin/python3", "-c", pyNonBlockingConnect, testenv.NginxIP, "80"},
			want: []string{"nonblocking: EINPROGRESS, SO_ERROR 0, peer " + testenv.NginxIP + ":80\n", "second connect: connected\n", testenv.PodIP + "\n"},
		},
		{
			// Nothing listens on port 81 of the nginx service: the cluster refuses; the laptop
			// has no route at all.
			name: "python-connect-refused",
			argv: []string{"/usr/bin/python3", "-c", pyRefused, testenv.NginxIP, "81"},
			want: []string{"blocking: refused\n", "nonblocking: refused"},
		},
		{
			name: "python-udp-sendmsg-recvmsg",
			argv: []string{"/usr/bin/python3", "-c", pyUDPMsg, testenv.EchoIP, echoPort},
			want: []string{"echo:hello-sendmsg from " + echo + "\n"},
		},
		{
			name: "go-static-dns-over-tcp",
			argv: []string{resolvetcp, "-name", testenv.NginxName},
			want: []string{"dns over tcp via " + testenv.DNSIP + ":53\n", "resolved nginx: " + testenv.NginxIP + "\n"},
		},
	}
}

// missing returns the wanted substrings that out lacks.
func missing(out string, want []string) []string {
	var m []string
	for _, w := range want {
		if !strings.Contains(out, w) {
			m = append(m, w)
		}
	}
	return m
}
