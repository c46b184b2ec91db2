package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// podBigLine is the length of each line of PodBigBody: "%06d " (7 bytes), 56 pattern bytes and
// a newline. PodBigSize is a whole number of lines.
const podBigLine = 64

const podBigPattern = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// PodBigBody returns what the pod's own nginx answers on PodBigPath: PodBigSize bytes in lines
// of 64, each starting with its six-digit line number followed by a pattern shifted by one per
// line, so that a lost, repeated or reordered segment shows up as a difference, and its offset
// names the line.
func PodBigBody() []byte {
	b := make([]byte, 0, PodBigSize)
	for i := 0; len(b) < PodBigSize; i++ {
		b = fmt.Appendf(b, "%06d ", i)
		for j := 0; j < podBigLine-8; j++ {
			b = append(b, podBigPattern[(i+j)%len(podBigPattern)])
		}
		b = append(b, '\n')
	}
	return b
}

// podNginxDir is the pod nginx's own directory under the topology's: configuration, pid file,
// temporary directories, document root and access log.
func (tp *Topology) podNginxDir() string { return filepath.Join(tp.dir, "pod-nginx") }

// startPodServers starts the pod's own services (its nginx and the echo servers on
// PodEchoPort) and returns the sockets to wait for.
func (tp *Topology) startPodServers(echo string) []listenWait {
	tp.t.Helper()
	dir := tp.podNginxDir()
	for _, sub := range []string{"www", "body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			tp.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "www", strings.TrimPrefix(PodBigPath, "/")), PodBigBody(), 0o644); err != nil {
		tp.t.Fatal(err)
	}
	// Fields are separated by tabs, which nginx's default log escaping turns into \x09 inside a
	// field, so a field never holds one.
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 512; }
http {
    log_format pod "$remote_addr\t$remote_port\t$server_port\t$request_method\t$request_uri\t$server_protocol\t$status\t$body_bytes_sent";
    access_log %[1]s/access.log pod;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    # IPv6 client addresses in brackets, so that /whoami reads as an address and port.
    map $remote_addr $pod_whoami_host {
        "~:"    "[$remote_addr]";
        default $remote_addr;
    }
    server {
        listen %[2]s:%[4]d;
        listen [%[3]s]:%[4]d;
        listen %[2]s:%[5]d http2;
        listen [%[3]s]:%[5]d http2;
        root %[1]s/www;
        default_type text/plain;
        location = %[6]s { return 200 "$pod_whoami_host:$remote_port\n"; }
        location = %[7]s { default_type application/octet-stream; }
        location / { return 200 %[8]q; }
    }
}
`, dir, PodIP, PodIP6, PodNginxPort, PodH2Port, PodWhoamiPath, PodBigPath, PodNginxBody)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		tp.t.Fatal(err)
	}
	tp.start("podnginx", nil, "ip", "netns", "exec", tp.pod, "nginx", "-p", dir, "-c", confPath, "-e", "stderr")

	echo4 := netip.AddrPortFrom(netip.MustParseAddr(PodIP), PodEchoPort).String()
	echo6 := netip.AddrPortFrom(netip.MustParseAddr(PodIP6), PodEchoPort).String()
	tp.start("podecho", nil, "ip", "netns", "exec", tp.pod, echo, "-addr", echo4)
	tp.start("podecho6", nil, "ip", "netns", "exec", tp.pod, echo, "-addr", echo6)

	var waits []listenWait
	for _, ip := range []string{PodIP, PodIP6} {
		for _, port := range []uint16{PodNginxPort, PodH2Port} {
			waits = append(waits, listenWait{"podnginx", "tcp", netip.AddrPortFrom(netip.MustParseAddr(ip), port).String()})
		}
	}
	return append(waits,
		listenWait{"podecho", "tcp", echo4}, listenWait{"podecho", "udp", echo4},
		listenWait{"podecho6", "tcp", echo6}, listenWait{"podecho6", "udp", echo6})
}

// PodNginxRequest is one line of the pod nginx's access log: one request it served (or
// rejected, such as a malformed one with status 400).
type PodNginxRequest struct {
	Remote     netip.AddrPort // the client's address and port as nginx saw them
	ServerPort int            // PodNginxPort or PodH2Port
	Method     string         // "-" when nginx could not read one
	// URI is the request URI as sent, with nginx's log escaping: '"', '\', control characters
	// and bytes above 0x7e appear as \xXX.
	URI      string
	Protocol string // "HTTP/1.1", "HTTP/2.0", ...
	Status   int
	Bytes    int64 // body bytes sent
}

// PodNginxLog returns the requests the pod's own nginx has logged so far, oldest first. nginx
// writes a request's line just after sending its response, so a client may see the response
// a moment before the line is there: use WaitPodNginxRequests to wait for a known number.
func (tp *Topology) PodNginxLog() ([]PodNginxRequest, error) {
	path := filepath.Join(tp.podNginxDir(), "access.log")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pod nginx access log: %w", err)
	}
	// Only whole lines: what follows the last newline may be a line nginx is still writing.
	text := string(data)
	text = text[:strings.LastIndexByte(text, '\n')+1]
	var reqs []PodNginxRequest
	for i, line := range strings.SplitAfter(text, "\n") {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		r, err := parsePodNginxLine(line)
		if err != nil {
			return nil, fmt.Errorf("pod nginx access log %s line %d: %w", path, i+1, err)
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

func parsePodNginxLine(line string) (PodNginxRequest, error) {
	f := strings.Split(line, "\t")
	if len(f) != 8 {
		return PodNginxRequest{}, fmt.Errorf("%d fields, want 8: %q", len(f), line)
	}
	addr, err := netip.ParseAddr(f[0])
	if err != nil {
		return PodNginxRequest{}, fmt.Errorf("remote address: %w", err)
	}
	port, err1 := strconv.ParseUint(f[1], 10, 16)
	serverPort, err2 := strconv.Atoi(f[2])
	status, err3 := strconv.Atoi(f[6])
	n, err4 := strconv.ParseInt(f[7], 10, 64)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return PodNginxRequest{}, fmt.Errorf("%q: %w", line, err)
		}
	}
	return PodNginxRequest{
		Remote:     netip.AddrPortFrom(addr, uint16(port)),
		ServerPort: serverPort,
		Method:     f[3],
		URI:        f[4],
		Protocol:   f[5],
		Status:     status,
		Bytes:      n,
	}, nil
}

// PodNginxRequests returns how many requests the pod's own nginx has logged so far, on both
// ports: the denominator of "requests the program received / requests nginx served". See
// PodNginxLog for the moment a request is counted.
func (tp *Topology) PodNginxRequests() (int, error) {
	reqs, err := tp.PodNginxLog()
	return len(reqs), err
}

// WaitPodNginxRequests waits until the pod's own nginx has logged at least n requests, or ctx
// ends, and returns the count it saw last.
func (tp *Topology) WaitPodNginxRequests(ctx context.Context, n int) (int, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := tp.PodNginxRequests()
		if err != nil || got >= n {
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("wait for %d pod nginx requests (have %d): %w", n, got, ctx.Err())
		case <-tick.C:
		}
	}
}
