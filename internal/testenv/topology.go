package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fixed addresses and names of every Topology. Each test has its own namespaces, so the
// addresses repeat without clashing; none of them exists outside those namespaces.
const (
	// ClusterGatewayIP is the cluster namespace's end of the veth pair to the pod (a node).
	ClusterGatewayIP = "10.244.1.1"
	// PodIP is the pod namespace's address (eth0); its default route goes via ClusterGatewayIP.
	PodIP = "10.244.1.5"
	// DNSIP is the cluster DNS service (dnsmasq, UDP and TCP 53), like kube-dns.
	DNSIP = "10.96.0.10"
	// NginxIP is the nginx service's cluster IP (HTTP on port 80).
	NginxIP = "10.96.0.80"
	// EchoIP is the echo service's cluster IP (UDP and TCP on EchoPort).
	EchoIP = "10.96.0.7"
	// EchoPort is the echo service's port for UDP and TCP.
	EchoPort = 7

	// ClusterGatewayIP6, PodIP6, NginxIP6 and EchoIP6 are the IPv6 (ULA) twins of the addresses
	// above: the pod's eth0 has PodIP6/64 with a default route via ClusterGatewayIP6, nginx
	// listens on [::]:80 and a second echo server answers on EchoIP6 port EchoPort.
	ClusterGatewayIP6 = "fd00:10:244:1::1"
	PodIP6            = "fd00:10:244:1::5"
	NginxIP6          = "fd00:10:96::80"
	EchoIP6           = "fd00:10:96::7"

	// ClientGatewayIP is the cluster namespace's end of the veth pair to the client namespace.
	ClientGatewayIP = "10.244.2.1"
	// ClientIP is the client namespace's address (eth0), like a client pod on another node; its
	// default route goes via ClientGatewayIP and the cluster forwards between client and pod.
	ClientIP = "10.244.2.9"
	// ClientGatewayIP6 and ClientIP6 are the IPv6 twins of ClientGatewayIP and ClientIP (/64).
	ClientGatewayIP6 = "fd00:10:244:2::1"
	ClientIP6        = "fd00:10:244:2::9"

	// SidecarPort is where an echo server (like EchoIP's) listens on 127.0.0.1 inside the pod's
	// network namespace, as a sidecar container would; nothing listens there in the laptop.
	SidecarPort = 7070

	// ClusterDomain is the zone dnsmasq serves; names outside it are refused.
	ClusterDomain = "cluster.local"
	// PodNamespace is the Kubernetes namespace the pod and the services live in.
	PodNamespace = "shop"
	// NginxName and EchoName are the services' short names; their full names are
	// <name>.shop.svc.cluster.local.
	NginxName = "nginx"
	EchoName  = "echo"
	// Nginx6Name and Echo6Name are short names with only an AAAA record (NginxIP6, EchoIP6);
	// NginxName and EchoName have only an A record.
	Nginx6Name = "nginx6"
	Echo6Name  = "echo6"

	// PodHostname is the hostname of the pod process (its UTS namespace and /etc/hostname).
	PodHostname = "nginx-7d9c-pod"
	// PodHostsName is a name found only in the pod's /etc/hosts, pointing at NginxIP.
	PodHostsName = "billing-legacy"
	// PodResolvConf is the pod's /etc/resolv.conf.
	PodResolvConf = "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver " + DNSIP + "\noptions ndots:5\n"
	// PodHosts is the pod's /etc/hosts.
	PodHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		PodIP + "\t" + PodHostname + "\n" +
		NginxIP + "\t" + PodHostsName + ".shop.internal " + PodHostsName + "\n"

	// LaptopResolvConf is the laptop's /etc/resolv.conf: a nameserver on loopback where nothing
	// listens, so that name lookups in the laptop namespace fail fast and stay on the machine.
	LaptopResolvConf = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

	// NginxBody is what nginx answers on every path except /whoami.
	NginxBody = "hello from nginx.shop.svc.cluster.local\n"
	// NginxWhoamiPath answers with the client's address as nginx sees it, and a newline.
	NginxWhoamiPath = "/whoami"

	// PodNginxPort is where the pod's own nginx serves HTTP/1.x, on PodIP and PodIP6 only (not on
	// the pod's loopback: 127.0.0.1:80 stays free inside the pod).
	PodNginxPort = 80
	// PodH2Port is where the pod's own nginx serves the same paths as HTTP/2 over cleartext with
	// prior knowledge (h2c, as `curl --http2-prior-knowledge` speaks it), on PodIP and PodIP6.
	PodH2Port = 8080
	// PodNginxBody is what the pod's own nginx answers on every path except PodBigPath and
	// PodWhoamiPath.
	PodNginxBody = "hello from the pod's own nginx\n"
	// PodBigPath answers with PodBigBody(), PodBigSize bytes (application/octet-stream).
	PodBigPath = "/big"
	// PodBigSize is the length of PodBigBody(): 256 KiB, many TCP segments.
	PodBigSize = 256 << 10
	// PodWhoamiPath answers with the client's address and port as the pod's nginx saw them, in
	// the form netip.ParseAddrPort reads ("10.244.2.9:41234", "[fd00:10:244:2::9]:41234"), and a
	// newline.
	PodWhoamiPath = "/whoami"
	// PodEchoPort is where line echo servers listen on PodIP and PodIP6 (TCP and UDP), as the
	// echo service does: each line gets "echo:" and the line back.
	PodEchoPort = 7000

	// NobodyUID and NobodyGID are the unprivileged user the tests run programs as.
	NobodyUID = 65534
	NobodyGID = 65534
)

