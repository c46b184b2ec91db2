package local_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

// TestDoppelExecSignals sends SIGTERM, SIGINT and SIGHUP to doppel while the program runs:
// the program gets them, doppel's exit status is the program's, and nothing of the session
// stays behind, not even the program's background child.
func TestDoppelExecSignals(t *testing.T) {
	tp, doppel := setup(t)
	for _, c := range []struct {
		sig  syscall.Signal
		name string
	}{
		{syscall.SIGTERM, "TERM"},
		{syscall.SIGINT, "INT"},
		{syscall.SIGHUP, "HUP"},
	} {
		t.Run(c.name+"-trapped", func(t *testing.T) {
			// A shell runs its traps only between commands: `wait` lets it run them at once,
			// a foreground sleep would not.
			script := fmt.Sprintf(`trap "echo got-%[1]s; exit 3" %[1]s; sleep 30 >/dev/null 2>&1 & echo "ready $!"; wait`, c.name)
			r, child := signalDoppel(t, tp, doppel, c.sig, "sh", "-c", script)
			if r.exitCode != 3 || !strings.Contains(r.stdout, "got-"+c.name+"\n") {
				t.Errorf("doppel exec sh (trapping %s) after SIG%s: want got-%s and exit 3; got %v", c.name, c.name, c.name, r)
			}
			checkGone(t, child, "sleep 30")
		})
	}
	t.Run("TERM-untrapped", func(t *testing.T) {
		r, prog := signalDoppel(t, tp, doppel, syscall.SIGTERM, "sh", "-c", `echo "ready $$"; exec sleep 30`)
		if r.exitCode != 128+int(syscall.SIGTERM) {
			t.Errorf("doppel exec sleep after SIGTERM: want exit %d; got %v", 128+int(syscall.SIGTERM), r)
		}
		checkGone(t, prog, "sleep 30")
	})
}

// signalDoppel starts doppel exec with argv, which prints "ready PID" when it is ready, sends
// sig to doppel and waits for it to end. It returns the result and PID.
func signalDoppel(t *testing.T, tp *testenv.Topology, doppel string, sig syscall.Signal, argv ...string) (result, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := doppelCmd(ctx, tp, doppel, nil, nil, argv...)
	// A pipe of our own rather than a buffer: reading it does not hold up Wait.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = pw, &stderr
	err = cmd.Start()
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once Wait has returned
		<-done
		done <- nil
	})
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	var stdout strings.Builder
	pid := 0
	select {
	case line, ok := <-lines:
		if !ok || !strings.HasPrefix(line, "ready ") {
			t.Fatalf("doppel exec %v: want \"ready PID\" first; got %q (open %v)\nstderr:\n%s", argv, line, ok, &stderr)
		}
		stdout.WriteString(line + "\n")
		if pid, err = strconv.Atoi(strings.TrimPrefix(line, "ready ")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if testenv.Alive(pid, "") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	case <-time.After(15 * time.Second):
		t.Fatalf("doppel exec %v: not ready after 15s\nstderr:\n%s", argv, &stderr)
	}

	if err := syscall.Kill(cmd.Process.Pid, sig); err != nil {
		t.Fatalf("signal doppel (pid %d): %v", cmd.Process.Pid, err)
	}
	sent := time.Now()
	select {
	case err = <-done:
		done <- err // for the cleanup's receive
	case <-time.After(10 * time.Second):
		t.Fatalf("doppel exec %v still runs 10s after %v\nstderr:\n%s", argv, sig, &stderr)
	}
	elapsed := time.Since(sent)
	// The pipe ends when the last process holding it is gone.
	timeout := time.After(5 * time.Second)
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break read
			}
			stdout.WriteString(line + "\n")
		case <-timeout:
			t.Errorf("doppel exec %v: its stdout is still open 5s after doppel ended: something of the session still runs", argv)
			break read
		}
	}
	r := result{stdout: stdout.String(), stderr: stderr.String(), exitCode: cmd.ProcessState.ExitCode(), err: err, elapsed: elapsed}
	checkNoLeftovers(t, doppel)
	return r, pid
}

// checkGone fails t when pid still runs cmdline shortly after doppel ended.
func checkGone(t *testing.T, pid int, cmdline string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for testenv.Alive(pid, cmdline) {
		if time.Now().After(deadline) {
			t.Errorf("left behind after doppel exec ended: pid %d: %s", pid, cmdline)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDoppelExecDescendants checks that what the program leaves running when it exits is
// ended, and that doppel exits with the program's status without waiting for it.
func TestDoppelExecDescendants(t *testing.T) {
	tp, doppel := setup(t)
	for _, c := range []struct {
		name   string
		script string
	}{
		// The background sleep keeps doppel's stdout open.
		{"background", `sleep 300 & echo "started $!"; exit 5`},
		// A daemon in a session of its own, with nothing of doppel's open.
		{"daemon", `(setsid sleep 300 </dev/null >/dev/null 2>&1 & echo "started $!"); exit 5`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runDoppel(t, tp, doppel, nil, nil, "sh", "-c", c.script)
			pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(r.stdout, "started ")))
			if err != nil {
				t.Fatalf("doppel exec sh -c %q: want \"started PID\"; got %v", c.script, r)
			}
			checkGone(t, pid, "sleep 300")
			if r.exitCode != 5 {
				t.Errorf("doppel exec sh -c %q: want exit 5; got %v", c.script, r)
			}
			if r.elapsed > 3*time.Second {
				t.Errorf("doppel exec sh -c %q took %v; want it to end when the program does", c.script, r.elapsed)
			}
		})
	}
}

// TestDoppelExecNotRoot runs doppel exec as an unprivileged user: it must refuse in one
// sentence that says to use sudo, with exit 125, before it starts anything.
func TestDoppelExecNotRoot(t *testing.T) {
	tp, doppel := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	argv := testenv.AsNobody(append([]string{doppel}, execArgs(tp, nil, []string{"sh", "-c", "echo started"})...)...)
	r := run(tp.InLaptop(ctx, argv[0], argv[1:]...))
	checkRefused(t, r, "sudo")
	checkNoLeftovers(t, doppel)
}

// doctor reports the kernel features of interception, incoming traffic and files.
func TestDoctor(t *testing.T) {
	testenv.Privileged(t)
	doppel := testenv.BuildDoppel(t)
	r := run(exec.Command(doppel, "doctor"))
	if r.exitCode != 0 {
		t.Fatalf("doppel doctor: %s", r)
	}
	for _, f := range []string{"SECCOMP_RET_USER_NOTIF", "nftables owned tables (incoming)", "AF_PACKET TPACKET_V3 (incoming)", "openat2 RESOLVE_IN_ROOT (files)"} {
		found := false
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(l, f) && strings.Contains(l, " ok ") {
				found = true
			}
		}
		if !found {
			t.Errorf("doctor does not report %q as ok:\n%s", f, r.stdout)
		}
	}
}
