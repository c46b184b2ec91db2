package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

// benchOutEnv names the file TestBenchKube writes its section of docs/BENCHMARKS.md to; without
// it the benchmark is skipped (it is `make bench`'s, not a test).
const benchOutEnv = "DOPPEL_CLUSTER_BENCH_OUT"

// filesManifest serves a directory of the node (hostPath) with nginx's default server.
const filesManifest = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: files}
spec:
  selector: {matchLabels: {app: files}}
  template:
    metadata: {labels: {app: files}}
    spec:
      containers:
      - name: nginx
        image: doppel.local/nginx:1
        imagePullPolicy: Never
        volumeMounts:
        - {name: data, mountPath: /usr/share/nginx/html/data, readOnly: true}
      volumes:
      - {name: data, hostPath: {path: %q, type: Directory}}
`

// TestBenchKube measures doppel on the test cluster, side by side in one run: the start-up of
// `doppel exec --target deployment/nginx`, phase by phase; and the throughput of an outgoing TCP
// download through doppel's port-forward session against `kubectl port-forward` to the same pod.
func TestBenchKube(t *testing.T) {
	out := os.Getenv(benchOutEnv)
	if out == "" {
		t.Skip("a benchmark: run by make bench with " + benchOutEnv + " set")
	}
	runs, rounds := envInt("BENCH_STARTS", 5), envInt("BENCH_ROUNDS", 3)
	s := newShop(t)

	// Start-up, with the agent image already on the node.
	var phases [][4]float64 // resolved, running, connected, program started (seconds)
	var walls []float64
	for i := 0; i < runs; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		b, err := s.exec(ctx, []string{"--no-incoming"}, "true").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("doppel exec: %v\n%s", err, b)
		}
		walls = append(walls, time.Since(start).Seconds())
		p, err := startPhases(string(b))
		if err != nil {
			t.Fatalf("%v:\n%s", err, b)
		}
		phases = append(phases, p)
		s.checkNothingLeft(t)
	}

	// Throughput: a file of the node served by nginx in a pod, downloaded in the laptop.
	const size = 256 << 20
	dir := filepath.Join(s.laptop.Dir(), "files")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeBig(filepath.Join(dir, "big.bin"), size); err != nil {
		t.Fatal(err)
	}
	applyIn(t, s.admin, s.ns, fmt.Sprintf(filesManifest, dir))
	kubectl(t, s.admin, "-n", s.ns, "rollout", "status", "deployment/files", "--timeout=90s")
	pod := strings.TrimSpace(kubectl(t, s.admin, "-n", s.ns, "get", "pods", "-l", "app=files", "-o", "jsonpath={.items[0].metadata.name}"))
	podIP := strings.TrimSpace(kubectl(t, s.admin, "-n", s.ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"))

	var viaDoppel, viaKubectl []float64
	for r := 0; r < rounds; r++ {
		k := s.kubectlForwardSpeed(t, pod, "http://127.0.0.1:%d/data/big.bin", size)
		d := s.doppelSpeed(t, "http://"+podIP+"/data/big.bin", size)
		viaKubectl, viaDoppel = append(viaKubectl, k), append(viaDoppel, d)
		t.Logf("round %d: kubectl port-forward %.1f MB/s, doppel %.1f MB/s", r+1, k/1e6, d/1e6)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Start-up of `doppel exec --target deployment/nginx --no-incoming -- true`, the agent image already on the\n")
	fmt.Fprintf(&b, "node, %d runs; times from doppel's start to the end of each phase, as doppel reports them (mean, then min–max):\n\n", runs)
	fmt.Fprintf(&b, "| Phase ends | mean | min–max | aim |\n|---|---|---|---|\n")
	names := []string{"target resolved to a pod (API reads)", "agent running (Secret, Job, its pod started by the kubelet)",
		"connected (port-forward through the API server, handshake)", "program started (target info, resolver files, supervisor)"}
	for i, n := range names {
		col := make([]float64, len(phases))
		for j, p := range phases {
			col[j] = p[i]
		}
		aim := ""
		if i == 3 {
			aim = "under 3 s: " + verdict(mean(col) < 3)
		}
		fmt.Fprintf(&b, "| %s | %.2f s | %.2f–%.2f s | %s |\n", n, mean(col), minOf(col), maxOf(col), aim)
	}
	fmt.Fprintf(&b, "| whole run of `true`, to doppel's exit (the Job deleted) | %.2f s | %.2f–%.2f s | |\n\n", mean(walls), minOf(walls), maxOf(walls))
	fmt.Fprintf(&b, "Outgoing TCP through the API server's port-forward: a %d MiB file from nginx in a pod, with curl in the\n", size>>20)
	fmt.Fprintf(&b, "laptop namespace, %d rounds interleaved: through `kubectl port-forward pod/files` to 127.0.0.1, and under\n", rounds)
	fmt.Fprintf(&b, "`doppel exec --target deployment/files` to the pod's own address (the agent dials it inside the pod's network).\n\n")
	fmt.Fprintf(&b, "| Row | kubectl port-forward | doppel | doppel / kubectl |\n|---|---|---|---|\n")
	var per []string
	for i := range viaDoppel {
		per = append(per, fmt.Sprintf("%.2f", viaDoppel[i]/viaKubectl[i]))
	}
	fmt.Fprintf(&b, "| download, %d MiB | %.1f MB/s | %.1f MB/s | **%.2f** (%s) |\n", size>>20, mean(viaKubectl)/1e6, mean(viaDoppel)/1e6,
		mean(viaDoppel)/mean(viaKubectl), strings.Join(per, ","))
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s:\n%s", out, b.String())
}

// startPhases reads the times of doppel's progress lines ("doppel: [ 0.3s] agent running: ...").
func startPhases(out string) ([4]float64, error) {
	var p [4]float64
	re := regexp.MustCompile(`^doppel: \[\s*([0-9.]+)s\] (.*)$`)
	marks := []string{"target ", "agent running", "connected", "program started"}
	found := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		for i, mark := range marks {
			if strings.HasPrefix(m[2], mark) {
				p[i], _ = strconv.ParseFloat(m[1], 64)
				found |= 1 << i
			}
		}
	}
	if found != 15 {
		return p, fmt.Errorf("doppel exec reported only some of its phases (%04b)", found)
	}
	return p, nil
}

// doppelSpeed downloads url under doppel exec in the laptop and returns curl's bytes per second.
func (s *shop) doppelSpeed(t *testing.T, url string, size int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := s.exec(ctx, []string{"--no-incoming", "--target", "deployment/files", "--log-level", "warn"},
		"curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}", url)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("doppel exec curl: %v\n%s", err, b)
	}
	return speed(t, string(b), size)
}

// kubectlForwardSpeed runs kubectl port-forward to pod in the laptop, downloads url (with the
// local port put in) and returns curl's bytes per second.
func (s *shop) kubectlForwardSpeed(t *testing.T, pod, url string, size int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0") // a port number that is free (in any namespace, a guess)
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pf := s.laptop.Command(ctx, testenv.AsNobody(os.Getenv("KUBECTL"), "--kubeconfig", s.kubeconfig, "port-forward", "pod/"+pod, fmt.Sprintf("%d:80", port))...)
	stdout, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		pf.Process.Kill()
		pf.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "Forwarding from") {
		t.Fatalf("kubectl port-forward: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	b, err := s.laptop.Command(ctx, testenv.AsNobody("curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}",
		fmt.Sprintf(url, port))...).Output()
	if err != nil {
		t.Fatalf("curl through kubectl port-forward: %v\n%s", err, b)
	}
	return speed(t, string(b), size)
}

func speed(t *testing.T, out string, size int) float64 {
	t.Helper()
	f := strings.Fields(lastLines(out, 1))
	if len(f) != 2 || f[0] != strconv.Itoa(size) {
		t.Fatalf("curl: %q, want %d bytes and a speed", out, size)
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// writeBig writes size bytes of a pattern that compression cannot shrink much.
func writeBig(path string, size int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	x := uint64(88172645463325252)
	for i := range buf {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		buf[i] = byte(x)
	}
	for n := 0; n < size; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func mean(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