// PodEnv is the environment of the pod process, as a container runtime would give it.
var PodEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOSTNAME=" + PodHostname,
	"POD_NAME=" + PodHostname,
	"POD_NAMESPACE=" + PodNamespace,
	"SHOP_DB_URL=postgres://db.shop:5432",
	"KUBERNETES_SERVICE_HOST=10.96.0.1",
	"KUBERNETES_SERVICE_PORT=443",
	"NGINX_SERVICE_HOST=" + NginxIP,
	"NGINX_SERVICE_PORT=80",
}

// BaseEnv is the environment of commands made by InLaptop, InPod and InCluster: a plain PATH
// and nothing of the test process (whose PATH may lead to tools an unprivileged uid cannot read).
var BaseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C",
}

// requiredTools are the programs NewTopology and the tests run.
var requiredTools = []string{"ip", "nsenter", "unshare", "setpriv", "sh", "sleep", "hostname", "mount", "umount", "pivot_root", "dnsmasq", "nginx", "curl", "getent"}

// roles are the network namespaces of a Topology, named dpl-<id>-<role>.
var roles = []string{"cluster", "pod", "laptop", "client"}

// Topology is a small cluster made of network namespaces, private to one test:
//
//   - "cluster" (dpl-<id>-cluster): the services. Its loopback holds the cluster IPs, IPv4
//     and IPv6; dnsmasq answers on DNSIP:53 (UDP and TCP) for nginx.shop.svc.cluster.local (A
//     NginxIP), echo.shop.svc.cluster.local (A EchoIP), nginx6.shop.svc.cluster.local (AAAA
//     NginxIP6) and echo6.shop.svc.cluster.local (AAAA EchoIP6); nginx serves NginxBody on
//     NginxIP:80 and [::]:80; echo servers answer on EchoIP:7 and [EchoIP6]:7 (UDP and TCP).
//     Its veth-pod has ClusterGatewayIP/24 and ClusterGatewayIP6/64, its veth-client has
//     ClientGatewayIP/24 and ClientGatewayIP6/64, and it forwards IPv4 and IPv6 between them
//     (ip_forward and all.forwarding are on in this namespace only), like the node network.
//   - "pod" (dpl-<id>-pod): eth0 with PodIP/24 and PodIP6/64, the veth peer of the cluster,
//     default routes via ClusterGatewayIP and ClusterGatewayIP6. The pod process runs here, in
//     its own UTS namespace (hostname PodHostname), with PodEnv as its environment, and in its
//     own mount namespace with a root of its own, as in a container: an overlay of the
//     machine's root file system whose changes stay in the namespace, with the namespace's
//     /proc, /sys and /dev, the machine's /tmp (where test programs are built), PodResolvConf,
//     PodHosts and PodHostname mounted on /etc/resolv.conf, /etc/hosts and /etc/hostname, and
//     the volumes a kubelet would mount: the service account secret at PodSecretDir and the
//     config map at PodConfigDir (read-only, in the atomic writer layout with ..data), the
//     data volume at PodDataDir (PodBigFilePath, symlinks pointing out of it, PodListDir) and
//     the writable PodWritableDir. These mounts exist only in the pod's mount namespace, so
//     none of the paths exists on the machine; the files behind them are under Dir. See
//     /proc/<PodPID>/root and /proc/<PodPID>/mountinfo. A "sidecar" echo server listens on
//     127.0.0.1:SidecarPort here. The pod's own services, the traffic a doppel session
//     intercepts, listen on PodIP and PodIP6 only (nothing listens on the pod's
//     127.0.0.1:80): a second nginx (its own configuration, pid, temporary and log files
//     under Dir) serves PodNginxBody, PodBigPath and PodWhoamiPath on port PodNginxPort, and
//     the same as h2c on PodH2Port, and logs every request it serves (PodNginxLog,
//     PodNginxRequests); echo servers answer lines on PodEchoPort (TCP and UDP).
//   - "client" (dpl-<id>-client): eth0 with ClientIP/24 and ClientIP6/64, the veth peer of the
//     cluster's veth-client, default routes via ClientGatewayIP and ClientGatewayIP6: a client
//     pod on another node, the source of the pod's incoming traffic. It reaches the pod and
//     the cluster IPs, and commands started through InClient get PodResolvConf as
//     /etc/resolv.conf. DialClient opens connections from here in the test process itself.
//   - "laptop" (dpl-<id>-laptop): loopback only (127.0.0.1 and ::1), no routes, and
//     LaptopResolvConf as /etc/resolv.conf for commands started through InLaptop. It reaches
//     neither the pod nor the client.
//
// Nothing is attached to the machine's own network namespace.
type Topology struct {
	t       testing.TB
	id      string
	dir     string
	cluster string
	pod     string
	laptop  string
	client  string
	podPID  int

	namespaces []string // created, to delete
	etcDirs    []string // /etc/netns/<name> created, to remove
	procs      []*started
}

