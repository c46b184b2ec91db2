package local_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

// TestBaseline checks the ground the doppel tests stand on: every client case works when run
// directly in the pod's namespaces, and fails in the laptop namespace without doppel. It needs
// no doppel binary.
func TestBaseline(t *testing.T) {
	testenv.Privileged(t)
	tp := testenv.NewTopology(t)

	for _, c := range clientCases(t) {
		t.Run("pod/"+c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			argv := testenv.AsNobody(c.argv...)
			var stdout, stderr bytes.Buffer
			cmd := tp.InPod(ctx, argv[0], argv[1:]...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v in the pod: %v\nstdout:\n%s\nstderr:\n%s", c.argv, err, &stdout, &stderr)
			}
			if m := missing(stdout.String(), c.want); len(m) > 0 {
				t.Errorf("%v in the pod: stdout lacks %q:\n%s", c.argv, m, &stdout)
			}
		})
		t.Run("laptop/"+c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			argv := testenv.AsNobody(c.argv...)
			var stdout, stderr bytes.Buffer
			cmd := tp.InLaptop(ctx, argv[0], argv[1:]...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("%v in the laptop hung until the timeout; it should fail fast", c.argv)
			}
			if err == nil {
				t.Errorf("%v in the laptop without doppel succeeded; want a failure\nstdout:\n%s", c.argv, &stdout)
			}
			t.Logf("without doppel, as expected: %v; stderr: %s", err, strings.TrimSpace(stderr.String()))
			if m := missing(stdout.String(), c.want); len(m) != len(c.want) {
				t.Errorf("%v in the laptop without doppel printed %q", c.argv, stdout.String())
			}
		})
	}

	t.Run("pod/view", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, c := range []struct {
			argv []string
			want string
		}{
			{[]string{"hostname"}, testenv.PodHostname + "\n"},
			{[]string{"uname", "-n"}, testenv.PodHostname + "\n"},
			{[]string{"cat", "/etc/hostname"}, testenv.PodHostname + "\n"},
			{[]string{"cat", "/etc/resolv.conf"}, testenv.PodResolvConf},
			{[]string{"cat", "/etc/hosts"}, testenv.PodHosts},
		} {
			argv := testenv.AsNobody(c.argv...)
			out, err := tp.InPod(ctx, argv[0], argv[1:]...).CombinedOutput()
			if err != nil || string(out) != c.want {
				t.Errorf("%v in the pod = %q, %v; want %q", c.argv, out, err, c.want)
			}
		}
		environ, err := os.ReadFile("/proc/" + strconv.Itoa(tp.PodPID()) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range testenv.PodEnv {
			if !strings.Contains("\x00"+string(environ), "\x00"+kv+"\x00") {
				t.Errorf("pod process environment lacks %s: %q", kv, environ)
			}
		}
	})

	t.Run("laptop/view", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := tp.InLaptop(ctx, "cat", "/etc/resolv.conf").CombinedOutput()
		if err != nil || string(out) != testenv.LaptopResolvConf {
			t.Errorf("laptop resolv.conf = %q, %v; want %q", out, err, testenv.LaptopResolvConf)
		}
		// No route leaves the laptop: even the service's address is unreachable.
		out, err = tp.InLaptop(ctx, "curl", "-sS", "--max-time", "3", "http://"+testenv.NginxIP+"/").CombinedOutput()
		if err == nil {
			t.Errorf("curl of %s by address from the laptop succeeded: %q", testenv.NginxIP, out)
		}
		out, err = tp.InLaptop(ctx, "hostname").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) == testenv.PodHostname {
			t.Errorf("laptop hostname = %q, %v; want the machine's", out, err)
		}
	})
}
