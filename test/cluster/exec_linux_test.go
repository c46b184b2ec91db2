package cluster_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	b64 "encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/clientcmd"

	"doppel.dev/doppel/internal/agent"
	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/image"
	"doppel.dev/doppel/internal/incoming"
	"doppel.dev/doppel/internal/kube"
	"doppel.dev/doppel/internal/testenv"
)

// The test workloads' images, built and imported by scripts/cluster.sh up.
const (
	nginxImage  = "doppel.local/nginx:1"
	clientImage = "doppel.local/client:1"
)

// shopManifest is the namespace's application: nginx serving "nginx: URI" on port 80 with a
// ConfigMap and a Secret mounted and environment variables set, behind the Service nginx; and
// a backend only reachable inside the cluster, behind the Service backend.
const shopManifest = `
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-conf}
data:
  default.conf: |
    server {
      listen 80;
      location / { return 200 "nginx: $request_uri\n"; }
    }
---
apiVersion: v1
kind: ConfigMap
metadata: {name: backend-conf}
data:
  default.conf: |
    server {
      listen 80;
      location / { return 200 "backend only in the cluster\n"; }
    }
---
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-config}
data:
  app.yaml: "mode: cluster\n"
---
apiVersion: v1
kind: Secret
metadata: {name: shop-secret}
stringData:
  password: s3cret-in-cluster
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx}
spec:
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: doppel.local/nginx:1
        imagePullPolicy: Never
        env:
        - {name: SHOP_MODE, value: cluster-test}
        - {name: SHOP_DB, value: "postgres://db.shop:5432/orders"}
        volumeMounts:
        - {name: conf, mountPath: /etc/nginx/conf.d}
        - {name: config, mountPath: /etc/shop}
        - {name: secret, mountPath: /etc/shop-secret}
      volumes:
      - {name: conf, configMap: {name: nginx-conf}}
      - {name: config, configMap: {name: shop-config}}
      - {name: secret, secret: {secretName: shop-secret}}
---
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  selector: {app: nginx}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend}
spec:
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      containers:
      - name: nginx
        image: doppel.local/nginx:1
        imagePullPolicy: Never
        volumeMounts:
        - {name: conf, mountPath: /etc/nginx/conf.d}
      volumes:
      - {name: conf, configMap: {name: backend-conf}}
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80}]
`

// shop is a namespace holding shopManifest, a developer's kubeconfig bound to docs/rbac.yaml's
// Role only, and a laptop namespace that reaches the API server and nothing else.
type shop struct {
	admin      string // the admin kubeconfig
	ns         string
	kubeconfig string // the developer's
	laptop     *testenv.Laptop
	doppel     string
	agentImage string
}

func newShop(t *testing.T) *shop {
	t.Helper()
	s := &shop{admin: kubeconfig(t)}
	testenv.Privileged(t)
	s.doppel = testenv.BuildDoppel(t)
	s.agentImage = importAgentImage(t, s.doppel)
	s.ns = "doppel-" + strings.ToLower(t.Name()[4:min(len(t.Name()), 20)]) + "-" + time.Now().Format("150405")
	s.ns = strings.ReplaceAll(s.ns, "_", "-")
	kubectl(t, s.admin, "create", "namespace", s.ns)
	t.Cleanup(func() {
		if t.Failed() {
			for _, what := range []string{"get pods,jobs,secrets -o wide", "get events --sort-by=.lastTimestamp"} {
				out, _ := exec.Command(os.Getenv("KUBECTL"), append([]string{"--kubeconfig", s.admin, "-n", s.ns}, strings.Fields(what)...)...).CombinedOutput()
				t.Logf("kubectl %s:\n%s", what, out)
			}
		}
		exec.Command(os.Getenv("KUBECTL"), "--kubeconfig", s.admin, "delete", "namespace", s.ns, "--wait=false").Run()
	})
	applyIn(t, s.admin, s.ns, shopManifest)
	kubectl(t, s.admin, "-n", s.ns, "rollout", "status", "deployment/nginx", "deployment/backend", "--timeout=90s")
	waitForService(t, s.admin, s.ns, "nginx", "backend")

	// The developer: a service account holding docs/rbac.yaml's Role and nothing else.
	rbac, err := os.ReadFile(filepath.Join(moduleRoot(t), "docs", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applyIn(t, s.admin, s.ns, string(rbac))
	kubectl(t, s.admin, "-n", s.ns, "create", "serviceaccount", "dev")
	kubectl(t, s.admin, "-n", s.ns, "create", "rolebinding", "dev-doppel", "--role=doppel-user", "--serviceaccount="+s.ns+":dev")
	token := strings.TrimSpace(kubectl(t, s.admin, "-n", s.ns, "create", "token", "dev", "--duration=1h"))

	cfg, err := clientcmd.LoadFromFile(s.admin)
	if err != nil {
		t.Fatal(err)
	}
	cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	u, err := url.Parse(cluster.Server)
	if err != nil {
		t.Fatal(err)
	}
	api, err := netip.ParseAddr(u.Hostname())
	if err != nil || api.IsLoopback() {
		t.Fatalf("the cluster's API server %s must be on a non-loopback address of this machine, which a laptop namespace can reach", cluster.Server)
	}
	s.laptop = testenv.NewLaptop(t, api)
	s.kubeconfig = filepath.Join(s.laptop.Dir(), "dev.kubeconfig")
	dev := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority-data: %q}}]