type started struct {
	name string
	cmd  *exec.Cmd
	log  string
}

// NewTopology builds a Topology for t and registers its removal with t.Cleanup. It fails t when
// a step fails; what was made until then is removed all the same.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	for _, tool := range requiredTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install the test dependencies with scripts/deps.sh (make deps)", tool)
		}
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	id := "dpl-" + hex.EncodeToString(b[:])
	tp := &Topology{
		t:       t,
		id:      id,
		cluster: id + "-cluster",
		pod:     id + "-pod",
		laptop:  id + "-laptop",
		client:  id + "-client",
	}
	t.Cleanup(tp.cleanup)

	dir, err := os.MkdirTemp("", id+"-")
	if err != nil {
		t.Fatal(err)
	}
	tp.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tp.writeState(); err != nil {
		t.Fatal(err)
	}

	tp.makeNetwork()
	tp.writeEtc(tp.pod, map[string]string{"resolv.conf": PodResolvConf, "hosts": PodHosts, "hostname": PodHostname + "\n"})
	tp.writeEtc(tp.laptop, map[string]string{"resolv.conf": LaptopResolvConf})
	tp.writeEtc(tp.client, map[string]string{"resolv.conf": PodResolvConf})
	tp.makeVolumes()
	tp.startServices()
	tp.startPod()
	return tp
}

// ID returns the prefix of this topology's names, "dpl-<6 hex digits>".
func (tp *Topology) ID() string { return tp.id }

// Dir returns a world-readable temporary directory owned by the topology, removed with it.
func (tp *Topology) Dir() string { return tp.dir }

// ClusterNetNS, PodNetNS, LaptopNetNS and ClientNetNS return the names of the network
// namespaces (as in `ip netns list`).
func (tp *Topology) ClusterNetNS() string { return tp.cluster }
func (tp *Topology) PodNetNS() string     { return tp.pod }
func (tp *Topology) LaptopNetNS() string  { return tp.laptop }
func (tp *Topology) ClientNetNS() string  { return tp.client }

// PodPID returns the pid of the pod process, the target for `doppel exec --target pid:<pid>`.
func (tp *Topology) PodPID() int { return tp.podPID }

// InLaptop returns a command that runs name with args as root in the laptop namespace, with
// BaseEnv as its environment (append to cmd.Env to add). ctx kills it.
func (tp *Topology) InLaptop(ctx context.Context, name string, args ...string) *exec.Cmd {
	return command(ctx, "ip", append([]string{"netns", "exec", tp.laptop, name}, args...)...)
}

// InPod returns a command that runs name with args as root in the pod process's network, mount
// and UTS namespaces: it sees the pod's network, root, /etc files, volumes and hostname, but
// not its environment (BaseEnv instead). This is the direct baseline for what doppel should
// give.
func (tp *Topology) InPod(ctx context.Context, name string, args ...string) *exec.Cmd {
	pre := []string{"--target", strconv.Itoa(tp.podPID), "--net", "--mount", "--uts", "--", name}
	return command(ctx, "nsenter", append(pre, args...)...)
}

