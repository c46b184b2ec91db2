package testenv_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
	})
	if tp == nil {
		t.Fatal("no topology")
	}
	for _, ns := range []string{tp.ClusterNetNS(), tp.PodNetNS(), tp.LaptopNetNS()} {
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