users: [{name: dev, user: {token: %q}}]
contexts: [{name: dev, context: {cluster: test, user: dev, namespace: %q}}]
current-context: dev
`, cluster.Server, base64(cluster.CertificateAuthorityData), token, s.ns)
	if err := os.WriteFile(s.kubeconfig, []byte(dev), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// exec runs doppel exec against deployment/nginx as nobody in the laptop, with extra flags and
// the program argv, until ctx ends or it exits.
func (s *shop) exec(ctx context.Context, flags []string, argv ...string) *exec.Cmd {
	args := append([]string{s.doppel, "exec", "--kubeconfig", s.kubeconfig, "--target", "deployment/nginx",
		"--agent-image", s.agentImage, "--agent-pull-policy", "Never"}, flags...)
	args = append(args, "--")
	return s.laptop.Command(ctx, testenv.AsNobody(append(args, argv...)...)...)
}

// checkNothingLeft waits until no object doppel made remains in the namespace and no doppel
// table remains in the nginx pod's network namespace.
func (s *shop) checkNothingLeft(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := kubectl(t, s.admin, "-n", s.ns, "get", "jobs,pods,secrets", "-l", "app.kubernetes.io/managed-by=doppel", "-o", "name")
		if strings.TrimSpace(left) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the session, doppel's objects remain:\n%s", left)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if sessions := s.nginxSessions(t); len(sessions) > 0 {
		t.Errorf("doppel tables left in the nginx pod: %+v", sessions)
	}
	if taps := s.nginxTaps(t); taps > 0 {
		t.Errorf("%d doppel taps left on the nginx pod's interfaces", taps)
	}
}

// nginxSessions reads the doppel tables in the nginx pod's network namespace over netlink.
func (s *shop) nginxSessions(t *testing.T) []incoming.Session {
	t.Helper()
	fd := s.nginxNetns(t)
	defer unix.Close(fd)
	got, err := incoming.ListSessions(fd)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// nginxTaps counts the doppel taps attached to the nginx pod's interfaces.
func (s *shop) nginxTaps(t *testing.T) int {
	t.Helper()
	fd := s.nginxNetns(t)
	defer unix.Close(fd)
	n, err := capture.TapPrograms(fd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// nginxNetns opens the nginx pod's network namespace.
func (s *shop) nginxNetns(t *testing.T) int {
	t.Helper()
	id := kubectl(t, s.admin, "-n", s.ns, "get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[0].status.containerStatuses[0].containerID}")
	_, id, _ = strings.Cut(id, "://")
	pid, err := agent.FindContainer("/proc", id)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// Outgoing traffic, DNS, environment and files come from the pod: a shell program in the
// laptop (which reaches nothing but the API server) resolves the cluster-only service by its
// short name and calls it, sees the pod's environment and reads its mounted ConfigMap and Secret.
func TestExecOutgoingEnvFiles(t *testing.T) {
	s := newShop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script := `curl -sS --max-time 10 http://backend/ && echo "mode=$SHOP_MODE db=$SHOP_DB" && cat /etc/shop/app.yaml && cat /etc/shop-secret/password && echo && ls /etc/shop-secret`
	cmd := s.exec(ctx, []string{"--no-incoming"}, "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doppel exec: %v\n%s", err, out)
	}
	for _, want := range []string{
		"backend only in the cluster\n",
		"mode=cluster-test db=postgres://db.shop:5432/orders\n",
		"mode: cluster\n",
		"s3cret-in-cluster\npassword\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, phase := range []string{"agent creating", "agent running"} {
		if !strings.Contains(string(out), phase) {
			t.Errorf("start-up progress lacks %q:\n%s", phase, out)
		}
	}
	// Without doppel the laptop reaches nothing in the cluster.
	if out, err := s.laptop.Command(ctx, "curl", "-sS", "--max-time", "3", "http://backend/").CombinedOutput(); err == nil {
		t.Errorf("curl from the laptop without doppel succeeded: %s", out)
	}
	s.checkNothingLeft(t)
}

