package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProc writes a /proc-like tree: pid -> (cgroup file, start time).
func fakeProc(t *testing.T, procs map[int][2]string) string {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, fmt.Sprint(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// Field 2 holds a space and a parenthesis, as a command name may.
		stat := fmt.Sprintf("%d (a) b) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %s 0 0", pid, p[1])
		os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644)
		os.WriteFile(filepath.Join(d, "cgroup"), []byte(p[0]), 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "self"), 0o755)
	return dir
}

func TestFindContainer(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	cgfs := "12:memory:/kubepods/besteffort/pod1234/" + id + "\n"
	systemd := "0::/kubepods.slice/cri-containerd-" + id + ".scope\n"
	other := "12:memory:/kubepods/besteffort/pod1234/fedcba9876543210\n"
	proc := fakeProc(t, map[int][2]string{
		10: {other, "50"},
		40: {cgfs, "300"}, // a worker, started later
		90: {cgfs, "200"}, // the container's first process (pids wrap: a larger pid may be older)
		95: {systemd, "250"},
	})
	pid, err := FindContainer(proc, id)
	if err != nil || pid != 90 {
		t.Errorf("FindContainer = %d, %v; want 90", pid, err)
	}

	_, err = FindContainer(proc, "aaaaaaaaaaaaaaaa")
	if err == nil || !strings.Contains(err.Error(), "hostPID") {
		t.Errorf("missing container: err = %v, want one naming hostPID", err)
	}
	for _, bad := range []string{"", "abc", "containerd://" + id, "../../" + id} {
		if _, err := FindContainer(proc, bad); err == nil {
			t.Errorf("FindContainer(%q): no error", bad)
		}
	}
}

// The test binary's own process is found by the id in its own cgroup path (a real /proc).
func TestFindContainerRealProc(t *testing.T) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	var leaf string
	for line := range strings.Lines(string(cg)) {
		if p := strings.TrimSpace(line[strings.LastIndexByte(line, ':')+1:]); len(filepath.Base(p)) >= 12 {
			leaf = filepath.Base(p)
		}
	}
	if leaf == "" || strings.ContainsAny(leaf, ":") {
		t.Skipf("this process's cgroups have no leaf name usable as an id: %q", cg)
	}
	pid, err := FindContainer("/proc", leaf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		t.Fatalf("found pid %d: %v", pid, err)
	}
}

// The environment comes from the bundle the container's parent (the runtime's shim) works in,
// and only when that bundle is the container's.
func TestBundleEnv(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	proc := fakeProc(t, map[int][2]string{
		7: {"", "100"},
		9: {"", "200"},
	})
	// pid 9's parent is 7 (the fourth field of stat).
	os.WriteFile(filepath.Join(proc, "9", "stat"), []byte("9 (nginx: master) S 7 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 200 0 0"), 0o644)
	bundle := filepath.Join(t.TempDir(), "k8s.io", id)
	os.MkdirAll(bundle, 0o755)
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2","process":{"env":["PATH=/usr/bin","SHOP_MODE=test"]}}`), 0o644)
	if err := os.Symlink(bundle, filepath.Join(proc, "7", "cwd")); err != nil {
		t.Fatal(err)
	}
	env, err := bundleEnv(proc, 9, id)
	if err != nil || strings.Join(env, " ") != "PATH=/usr/bin SHOP_MODE=test" {
		t.Errorf("bundleEnv = %q, %v", env, err)
	}
	if _, err := bundleEnv(proc, 9, "fedcba9876543210fedcba98"); err == nil {
		t.Error("bundleEnv read the bundle of another container")
	}

	// containerd runs one shim per pod, in the sandbox's bundle: the container's is beside it.
	sandbox := filepath.Join(filepath.Dir(bundle), "5a5a5a5a5a5a5a5a5a5a5a5a")
	os.MkdirAll(sandbox, 0o755)
	os.WriteFile(filepath.Join(sandbox, "config.json"), []byte(`{"process":{"env":["PATH=/pause"]}}`), 0o644)
	os.Remove(filepath.Join(proc, "7", "cwd"))
	os.Symlink(sandbox, filepath.Join(proc, "7", "cwd"))
	env, err = bundleEnv(proc, 9, id)
	if err != nil || strings.Join(env, " ") != "PATH=/usr/bin SHOP_MODE=test" {
		t.Errorf("bundleEnv beside the sandbox's bundle = %q, %v", env, err)
	}
}
