package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Laptop is a network namespace standing for a developer's machine in the cluster tier: it
// reaches one address of the machine's own namespace (the test cluster's API server) through a
// veth pair, and nothing else; a connection that doppel failed to redirect fails there at once.
// Commands started through Command see LaptopResolvConf as /etc/resolv.conf.
type Laptop struct {
	t      testing.TB
	ns     string
	dir    string
	etcDir string
}

// laptopSeq numbers the laptops of one test binary.
var laptopSeq int

// NewLaptop makes a laptop namespace that reaches reach (an address of this machine, such as
// the test cluster's node address) and nothing else, with the /30 at 10.88.(200+n).0 on its
// veth pair. It is removed with t.Cleanup.
func NewLaptop(t testing.TB, reach netip.Addr) *Laptop {
	t.Helper()
	Privileged(t)
	laptopSeq++
	n := laptopSeq
	l := &Laptop{t: t, ns: fmt.Sprintf("%s%d-%d", LaptopPrefix, os.Getpid(), n)}
	host := fmt.Sprintf("dpl-lh%d-%d", os.Getpid()%100000, n)
	hostIP := fmt.Sprintf("10.88.%d.1", 200+n%50)
	laptopIP := fmt.Sprintf("10.88.%d.2", 200+n%50)
	t.Cleanup(l.cleanup)
	run := func(argv ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	run("ip", "netns", "add", l.ns)
	run("ip", "-n", l.ns, "link", "set", "lo", "up")
	run("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", l.ns)
	run("ip", "addr", "add", hostIP+"/30", "dev", host)
	run("ip", "link", "set", host, "up")
	run("ip", "-n", l.ns, "addr", "add", laptopIP+"/30", "dev", "eth0")
	run("ip", "-n", l.ns, "link", "set", "eth0", "up")
	run("ip", "-n", l.ns, "route", "add", reach.String()+"/32", "via", hostIP)

	l.etcDir = filepath.Join("/etc/netns", l.ns)
	if err := os.MkdirAll(l.etcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.etcDir, "resolv.conf"), []byte(LaptopResolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "doppel-laptop-")
	if err != nil {
		t.Fatal(err)
	}
	l.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return l
}

// NetNS is the namespace's name.
func (l *Laptop) NetNS() string { return l.ns }

// Dir is a world-readable directory removed with the laptop.
func (l *Laptop) Dir() string { return l.dir }

// Command returns a command that runs argv as root in the laptop, with BaseEnv (append to
// cmd.Env to add). ctx kills it.
func (l *Laptop) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return command(ctx, "ip", append([]string{"netns", "exec", l.ns}, argv...)...)
}

func (l *Laptop) cleanup() {
	if out, err := exec.Command("ip", "netns", "delete", l.ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
		l.t.Errorf("cleanup: ip netns delete %s: %v: %s", l.ns, err, out)
	}
	for _, d := range []string{l.etcDir, l.dir} {
		if d != "" {
			if err := os.RemoveAll(d); err != nil {
				l.t.Errorf("cleanup: %v", err)
			}
		}
	}
}
