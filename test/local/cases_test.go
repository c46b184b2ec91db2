package local_test

import (
	"fmt"
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

// clientCases are the programs of the test matrix. Python is Debian's /usr/bin/python3:
// the unprivileged uid cannot read other installations.
func clientCases(t *testing.T) []clientCase {
	resolvefetch := testenv.BuildGo(t, "./test/local/testdata/resolvefetch")
	udpclient := testenv.BuildGo(t, "./test/local/testdata/udpclient")
	echo := fmt.Sprintf("%s:%d", testenv.EchoIP, testenv.EchoPort)
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
