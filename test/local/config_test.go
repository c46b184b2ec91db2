package local_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

// hasLine reports whether out holds the line line.
func hasLine(out, line string) bool { return strings.Contains("\n"+out, "\n"+line+"\n") }

// hasVar reports whether the output of `env` sets name.
func hasVar(out, name string) bool { return strings.Contains("\n"+out, "\n"+name+"=") }

// TestDoppelExecEnvFlags checks the flags that choose the program's environment.
func TestDoppelExecEnvFlags(t *testing.T) {
	tp, doppel := setup(t)
	for _, c := range []struct {
		name    string
		flags   []string
		own     []string // the program's own environment, besides BaseEnv
		want    []string // lines of `env`
		without []string // names `env` must not show
	}{
		{
			name:    "include",
			flags:   []string{"--env-include", "POD_*"},
			want:    []string{"POD_NAME=" + testenv.PodHostname, "POD_NAMESPACE=" + testenv.PodNamespace},
			without: []string{"SHOP_DB_URL", "KUBERNETES_SERVICE_HOST", "NGINX_SERVICE_HOST"},
		},
		{
			name:    "exclude",
			flags:   []string{"--env-exclude", "SHOP_*", "--env-exclude", "KUBERNETES_*"},
			want:    []string{"POD_NAME=" + testenv.PodHostname, "NGINX_SERVICE_HOST=" + testenv.NginxIP},
			without: []string{"SHOP_DB_URL", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"},
		},
		{
			name:  "override-wins",
			flags: []string{"--env", "SHOP_DB_URL=postgres://flag:5432", "--env", "POD_NAME=from-flag"},
			own:   []string{"SHOP_DB_URL=postgres://localhost:5432"},
			want:  []string{"SHOP_DB_URL=postgres://flag:5432", "POD_NAME=from-flag", "POD_NAMESPACE=" + testenv.PodNamespace},
		},
		{
			name:    "no-env",
			flags:   []string{"--no-env"},
			own:     []string{"DOPPEL_TEST_OWN=yes"},
			want:    []string{"DOPPEL_TEST_OWN=yes"},
			without: []string{"POD_NAME", "POD_NAMESPACE", "SHOP_DB_URL", "NGINX_SERVICE_HOST"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runDoppel(t, tp, doppel, c.flags, c.own, "env")
			if r.exitCode != 0 {
				t.Fatalf("doppel exec %v -- env: %v", c.flags, r)
			}
			for _, line := range c.want {
				if !hasLine(r.stdout, line) {
					t.Errorf("doppel exec %v -- env lacks %s:\n%s", c.flags, line, r.stdout)
				}
			}
			for _, name := range c.without {
				if hasVar(r.stdout, name) {
					t.Errorf("doppel exec %v -- env sets %s:\n%s", c.flags, name, r.stdout)
				}
			}
		})
	}
}

// TestDoppelExecConfigFile checks the configuration file given with -f and found in the
// working directory, that flags win over it, and how bad files and flag values are refused.
func TestDoppelExecConfigFile(t *testing.T) {
	tp, doppel := setup(t)
	pod := fmt.Sprintf("pid:%d", tp.PodPID())
	const noPID = 999999
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", noPID)); err == nil {
		t.Skipf("pid %d exists on this machine", noPID)
	}
	// The file sends loopback to the target (the sidecar answers there), keeps only POD_*
	// variables of the target and sets DOPPEL_FROM.
	const options = `outgoing:
  remote:
    cidrs: [127.0.0.1/32]
env:
  include: ["POD_*"]
  override:
    DOPPEL_FROM: file
`
	// probe prints what the file's options decide, then talks to the sidecar.
	probe := []string{"sh", "-c",
		`echo "from=$DOPPEL_FROM pod=$POD_NAME shop=${SHOP_DB_URL:-unset}"; exec /usr/bin/python3 -c "$1" 127.0.0.1 "$2" hello-sidecar`,
		"sh", pyTCPLine, strconv.Itoa(testenv.SidecarPort)}
	wantProbe := []string{"from=file pod=" + testenv.PodHostname + " shop=unset\n", "echo:hello-sidecar\n"}

	write := func(t *testing.T, path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("file-flag", func(t *testing.T) {
		file := filepath.Join(tp.Dir(), "file-flag", "doppel.yaml")
		write(t, file, options)
		r := runDoppel(t, tp, doppel, []string{"-f", file}, nil, probe...)
		if r.exitCode != 0 {
			t.Fatalf("doppel exec -f %s: %v", file, r)
		}
		if m := missing(r.stdout, wantProbe); len(m) > 0 {
			t.Errorf("doppel exec -f %s: stdout lacks %q: %v", file, m, r)
		}
	})

	t.Run("working-dir", func(t *testing.T) {
		dir := filepath.Join(tp.Dir(), "project")
		write(t, filepath.Join(dir, ".doppel", "config.yaml"), "target: "+pod+"\n"+options)
		args := append([]string{"exec", "--"}, probe...)
		r := runDoppelArgs(t, tp, doppel, dir, nil, args...)
		if r.exitCode != 0 {
			t.Fatalf("doppel exec in %s with .doppel/config.yaml: %v", dir, r)
		}
		if m := missing(r.stdout, wantProbe); len(m) > 0 {
			t.Errorf("doppel exec in %s with .doppel/config.yaml: stdout lacks %q: %v", dir, m, r)
		}
	})

	t.Run("flag-wins", func(t *testing.T) {
		file := filepath.Join(tp.Dir(), "flag-wins", "doppel.yaml")
		write(t, file, fmt.Sprintf("target: pid:%d\nenv:\n  override:\n    DOPPEL_FROM: file\n", noPID))
		r := runDoppelArgs(t, tp, doppel, "", nil, "exec", "-f", file, "--target", pod, "--env", "DOPPEL_FROM=flag", "--",
			"sh", "-c", `echo "from=$DOPPEL_FROM"; hostname`)
		if r.exitCode != 0 {
			t.Fatalf("doppel exec -f %s --target %s: %v", file, pod, r)
		}
		if want := "from=flag\n" + testenv.PodHostname + "\n"; r.stdout != want {
			t.Errorf("doppel exec -f %s --target %s --env DOPPEL_FROM=flag: want stdout %q; got %v", file, pod, want, r)
		}
	})

	// bad has an invalid CIDR on line 4.
	bad := filepath.Join(tp.Dir(), "bad", "doppel.yaml")
	write(t, bad, "target: "+pod+"\noutgoing:\n  local:\n    cidrs: [10.96.0.0/16, nonsense]\n")

	t.Run("check-bad-file", func(t *testing.T) {
		r := runDoppelArgs(t, tp, doppel, "", nil, "config", "check", bad)
		if r.exitCode <= 0 {
			t.Errorf("doppel config check %s: want a non-zero exit; got %v", bad, r)
		}
		if !strings.Contains(r.stderr, bad+":4:") || !strings.Contains(r.stderr, "nonsense") {
			t.Errorf("doppel config check %s: stderr does not point at %s:4: and \"nonsense\": %v", bad, bad, r)
		}
	})

	t.Run("exec-bad-file", func(t *testing.T) {
		r := runDoppelArgs(t, tp, doppel, "", nil, "exec", "-f", bad, "--", "sh", "-c", "echo started")
		checkRefused(t, r, "nonsense")
	})

	t.Run("exec-bad-flag", func(t *testing.T) {
		r := runDoppel(t, tp, doppel, []string{"--local-cidr", "nonsense"}, nil, "sh", "-c", "echo started")
		checkRefused(t, r, "nonsense")
	})
}

// checkRefused checks that doppel refused to start: exit 125, one line on stderr that
// mentions what was wrong, and the program did not run.
func checkRefused(t *testing.T, r result, mention string) {
	t.Helper()
	if r.exitCode != 125 {
		t.Errorf("want exit 125; got %v", r)
	}
	msg := strings.TrimSpace(r.stderr)
	if msg == "" || strings.Contains(msg, "\n") || !strings.Contains(msg, mention) {
		t.Errorf("want one line on stderr that mentions %q; got %v", mention, r)
	}
	if strings.Contains(r.stdout, "started") {
		t.Errorf("the program ran: %v", r)
	}
	if r.elapsed > 5*time.Second {
		t.Errorf("the refusal took %v; want it before anything starts", r.elapsed)
	}
	t.Logf("refused: exit %d: %s", r.exitCode, msg)
}