// Mirror: the program gets a copy of each request a client pod sends to the nginx Service,
// with the client pod's address, while the client keeps getting nginx's answers.
func TestExecIncomingMirror(t *testing.T) {
	s := newShop(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	clientIP := s.startClient(t, "client", "http://nginx/from-client")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.exec(ctx, nil, prog, "-n", "5")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doppel exec: %v\n%s", err, out)
	}
	svcIP := strings.TrimSpace(kubectl(t, s.admin, "-n", s.ns, "get", "service", "nginx", "-o", "jsonpath={.spec.clusterIP}"))
	if !strings.Contains(string(out), "resolved nginx: "+svcIP+"\n") {
		t.Errorf("the program did not resolve nginx to the Service's address %s:\n%s", svcIP, out)
	}
	if !strings.Contains(string(out), "request GET /from-client from "+clientIP+":") {
		t.Errorf("the program did not log the client pod %s:\n%s", clientIP, out)
	}
	logs := kubectl(t, s.admin, "-n", s.ns, "logs", "client")
	if !strings.Contains(logs, "http://nginx/from-client 200 20") || strings.Contains(logs, "error") {
		t.Errorf("the client did not keep getting nginx's answers:\n%s", lastLines(logs, 10))
	}
	s.checkNothingLeft(t)
}

// Steal with a header filter: only the requests carrying the header reach the program; the
// others keep reaching nginx on the same Service.
func TestExecStealHeaderFilter(t *testing.T) {
	s := newShop(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s.startClient(t, "alice", "http://nginx/alice", "-header", "X-Dev: alice")
	s.startClient(t, "bob", "http://nginx/bob")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.exec(ctx, []string{"--steal", "--http-header", "X-Dev: alice"}, prog, "-n", "4")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doppel exec: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "request GET /alice") || strings.Contains(string(out), "/bob") {
		t.Errorf("the program should get alice's requests only:\n%s", out)
	}
	alice := kubectl(t, s.admin, "-n", s.ns, "logs", "alice")
	if !strings.Contains(alice, "http://nginx/alice 200 16") { // "program: /alice\n"
		t.Errorf("alice never got the program's answer:\n%s", lastLines(alice, 10))
	}
	bob := kubectl(t, s.admin, "-n", s.ns, "logs", "bob")
	if strings.Contains(bob, "error") || !strings.Contains(bob, "http://nginx/bob 200 12") { // "nginx: /bob\n"
		t.Errorf("bob should keep getting nginx's answers:\n%s", lastLines(bob, 10))
	}
	s.checkNothingLeft(t)
}