// InClient returns a command that runs name with args as root in the client namespace, with
// BaseEnv as its environment; it sees PodResolvConf as /etc/resolv.conf. ctx kills it.
func (tp *Topology) InClient(ctx context.Context, name string, args ...string) *exec.Cmd {
	return command(ctx, "ip", append([]string{"netns", "exec", tp.client, name}, args...)...)
}

// InCluster returns a command that runs name with args as root in the cluster namespace.
func (tp *Topology) InCluster(ctx context.Context, name string, args ...string) *exec.Cmd {
	return command(ctx, "ip", append([]string{"netns", "exec", tp.cluster, name}, args...)...)
}

// AsNobody returns argv prefixed so that it runs as the unprivileged user nobody
// (NobodyUID:NobodyGID, no supplementary groups), for use with InLaptop and InPod:
//
//	argv := testenv.AsNobody("curl", "-sS", "http://nginx/")
//	cmd := tp.InPod(ctx, argv[0], argv[1:]...)
func AsNobody(argv ...string) []string {
	pre := []string{"setpriv", "--reuid=" + strconv.Itoa(NobodyUID), "--regid=" + strconv.Itoa(NobodyGID), "--clear-groups", "--"}
	return append(pre, argv...)
}

func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string(nil), BaseEnv...)
	// Children that keep stdout open after the command is killed must not hang Wait.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs a setup command and fails the test if it fails.
func (tp *Topology) run(argv ...string) {
	tp.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

func (tp *Topology) makeNetwork() {
	tp.t.Helper()
	for _, ns := range []string{tp.cluster, tp.pod, tp.laptop, tp.client} {
		tp.run("ip", "netns", "add", ns)
		tp.namespaces = append(tp.namespaces, ns)
		tp.run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	c, p := tp.cluster, tp.pod
	// The cluster forwards between pod and client. /proc/sys/net shows the sysctls of the
	// writer's network namespace, so this changes the cluster namespace only. Its interfaces
	// (made below, so they inherit "default") skip duplicate address detection for their
	// link-local addresses: a router sends neighbor solicitations for forwarded packets from
	// its link-local address, and while that is tentative (a second or two) it sends none, so
	// the first forwarded IPv6 packets would wait for a retransmission.
	tp.run("ip", "netns", "exec", c, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && "+
		"echo 1 > /proc/sys/net/ipv6/conf/all/forwarding && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad")
	tp.run("ip", "-n", c, "link", "add", "veth-pod", "type", "veth", "peer", "name", "eth0", "netns", p)
	tp.run("ip", "-n", c, "addr", "add", ClusterGatewayIP+"/24", "dev", "veth-pod")
	tp.run("ip", "-n", c, "link", "set", "veth-pod", "up")
	tp.run("ip", "-n", p, "addr", "add", PodIP+"/24", "dev", "eth0")
	tp.run("ip", "-n", p, "link", "set", "eth0", "up")
	tp.run("ip", "-n", p, "route", "add", "default", "via", ClusterGatewayIP)
	// nodad: the addresses are usable at once, not "tentative" for a second of duplicate
	// address detection.
	tp.run("ip", "-n", c, "addr", "add", ClusterGatewayIP6+"/64", "dev", "veth-pod", "nodad")
	tp.run("ip", "-n", p, "addr", "add", PodIP6+"/64", "dev", "eth0", "nodad")
	tp.run("ip", "-n", p, "-6", "route", "add", "default", "via", ClusterGatewayIP6)
	// The cluster IPs live on the cluster's loopback (the kernel may lack the dummy driver).
	for _, ip := range []string{DNSIP, NginxIP, EchoIP} {
		tp.run("ip", "-n", c, "addr", "add", ip+"/32", "dev", "lo")
	}
	for _, ip := range []string{NginxIP6, EchoIP6} {
		tp.run("ip", "-n", c, "addr", "add", ip+"/128", "dev", "lo", "nodad")
	}

	// The client: a pod on another node, routed through the cluster namespace.
	cl := tp.client
	tp.run("ip", "-n", c, "link", "add", "veth-client", "type", "veth", "peer", "name", "eth0", "netns", cl)
	tp.run("ip", "-n", c, "addr", "add", ClientGatewayIP+"/24", "dev", "veth-client")
	tp.run("ip", "-n", c, "addr", "add", ClientGatewayIP6+"/64", "dev", "veth-client", "nodad")
	tp.run("ip", "-n", c, "link", "set", "veth-client", "up")
	tp.run("ip", "-n", cl, "addr", "add", ClientIP+"/24", "dev", "eth0")
	tp.run("ip", "-n", cl, "addr", "add", ClientIP6+"/64", "dev", "eth0", "nodad")
	tp.run("ip", "-n", cl, "link", "set", "eth0", "up")
	tp.run("ip", "-n", cl, "route", "add", "default", "via", ClientGatewayIP)
	tp.run("ip", "-n", cl, "-6", "route", "add", "default", "via", ClientGatewayIP6)
}

// writeEtc writes files into /etc/netns/<ns>/, which `ip netns exec <ns>` bind-mounts over the
// same names in /etc.
func (tp *Topology) writeEtc(ns string, files map[string]string) {
	tp.t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tp.t.Fatal(err)
	}
	tp.etcDirs = append(tp.etcDirs, dir)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tp.t.Fatal(err)
		}
	}
}

