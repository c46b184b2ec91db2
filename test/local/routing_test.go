package local_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

// pyTCPLine connects to HOST PORT over TCP, sends the line MSG and prints the line it gets
// back (the echo servers answer "echo:MSG").
const pyTCPLine = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(sys.argv[3].encode() + b"\n")
print(s.makefile().readline(), end="")
`

// curlExitConnect is curl's exit status for "Failed to connect to host": the name resolved,
// the connection did not get through.
const curlExitConnect = 7

// TestDoppelExecRouting checks the routing rules: --local-* keep matching connections on this
// machine (where the laptop has no route to the cluster), --remote-* send them out from the
// target even when they are loopback, and remote wins over local.
func TestDoppelExecRouting(t *testing.T) {
	tp, doppel := setup(t)
	curl := []string{"curl", "-sS", "--max-time", "5", "http://" + testenv.NginxName + "/"}
	sidecarPort := strconv.Itoa(testenv.SidecarPort)
	sidecar := []string{"/usr/bin/python3", "-c", pyTCPLine, "127.0.0.1", sidecarPort, "hello-sidecar"}
	echoTCP := []string{"/usr/bin/python3", "-c", pyTCPLine, testenv.EchoName, strconv.Itoa(testenv.EchoPort), "hello-echo"}
	resolvetcp := testenv.BuildGo(t, "./test/local/testdata/resolvetcp")

	// The sidecar listens on the pod's loopback only: the same program reaches it in the pod
	// and is refused in the laptop.
	t.Run("sidecar-baseline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		argv := testenv.AsNobody(sidecar...)
		out, err := tp.InPod(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil || string(out) != "echo:hello-sidecar\n" {
			t.Errorf("sidecar from the pod = %q, %v; want its echo", out, err)
		}
		var stdout, stderr bytes.Buffer
		cmd := tp.InLaptop(ctx, argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "ConnectionRefusedError") {
			t.Errorf("sidecar port from the laptop: want ConnectionRefusedError, got %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
		}
	})

	for _, c := range []struct {
		name       string
		flags      []string
		argv       []string
		wantExit   int
		wantStdout []string // substrings of stdout
		wantStderr string   // a substring of stderr
	}{
		// The connection stays on the laptop, which has no route: curl fails to connect
		// (exit 7), while the name still resolves through the target's nameserver.
		{"local-cidr", []string{"--local-cidr", "10.96.0.0/16"}, curl, curlExitConnect, nil, "Failed to connect"},
		{"local-port", []string{"--local-port", "80"}, curl, curlExitConnect, nil, "Failed to connect"},
		{"local-port/other-port-goes-out", []string{"--local-port", "80"}, echoTCP, 0, []string{"echo:hello-echo\n"}, ""},
		// nginx.shop.svc.cluster.local is learned from the DNS answer curl got.
		{"local-host", []string{"--local-host", "nginx.*"}, curl, curlExitConnect, nil, "Failed to connect"},
		{"local-host/other-name-goes-out", []string{"--local-host", "nginx.*"}, echoTCP, 0, []string{"echo:hello-echo\n"}, ""},
		// Loopback stays local by default: nothing listens on the laptop's port.
		{"loopback-stays-local", nil, sidecar, 1, nil, "ConnectionRefusedError"},
		{"remote-cidr-loopback", []string{"--remote-cidr", "127.0.0.1/32"}, sidecar, 0, []string{"echo:hello-sidecar\n"}, ""},
		{"remote-wins-over-local", []string{"--local-cidr", "10.96.0.0/16", "--remote-cidr", testenv.NginxIP + "/32"}, curl, 0, []string{testenv.NginxBody}, ""},
		{"remote-loopback-wins-over-local", []string{"--local-cidr", "127.0.0.0/8", "--remote-cidr", "127.0.0.1/32"}, sidecar, 0, []string{"echo:hello-sidecar\n"}, ""},
		// The target's nameservers are reached from the target even with --no-outgoing, over
		// TCP as over UDP.
		{"no-outgoing/dns-over-tcp", []string{"--no-outgoing"}, []string{resolvetcp, "-name", testenv.NginxName}, 0,
			[]string{"dns over tcp via " + testenv.DNSIP + ":53\n", "resolved nginx: " + testenv.NginxIP + "\n"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runDoppel(t, tp, doppel, c.flags, nil, c.argv...)
			if r.exitCode != c.wantExit {
				t.Fatalf("doppel exec %v %v: want exit %d; got %v", c.flags, c.argv, c.wantExit, r)
			}
			if m := missing(r.stdout, c.wantStdout); len(m) > 0 {
				t.Errorf("doppel exec %v %v: stdout lacks %q: %v", c.flags, c.argv, m, r)
			}
			if !strings.Contains(r.stderr, c.wantStderr) {
				t.Errorf("doppel exec %v %v: stderr lacks %q: %v", c.flags, c.argv, c.wantStderr, r)
			}
			if c.wantExit != 0 && strings.Contains(r.stdout, testenv.NginxBody) {
				t.Errorf("doppel exec %v %v reached nginx: %v", c.flags, c.argv, r)
			}
		})
	}
}