// startClient runs a client pod sending GET url in a loop and returns its IP.
func (s *shop) startClient(t *testing.T, name, url string, args ...string) string {
	t.Helper()
	argv := append([]string{"-n", s.ns, "run", name, "--image=" + clientImage, "--image-pull-policy=Never", "--restart=Never", "--",
		"-url", url, "-interval", "100ms"}, args...)
	kubectl(t, s.admin, argv...)
	kubectl(t, s.admin, "-n", s.ns, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=60s")
	return strings.TrimSpace(kubectl(t, s.admin, "-n", s.ns, "get", "pod", name, "-o", "jsonpath={.status.podIP}"))
}

// waitForService waits until each Service answers HTTP on its ClusterIP from this machine (the
// test cluster routes the service range to its node bridge): its endpoints are ready and
// kube-proxy has programmed them.
func waitForService(t *testing.T, kc, ns string, names ...string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for _, name := range names {
		ip := strings.TrimSpace(kubectl(t, kc, "-n", ns, "get", "service", name, "-o", "jsonpath={.spec.clusterIP}"))
		// Only through the cluster's bridge: this machine's default route leads off it.
		if route, err := exec.Command("ip", "route", "get", ip).Output(); err != nil || !strings.Contains(string(route), "dev dpl-node0") {
			t.Fatalf("service %s: %s is not routed to the test cluster's bridge dpl-node0: %s %v", name, ip, route, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := client.Get("http://" + ip + "/")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("service %s (%s) does not answer 30s after its rollout: %v", name, ip, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// importAgentImage builds the agent image of the doppel binary under test and imports it into
// the test cluster's containerd; it returns the image's reference.
func importAgentImage(t *testing.T, doppel string) string {
	t.Helper()
	bin, err := os.ReadFile(doppel)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	ref := "doppel.local/doppel-agent:test-" + hex.EncodeToString(sum[:6])
	img, err := image.Agent(bin, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "agent.tar")
	if err := image.WriteArchive(archive, ref, img); err != nil {
		t.Fatal(err)
	}
	sock := os.Getenv("DOPPEL_CLUSTER_CONTAINERD")
	if sock == "" {
		sock = "/run/doppel-cluster/containerd/containerd.sock"
	}
	if out, err := exec.Command("ctr", "--address", sock, "-n", "k8s.io", "images", "import", archive).CombinedOutput(); err != nil {
		t.Fatalf("import the agent image: %v\n%s", err, out)
	}
	return ref
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func base64(b []byte) string { return b64.StdEncoding.EncodeToString(b) }

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// --ephemeral: the agent runs as an ephemeral container in the nginx pod itself, without
// hostPID and with NET_ADMIN as its only added capability; everything works as with the Job,
// and the container has stopped after the session.
func TestExecEphemeral(t *testing.T) {
	s := newShop(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	clientIP := s.startClient(t, "client", "http://nginx/from-client")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// nginx writes its process title over the environment /proc/1/environ shows, and an
	// ephemeral agent cannot see the container's bundle: doppel rebuilds it from the pod's spec.
	script := `curl -sS --max-time 10 http://backend/ && echo "mode=$SHOP_MODE db=$SHOP_DB backend=$BACKEND_SERVICE_HOST" && cat /etc/shop-secret/password && echo && exec "$0" -n 3`
	cmd := s.exec(ctx, []string{"--ephemeral", "--agent-grace", "2s"}, "sh", "-c", script, prog)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doppel exec --ephemeral: %v\n%s", err, out)
	}
	for _, want := range []string{"backend only in the cluster\n", "s3cret-in-cluster\n",
		"request GET /from-client from " + clientIP + ":", "agent running: ephemeral container",
		"mode=cluster-test db=postgres://db.shop:5432/orders backend=10.96.",
		"the environment of target pid 1 is incomplete: the process wrote over it",
		"doppel rebuilt it from the pod's spec"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	spec := kubectl(t, s.admin, "-n", s.ns, "get", "pods", "-l", "app=nginx", "-o",
		"jsonpath={.items[0].spec.hostPID} {.items[0].spec.ephemeralContainers[0].securityContext.capabilities.add}")
	if strings.TrimSpace(spec) != `["NET_ADMIN"]` {
		t.Errorf("ephemeral agent: hostPID and added capabilities %q, want none and [NET_ADMIN]", spec)
	}
	s.ephemeralStopped(t)
	s.checkNothingLeft(t)
}

// ephemeralStopped waits (30 s at most) until the nginx pod's ephemeral agent has stopped.
func (s *shop) ephemeralStopped(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		state := kubectl(t, s.admin, "-n", s.ns, "get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[0].status.ephemeralContainerStatuses[0].state}")
		if strings.Contains(state, "terminated") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ephemeral agent still runs 30s after the session: %s", state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// An ephemeral agent with the eBPF tap: inside the target pod, it holds BPF and NET_ADMIN and
// nothing else, the program gets a copy of the client's requests, and the tap is gone when the
// agent has stopped.
func TestExecEphemeralTap(t *testing.T) {
	s := newShop(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	clientIP := s.startClient(t, "client", "http://nginx/tapped")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.exec(ctx, []string{"--ephemeral", "--mirror-tap", "--agent-grace", "2s"}, prog, "-n", "2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doppel exec --ephemeral --mirror-tap: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "request GET /tapped from "+clientIP+":") {
		t.Errorf("the program did not log the client pod %s:\n%s", clientIP, out)
	}
	spec := kubectl(t, s.admin, "-n", s.ns, "get", "pods", "-l", "app=nginx", "-o",
		"jsonpath={.items[0].spec.ephemeralContainers[0].securityContext.capabilities.add}")
	if strings.TrimSpace(spec) != `["BPF","NET_ADMIN"]` {
		t.Errorf("ephemeral tap agent: added capabilities %q, want [BPF NET_ADMIN]", spec)
	}
	s.ephemeralStopped(t)
	s.checkNothingLeft(t)
}

// Killing doppel leaves nothing behind either: the agent exits once its client has been gone
// for the grace period, and Kubernetes deletes its finished Job, the Job's pod and its Secret.
func TestExecKilledLeavesNothing(t *testing.T) {
	s := newShop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.exec(ctx, []string{"--agent-grace", "2s"}, "sleep", "100")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	running := false
	for !running && sc.Scan() {
		running = strings.Contains(sc.Text(), "agent running")
	}
	if !running {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("doppel exec never reported its agent running")
	}
	time.Sleep(time.Second) // connected, the program started
	if jobs := kubectl(t, s.admin, "-n", s.ns, "get", "jobs", "-l", "app.kubernetes.io/managed-by=doppel", "-o", "name"); !strings.HasPrefix(jobs, "job.batch/doppel-agent-") {
		t.Fatalf("no agent job while the session runs: %q", jobs)
	}
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stderr)
	cmd.Wait()
	s.checkNothingLeft(t)
}

// A start that cannot succeed fails fast with the cluster's reason and leaves nothing.
func TestExecStartFailures(t *testing.T) {
	s := newShop(t)
	// A second developer with no role at all.
	kubectl(t, s.admin, "-n", s.ns, "create", "serviceaccount", "nobody")
	token := strings.TrimSpace(kubectl(t, s.admin, "-n", s.ns, "create", "token", "nobody", "--duration=1h"))
	dev, err := os.ReadFile(s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var devToken string
	for _, line := range strings.Split(string(dev), "\n") {
		if _, tok, ok := strings.Cut(line, "token: "); ok {
			devToken = strings.Trim(tok, `"}] `)
		}
	}
	noRole := filepath.Join(s.laptop.Dir(), "norole.kubeconfig")
	if err := os.WriteFile(noRole, []byte(strings.Replace(string(dev), devToken, token, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"image that is not there", []string{"--agent-image", "doppel.local/no-such-agent:1"},
			"cannot pull the agent image doppel.local/no-such-agent:1: ErrImageNeverPull"},
		{"wrong target", []string{"--target", "deployment/ngnix"},
			"deployment ngnix not found in namespace " + s.ns + "; did you mean deployment/nginx?"},
		{"no role", []string{"--kubeconfig", noRole}, "forbidden"},
		{"node refuses the pod", []string{"--agent-node-selector", "disk=none"}, "NodeAffinity"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			out, err := s.exec(ctx, c.flags, "true").CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("doppel exec %v: %v, want an error with %q:\n%s", c.flags, err, c.want, out)
			}
			t.Logf("%s", lastLines(string(out), 1))
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("failing took %v", d)
			}
			if strings.Count(strings.TrimSpace(lastLines(string(out), 1)), "doppel:") != 1 {
				t.Errorf("the last line should be doppel's one error:\n%s", out)
			}
		})
	}
	s.checkNothingLeft(t)
}

// --target none: an agent of its own in the namespace, admitted under Pod Security's
// "restricted" level, gives the program the namespace's DNS, network and service-account
// token; no incoming traffic.
func TestExecTargetless(t *testing.T) {
	s := newShop(t)
	kubectl(t, s.admin, "label", "namespace", s.ns, "pod-security.kubernetes.io/enforce=restricted")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script := `curl -sS --max-time 10 http://backend/ && cat /var/run/secrets/kubernetes.io/serviceaccount/namespace && echo && echo "secret=$DOPPEL_AGENT_SECRET"`
	out, err := s.exec(ctx, []string{"--target", "none"}, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("doppel exec --target none: %v\n%s", err, out)
	}
	for _, want := range []string{"backend only in the cluster\n", s.ns + "\n", "secret=\n", "no target: an agent of its own in namespace " + s.ns} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	s.checkNothingLeft(t)
}

// Port-forward over plain SPDY (the fallback for proxies that break WebSocket upgrades) carries
// a session as well as the default SPDY-over-WebSocket does.
func TestExecPortForwardSPDY(t *testing.T) {
	s := newShop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.exec(ctx, []string{"--no-incoming"}, "curl", "-sS", "--max-time", "10", "http://backend/")
	cmd.Env = append(cmd.Env, kube.WebsocketsEnv+"=false")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backend only in the cluster\n") {
		t.Fatalf("doppel exec over SPDY: %v\n%s", err, out)
	}
	s.checkNothingLeft(t)
}

// Admission refuses the agent's pod (Pod Security "baseline" forbids hostPID): doppel says so at
// once, with the admission's words, and leaves nothing.
func TestExecRefusedByAdmission(t *testing.T) {
	s := newShop(t)
	kubectl(t, s.admin, "label", "namespace", s.ns, "pod-security.kubernetes.io/enforce=baseline")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	out, err := s.exec(ctx, nil, "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the job could not create its pod") || !strings.Contains(string(out), "violates PodSecurity") {
		t.Fatalf("doppel exec in a baseline namespace: %v, want the admission's refusal:\n%s", err, out)
	}
	t.Logf("%s", lastLines(string(out), 1))
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("failing took %v", d)
	}
	s.checkNothingLeft(t)
}

// In a pod, doppel uses the pod's service account (in-cluster configuration): `doppel ls` run in
// a pod of the agent image, as a service account bound to docs/rbac.yaml's Role, lists the
// namespace.
func TestLsInCluster(t *testing.T) {
	s := newShop(t)
	kubectl(t, s.admin, "-n", s.ns, "create", "serviceaccount", "incluster")
	kubectl(t, s.admin, "-n", s.ns, "create", "rolebinding", "incluster-doppel", "--role=doppel-user", "--serviceaccount="+s.ns+":incluster")
	kubectl(t, s.admin, "-n", s.ns, "run", "ls", "--image="+s.agentImage, "--image-pull-policy=Never", "--restart=Never",
		"--overrides", `{"spec":{"serviceAccountName":"incluster"}}`, "--command", "--", "/doppel", "ls")
	deadline := time.Now().Add(60 * time.Second)
	for {
		phase := kubectl(t, s.admin, "-n", s.ns, "get", "pod", "ls", "-o", "jsonpath={.status.phase}")
		if phase == "Succeeded" {
			break
		}
		if phase == "Failed" || time.Now().After(deadline) {
			t.Fatalf("doppel ls in a pod: %s\n%s", phase, kubectl(t, s.admin, "-n", s.ns, "logs", "ls"))
		}
		time.Sleep(300 * time.Millisecond)
	}
	logs := kubectl(t, s.admin, "-n", s.ns, "logs", "ls")
	if !strings.Contains(logs, "deployment/nginx") || !strings.Contains(logs, "service/backend") {
		t.Errorf("doppel ls in a pod:\n%s", logs)
	}
}

// Passive capture on a pod: the agent holds NET_RAW instead of NET_ADMIN, writes no rules, and
// the program still gets each request with the client pod's address.
func TestExecIncomingCapture(t *testing.T) {
	testExecIncomingCopies(t, "--mirror-capture", []string{"NET_RAW"}, []string{"NET_ADMIN"})
}

// The eBPF tap on a pod: the agent holds BPF and NET_ADMIN, writes no rules, and its tap is gone
// from the pod's interfaces when the session ends.
func TestExecIncomingTap(t *testing.T) {
	testExecIncomingCopies(t, "--mirror-tap", []string{"BPF", "NET_ADMIN"}, []string{"NET_RAW"})
}

func testExecIncomingCopies(t *testing.T, flag string, caps, notCaps []string) {
	s := newShop(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	clientIP := s.startClient(t, "client", "http://nginx/captured")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.exec(ctx, []string{flag}, prog, "-n", "3")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	checked := false
	for sc.Scan() {
		fmt.Fprintln(&out, sc.Text())
		if strings.HasPrefix(sc.Text(), "request ") && !checked {
			checked = true
			if got := s.nginxSessions(t); len(got) != 0 {
				t.Errorf("%s wrote tables in the pod: %+v", flag, got)
			}
			if taps := s.nginxTaps(t); (flag == "--mirror-tap") != (taps > 0) {
				t.Errorf("%s: %d taps attached in the pod", flag, taps)
			}
			got := kubectl(t, s.admin, "-n", s.ns, "get", "pods", "-l", "app.kubernetes.io/managed-by=doppel", "-o",
				"jsonpath={.items[0].spec.containers[0].securityContext.capabilities.add}")
			for _, c := range caps {
				if !strings.Contains(got, `"`+c+`"`) {
					t.Errorf("%s: the agent's capabilities %s lack %s", flag, got, c)
				}
			}
			for _, c := range notCaps {
				if strings.Contains(got, `"`+c+`"`) {
					t.Errorf("%s: the agent's capabilities %s include %s", flag, got, c)
				}
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("doppel exec %s: %v\n%s%s", flag, err, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "request GET /captured from "+clientIP+":") {
		t.Errorf("the program did not log the client pod %s:\n%s%s", clientIP, out.String(), stderr.String())
	}
	s.checkNothingLeft(t)
}

// Two developers steal from the same pod at once, each with a header filter, with no other
// component: each program gets only its developer's requests, and everybody else still reaches
// nginx.
func TestExecTwoFilteredSessions(t *testing.T) {
	s := newShop(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s.startClient(t, "alice", "http://nginx/alice", "-header", "X-Dev: alice")
	s.startClient(t, "bob", "http://nginx/bob", "-header", "X-Dev: bob")
	s.startClient(t, "carol", "http://nginx/carol")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	results := map[string]chan result{}
	for _, dev := range []string{"alice", "bob"} {
		ch := make(chan result, 1)
		results[dev] = ch
		cmd := s.exec(ctx, []string{"--steal", "--http-header", "X-Dev: " + dev}, prog, "-n", "4")
		go func() {
			out, err := cmd.CombinedOutput()
			ch <- result{out, err}
		}()
	}
	for dev, ch := range results {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s's doppel exec: %v\n%s", dev, r.err, r.out)
		}
		other := map[string]string{"alice": "bob", "bob": "alice"}[dev]
		if !strings.Contains(string(r.out), "request GET /"+dev) || strings.Contains(string(r.out), "/"+other) || strings.Contains(string(r.out), "/carol") {
			t.Errorf("%s's program should get %s's requests only:\n%s", dev, dev, r.out)
		}
	}
	carol := kubectl(t, s.admin, "-n", s.ns, "logs", "carol")
	if strings.Contains(carol, "error") || !strings.Contains(carol, "http://nginx/carol 200 14") { // "nginx: /carol\n"
		t.Errorf("carol should keep getting nginx's answers:\n%s", lastLines(carol, 10))
	}
	s.checkNothingLeft(t)
}