func (tp *Topology) startServices() {
	tp.t.Helper()
	echo := BuildGo(tp.t, "./internal/testenv/testdata/echoserver")

	zone := PodNamespace + ".svc." + ClusterDomain
	tp.start("dnsmasq", nil, "ip", "netns", "exec", tp.cluster, "dnsmasq",
		"--keep-in-foreground", "--conf-file=/dev/null", "--log-facility=-", "--log-queries",
		"--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
		"--listen-address="+DNSIP, "--pid-file="+filepath.Join(tp.dir, "dnsmasq.pid"),
		"--user=nobody", "--group=nogroup",
		"--local=/"+ClusterDomain+"/",
		"--host-record="+NginxName+"."+zone+","+NginxIP,
		"--host-record="+EchoName+"."+zone+","+EchoIP,
		"--host-record="+Nginx6Name+"."+zone+","+NginxIP6,
		"--host-record="+Echo6Name+"."+zone+","+EchoIP6,
		"--host-record=kube-dns.kube-system.svc."+ClusterDomain+","+DNSIP,
	)

	conf := filepath.Join(tp.dir, "nginx.conf")
	if err := os.MkdirAll(filepath.Join(tp.dir, "nginx-body"), 0o755); err != nil {
		tp.t.Fatal(err)
	}
	nginxConf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path %[1]s/nginx-body;
    server {
        listen %[2]s:80;
        listen [::]:80;
        default_type text/plain;
        location = %[3]s { return 200 "$remote_addr\n"; }
        location / { return 200 %[4]q; }
    }
}
`, tp.dir, NginxIP, NginxWhoamiPath, NginxBody)
	if err := os.WriteFile(conf, []byte(nginxConf), 0o644); err != nil {
		tp.t.Fatal(err)
	}
	tp.start("nginx", nil, "ip", "netns", "exec", tp.cluster, "nginx", "-p", tp.dir, "-c", conf, "-e", "stderr")

	echo4 := netip.AddrPortFrom(netip.MustParseAddr(EchoIP), EchoPort).String()
	echo6 := netip.AddrPortFrom(netip.MustParseAddr(EchoIP6), EchoPort).String()
	sidecar := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), SidecarPort).String()
	tp.start("echoserver", nil, "ip", "netns", "exec", tp.cluster, echo, "-addr", echo4)
	tp.start("echoserver6", nil, "ip", "netns", "exec", tp.cluster, echo, "-addr", echo6)
	tp.start("sidecar", nil, "ip", "netns", "exec", tp.pod, echo, "-addr", sidecar)

	waits := []listenWait{
		{"dnsmasq", "udp", DNSIP + ":53"},
		{"dnsmasq", "tcp", DNSIP + ":53"},
		{"nginx", "tcp", NginxIP + ":80"},
		{"nginx", "tcp", "[::]:80"},
		{"echoserver", "udp", echo4},
		{"echoserver", "tcp", echo4},
		{"echoserver6", "udp", echo6},
		{"echoserver6", "tcp", echo6},
		{"sidecar", "tcp", sidecar},
	}
	waits = append(waits, tp.startPodServers(echo)...)
	for _, w := range waits {
		p := tp.proc(w.proc)
		addr := netip.MustParseAddrPort(w.addr)
		// Stop waiting when the process has exited (a bad configuration, a port in use).
		waitFor(10*time.Second, func() bool {
			return !Alive(p.cmd.Process.Pid, "") || listening(p.cmd.Process.Pid, w.proto, addr)
		})
		if !Alive(p.cmd.Process.Pid, "") || !listening(p.cmd.Process.Pid, w.proto, addr) {
			tp.t.Fatalf("%s is not listening on %s %s (exited, or not within 10s); its log:\n%s", w.proc, w.proto, w.addr, readLog(p.log))
		}
	}
}

// listenWait is a socket that a started process must have before NewTopology returns.
type listenWait struct {
	proc  string // name given to start
	proto string // "tcp" or "udp"
	addr  string // IP:port
}

func (tp *Topology) startPod() {
	tp.t.Helper()
	argv := []string{"ip", "netns", "exec", tp.pod, "unshare", "--uts", "--",
		"sh", "-c", podStartScript, "sh", PodHostname, tp.dir, filepath.Join("/etc/netns", tp.pod)}
	for _, v := range podVolumes {
		argv = append(argv, filepath.Join(tp.dir, "volumes", v.source), v.mountPoint, v.mode)
	}
	p := tp.start("pod", PodEnv, argv...)
	pid := p.cmd.Process.Pid
	// ip, unshare and sh each exec the next, so the pid stays that of the final sleep.
	isSleep := func() bool {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err == nil && strings.TrimSpace(string(comm)) == "sleep"
	}
	// Stop waiting when the start script has failed and exited.
	waitFor(10*time.Second, func() bool { return isSleep() || !Alive(pid, "") })
	if !isSleep() {
		tp.t.Fatalf("pod process %d did not become `sleep infinity` (exited, or not within 10s); its log:\n%s", pid, readLog(p.log))
	}
	tp.podPID = pid
	for _, ns := range []string{"net", "mnt", "uts"} {
		own, err1 := os.Readlink("/proc/self/ns/" + ns)
		pods, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err := errors.Join(err1, err2); err != nil {
			tp.t.Fatal(err)
		}
		if own == pods {
			tp.t.Fatalf("pod process %d shares the test's %s namespace", pid, ns)
		}
	}
}

// start starts a long-running process with its output in a log file under tp.dir. A nil env
// means BaseEnv.
func (tp *Topology) start(name string, env []string, argv ...string) *started {
	tp.t.Helper()
	logPath := filepath.Join(tp.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		tp.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	if env == nil {
		env = BaseEnv
	}
	cmd.Env = env
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		tp.t.Fatalf("start %s: %v", name, err)
	}
	p := &started{name: name, cmd: cmd, log: logPath}
	tp.procs = append(tp.procs, p)
	go func() { _ = cmd.Wait() }()
	return p
}

func (tp *Topology) proc(name string) *started {
	for _, p := range tp.procs {
		if p.name == name {
			return p
		}
	}
	panic("testenv: no process " + name)
}

// ProcessLog returns what a process of the topology ("dnsmasq", "nginx", "echoserver",
// "echoserver6", "sidecar", "podnginx", "podecho", "podecho6", "pod") has written so far. The
// pod nginx's access log is read with PodNginxLog.
func (tp *Topology) ProcessLog(name string) string { return readLog(tp.proc(name).log) }

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	return string(b)
}

// cleanup ends the processes the topology started (by pid), then deletes its namespaces, its
// /etc/netns directories and its temporary directory. It reports what it could not undo.
func (tp *Topology) cleanup() {
	t := tp.t
	if t.Failed() {
		for _, p := range tp.procs {
			t.Logf("%s log:\n%s", p.name, readLog(p.log))
		}
	}
	for i := len(tp.procs) - 1; i >= 0; i-- {
		p := tp.procs[i]
		_ = p.cmd.Process.Kill() // the pid is ours until it is reaped by the Wait goroutine
		if !waitFor(5*time.Second, func() bool { return !Alive(p.cmd.Process.Pid, "") }) {
			t.Errorf("cleanup: %s (pid %d) still runs after SIGKILL", p.name, p.cmd.Process.Pid)
		}
	}
	for _, ns := range tp.namespaces {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip netns delete %s: %v: %s", ns, err, out)
		}
	}
	for _, dir := range tp.etcDirs {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	// /etc/netns itself stays: removing it could race with another test binary making its own
	// /etc/netns/<name>.
	if tp.dir != "" {
		if err := os.RemoveAll(tp.dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if err := os.RemoveAll(filepath.Join(stateRoot, tp.id)); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
