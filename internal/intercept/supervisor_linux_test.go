package intercept

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// checkFDs fails the test if it ends with more open file descriptors than it started with.
func checkFDs(t *testing.T) {
	t.Helper()
	// The runtime opens its poller's fds (epoll, eventfd) with the first pollable file.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	count := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	before := count()
	t.Cleanup(func() {
		if after := count(); after > before {
			t.Errorf("%d file descriptors leaked", after-before)
		}
	})
}

// run starts cfg with the program's stdout and stderr in buffers, waits for it and returns
// them with its state.
func run(t *testing.T, cfg Config) (stdout, stderr string, state *os.ProcessState) {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Stdout, cfg.Stderr = outW, errW
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=/usr/bin:/bin"}
	}
	s, err := Start(context.Background(), cfg)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		t.Fatalf("Start: %v", err)
	}
	var wg sync.WaitGroup
	var outBuf, errBuf bytes.Buffer
	wg.Go(func() { io.Copy(&outBuf, outR); outR.Close() })
	wg.Go(func() { io.Copy(&errBuf, errR); errR.Close() })
	state, err = s.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	wg.Wait()
	return outBuf.String(), errBuf.String(), state
}

func sh(script string) Config {
	return Config{Path: "/bin/sh", Argv: []string{"sh", "-c", script}}
}

const markerPath = "/etc/doppel-test-marker"

// serveMarker is an openat handler that serves markerPath from a memfd with content, answering
// with AddFD and Return, or with ReturnFD in one step.
func serveMarker(t *testing.T, content string, calls *int, returnFD bool) Handler {
	var mu sync.Mutex
	return func(r *Request) {
		path, err := r.ReadString(r.Arg(1), unix.PathMax)
		if err != nil {
			t.Errorf("ReadString: %v", err)
			r.Continue()
			return
		}
		if path != markerPath {
			r.Continue()
			return
		}
		mu.Lock()
		*calls++
		mu.Unlock()
		fd, err := unix.MemfdCreate("marker", unix.MFD_CLOEXEC)
		if err != nil {
			t.Error(err)
			r.Errno(unix.EIO)
			return
		}
		mem := os.NewFile(uintptr(fd), "marker")
		defer mem.Close()
		mem.WriteString(content)
		// A fresh read-only description at offset 0.
		f, err := os.Open("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			t.Error(err)
			r.Errno(unix.EIO)
			return
		}
		defer f.Close()
		if returnFD {
			// One step: installed and returned (SECCOMP_ADDFD_FLAG_SEND).
			if err := r.ReturnFD(int(f.Fd()), r.Arg(2)&unix.O_CLOEXEC != 0); err != nil {
				t.Errorf("ReturnFD: %v", err)
				r.Errno(unix.EIO)
			}
			return
		}
		newfd, err := r.AddFD(f, r.Arg(2)&unix.O_CLOEXEC != 0)
		if err != nil {
			t.Errorf("AddFD: %v", err)
			r.Errno(unix.EIO)
			return
		}
		r.Return(int64(newfd))
	}
}

func TestChildAndGrandchildTrapped(t *testing.T) {
	for _, returnFD := range []bool{false, true} {
		t.Run(fmt.Sprintf("returnFD=%v", returnFD), func(t *testing.T) {
			if returnFD && !CanReturnFD() {
				t.Skip("no SECCOMP_ADDFD_FLAG_SEND (Linux 5.14)")
			}
			checkFDs(t)
			const content = "hello from doppel\n"
			calls := 0
			cfg := sh(`cat ` + markerPath + `; /bin/sh -c "cat ` + markerPath + `"`)
			cfg.Rules = []Rule{{Nr: unix.SYS_OPENAT, ArgNonZero: -1}}
			cfg.Handlers = map[int]Handler{unix.SYS_OPENAT: serveMarker(t, content, &calls, returnFD)}
			out, errOut, state := run(t, cfg)
			if out != content+content || !state.Success() {
				t.Errorf("output %q, stderr %q, state %v; want %q twice", out, errOut, state, content)
			}
			if calls != 2 {
				t.Errorf("handler served the marker %d times, want 2", calls)
			}
		})
	}
}

func TestReturnValue(t *testing.T) {
	checkFDs(t)
	var pids []int
	cfg := sh(`echo $PPID; /bin/sh -c 'echo $PPID'`)
	cfg.Rules = []Rule{{Nr: unix.SYS_GETPPID, ArgNonZero: -1}}
	cfg.Handlers = map[int]Handler{unix.SYS_GETPPID: func(r *Request) {
		pids = append(pids, r.Pid())
		r.Return(4242)
	}}
	out, errOut, _ := run(t, cfg)
	if out != "4242\n4242\n" {
		t.Errorf("output %q (stderr %q), want 4242 twice", out, errOut)
	}
	if len(pids) != 2 || pids[0] == pids[1] {
		t.Errorf("getppid callers %v, want two different processes", pids)
	}
}

func TestRuleWithArgument(t *testing.T) {
	// Trap openat only when its flags are non-zero: the dynamic loader's O_CLOEXEC opens are
	// trapped, cat's O_RDONLY open of the marker is not (so it is not served).
	var mu sync.Mutex
	var flags []uint64
	calls := 0
	serve := serveMarker(t, "served\n", &calls, false)
	cfg := sh(`cat ` + markerPath)
	cfg.Rules = []Rule{{Nr: unix.SYS_OPENAT, ArgNonZero: 2}}
	cfg.Handlers = map[int]Handler{unix.SYS_OPENAT: func(r *Request) {
		mu.Lock()
		flags = append(flags, r.Arg(2))
		mu.Unlock()
		serve(r)
	}}
	out, _, state := run(t, cfg)
	if out != "" || state.Success() || calls != 0 {
		t.Errorf("output %q, state %v, served %d times; want cat to fail unserved", out, state, calls)
	}
	if len(flags) == 0 {
		t.Error("no openat with non-zero flags trapped")
	}
	for _, f := range flags {
		if f == 0 {
			t.Errorf("openat with zero flags trapped")
		}
	}
}

func TestExitStatus(t *testing.T) {
	checkFDs(t)
	_, _, state := run(t, sh(`exit 7`))
	if state.ExitCode() != 7 {
		t.Errorf("exit code %d, want 7", state.ExitCode())
	}
}

func TestExecErrors(t *testing.T) {
	checkFDs(t)
	notExec := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, dir string
		op        string
		errno     syscall.Errno
	}{
		{"/nonexistent/doppel-test", "", "exec", syscall.ENOENT},
		{notExec, "", "exec", syscall.EACCES},
		{"/bin/true", "/nonexistent-dir", "chdir", syscall.ENOENT},
	} {
		_, err := Start(context.Background(), Config{Path: tt.path, Argv: []string{"x"}, Dir: tt.dir})
		if !errors.Is(err, tt.errno) {
			t.Errorf("Start(%s, dir %q) = %v, want an error wrapping %v", tt.path, tt.dir, err, tt.errno)
		}
		var pe *os.PathError
		if !errors.As(err, &pe) || pe.Op != tt.op {
			t.Errorf("Start(%s, dir %q) = %v, want a *os.PathError with Op %q", tt.path, tt.dir, err, tt.op)
		}
	}
}

func TestSeccompStatusAndEnv(t *testing.T) {
	checkFDs(t)
	cfg := Config{Path: "/bin/sleep", Argv: []string{"sleep", "100"}, Env: []string{"A=1", "B=2"}}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(s.Pid()) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(status, []byte("\nSeccomp:\t2\n")) {
		t.Errorf("program status lacks Seccomp: 2:\n%s", status)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(s.Pid()) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if string(env) != "A=1\x00B=2\x00" {
		t.Errorf("program environment %q, want exactly A=1 B=2", env)
	}
	if pgid, _ := unix.Getpgid(s.Pid()); pgid != s.Pid() {
		t.Errorf("program process group %d, want its own (%d)", pgid, s.Pid())
	}
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	state, err := s.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ws := state.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("state %v, want killed by SIGTERM", state)
	}
}

func TestWaitEndsDescendants(t *testing.T) {
	checkFDs(t)
	// Another child of this process, not a descendant of the program: must survive.
	bystander := exec.Command("sleep", "100")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { bystander.Process.Kill(); bystander.Wait() }()

	script := `sleep 101 & echo $!
(trap "" TERM; exec sleep 102) & echo $!
setsid sleep 103 & echo $!
sh -c 'sleep 104 & echo $!' 
`
	start := time.Now()
	out, errOut, state := run(t, sh(script))
	elapsed := time.Since(start)
	if !state.Success() {
		t.Fatalf("program failed: %v, stderr %q", state, errOut)
	}
	pids := strings.Fields(out)
	if len(pids) != 4 {
		t.Fatalf("output %q, want 4 pids", out)
	}
	for _, p := range pids {
		if _, err := os.Stat("/proc/" + p); err == nil {
			cmdline, _ := os.ReadFile("/proc/" + p + "/cmdline")
			t.Errorf("descendant %s (%q) still exists after Wait", p, cmdline)
		}
	}
	// The one ignoring SIGTERM needs the SIGKILL after 2 s.
	if elapsed < termGrace || elapsed > termGrace+3*time.Second {
		t.Errorf("Wait took %v, want a little over %v", elapsed, termGrace)
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("bystander child was touched: %v", err)
	}
}

func TestMemoryRoundTrip(t *testing.T) {
	checkFDs(t)
	cfg := Config{Path: "/usr/bin/uname", Argv: []string{"uname", "-s", "-n"}}
	cfg.Rules = []Rule{{Nr: unix.SYS_UNAME, ArgNonZero: -1}}
	cfg.Handlers = map[int]Handler{unix.SYS_UNAME: func(r *Request) {
		var u unix.Utsname
		copy(u.Sysname[:], "DoppelOS")
		copy(u.Nodename[:], "remote-pod")
		copy(u.Release[:], "6.18")
		copy(u.Machine[:], "x86_64")
		raw := unsafe.Slice((*byte)(unsafe.Pointer(&u)), unsafe.Sizeof(u))
		if err := r.WriteMem(r.Arg(0), raw); err != nil {
			t.Errorf("WriteMem: %v", err)
		}
		back := make([]byte, len(raw))
		if err := r.ReadMem(r.Arg(0), back); err != nil || !bytes.Equal(back, raw) {
			t.Errorf("ReadMem after WriteMem: %v, equal %v", err, bytes.Equal(back, raw))
		}
		if s, err := r.ReadString(r.Arg(0)+uint64(unsafe.Offsetof(u.Nodename)), 64); err != nil || s != "remote-pod" {
			t.Errorf("ReadString = %q, %v", s, err)
		}
		if _, err := r.ReadString(r.Arg(0), 3); !errors.Is(err, unix.ENAMETOOLONG) {
			t.Errorf("ReadString with a short max = %v, want ENAMETOOLONG", err)
		}
		r.Return(0)
	}}
	out, errOut, _ := run(t, cfg)
	if out != "DoppelOS remote-pod\n" {
		t.Errorf("output %q (stderr %q)", out, errOut)
	}
}

func testBinary(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestIov(t *testing.T) {
	checkFDs(t)
	var written []byte
	cfg := Config{Path: testBinary(t), Argv: []string{"helper"}, Env: []string{helperEnv + "=iov"}}
	cfg.Rules = []Rule{{Nr: unix.SYS_READV, ArgNonZero: -1}, {Nr: unix.SYS_WRITEV, ArgNonZero: -1}}
	cfg.Handlers = map[int]Handler{
		unix.SYS_READV: func(r *Request) {
			n, err := r.WriteIov(r.Arg(1), int(r.Arg(2)), []byte("abcdefghijklmnopq"))
			if err != nil {
				t.Errorf("WriteIov: %v", err)
			}
			r.Return(int64(n))
		},
		unix.SYS_WRITEV: func(r *Request) {
			data, err := r.ReadIov(r.Arg(1), int(r.Arg(2)), 1<<20)
			if err != nil {
				t.Errorf("ReadIov: %v", err)
			}
			written = data
			if short, err := r.ReadIov(r.Arg(1), int(r.Arg(2)), 6); err != nil || string(short) != "got ab" {
				t.Errorf("ReadIov limited to 6 = %q, %v", short, err)
			}
			r.Continue()
		},
	}
	out, errOut, state := run(t, cfg)
	want := "got abcdefghijklm\n"
	if out != want || string(written) != want || !state.Success() {
		t.Errorf("output %q, seen by writev handler %q, stderr %q; want %q", out, written, errOut, want)
	}
}

func TestGetFD(t *testing.T) {
	checkFDs(t)
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		t.Fatal(err)
	}
	handled := false
	caller := 0
	cfg := Config{Path: testBinary(t), Argv: []string{"helper", path}, Env: []string{helperEnv + "=getfd"}}
	cfg.Rules = []Rule{{Nr: unix.SYS_FSYNC, ArgNonZero: -1}}
	cfg.Handlers = map[int]Handler{unix.SYS_FSYNC: func(r *Request) {
		defer r.Return(0)
		handled = true
		fd := int(r.Arg(0))
		f, err := r.GetFD(fd)
		if err != nil {
			t.Errorf("GetFD: %v", err)
			return
		}
		defer f.Close()
		buf := make([]byte, 20)
		n, _ := f.ReadAt(buf, 0)
		if string(buf[:n]) != "content" {
			t.Errorf("GetFD copy reads %q", buf[:n])
		}
		ino, err := r.FDInode(fd)
		if err != nil || ino != want.Ino {
			t.Errorf("FDInode = %d, %v; want %d", ino, err, want.Ino)
		}
		if !r.Valid() {
			t.Error("Valid() = false for a pending request")
		}
		caller = r.Pid()
	}}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	state, err := s.Wait()
	if err != nil || !state.Success() || !handled {
		t.Errorf("state %v, err %v, handled %v", state, err, handled)
	}
	if caller == s.Pid() {
		t.Log("fsync came from the main thread; the PIDFD_THREAD path was not exercised")
	}
}

func TestSignalsDoNotLivelock(t *testing.T) {
	checkFDs(t)
	cfg := Config{Path: testBinary(t), Argv: []string{"helper"}, Env: []string{helperEnv + "=signals"}}
	cfg.Rules = []Rule{{Nr: unix.SYS_GETPPID, ArgNonZero: -1}}
	calls := 0
	cfg.Handlers = map[int]Handler{unix.SYS_GETPPID: func(r *Request) { calls++; r.Continue() }}
	outR, outW, _ := os.Pipe()
	defer outR.Close()
	cfg.Stdout = outW
	s, err := Start(context.Background(), cfg)
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(50 * time.Millisecond) // let it install its SIGUSR1 handler
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Signal(syscall.SIGUSR1)
			time.Sleep(50 * time.Microsecond)
		}
	})
	timer := time.AfterFunc(30*time.Second, func() { s.Signal(syscall.SIGKILL) })
	state, err := s.Wait()
	timer.Stop()
	close(stop)
	wg.Wait()
	out, _ := io.ReadAll(outR)
	if err != nil || !state.Success() || string(out) != "done\n" {
		t.Errorf("state %v, err %v, output %q; want done (livelock?)", state, err, out)
	}
	t.Logf("%d notifications for 3000 trapped calls", calls)
}

// TestForeground runs a helper that leads a session on a new pseudo-terminal and starts a
// program in the foreground; the helper checks the terminal comes back to it.
func TestForeground(t *testing.T) {
	checkFDs(t)
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	copied := make(chan struct{})
	defer func() { ptmx.Close(); <-copied }()
	go func() { io.Copy(io.Discard, ptmx); close(copied) }()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testBinary(t), testBinary(t))
	cmd.Env = []string{helperEnv + "=foreground"}
	cmd.Stdin = tty
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Run(); err != nil || out.String() != "foreground ok\n" {
		t.Errorf("helper: %v, output %q", err, out.String())
	}
}

func TestStartContextCanceled(t *testing.T) {
	checkFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, Config{Path: "/bin/true", Argv: []string{"true"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a canceled context = %v, want context.Canceled", err)
	}
}

func TestCredential(t *testing.T) {
	requirePrivileged(t)
	checkFDs(t)
	const content = "as nobody\n"
	calls := 0
	cfg := sh(`id -u; id -g; id -G; cat ` + markerPath)
	cfg.Dir = "/"
	cfg.Credential = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534}}
	cfg.Rules = []Rule{{Nr: unix.SYS_OPENAT, ArgNonZero: -1}}
	cfg.Handlers = map[int]Handler{unix.SYS_OPENAT: serveMarker(t, content, &calls, false)}
	out, errOut, state := run(t, cfg)
	if want := "65534\n65534\n65534\n" + content; out != want || !state.Success() {
		t.Errorf("output %q, stderr %q, state %v; want %q", out, errOut, state, want)
	}
}

// TestNetNS starts a program in a network namespace made for the test (Config.NetNS) and
// checks that it runs there, as a user without privileges, while the next program, started
// without one, runs in this process's namespace again.
func TestNetNS(t *testing.T) {
	requirePrivileged(t)
	ns := make(chan *os.File, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with the goroutine, in its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			ns <- nil
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Error(err)
		}
		ns <- f
	}()
	netns := <-ns
	if netns == nil {
		return
	}
	defer netns.Close()
	checkFDs(t)
	name := func(f string) string {
		l, err := os.Readlink(f)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	theirs, ours := name("/proc/self/fd/"+strconv.Itoa(int(netns.Fd()))), name("/proc/thread-self/ns/net")
	cfg := sh(`readlink /proc/self/ns/net; id -u`)
	cfg.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	cfg.NetNS = netns
	if out, errOut, state := run(t, cfg); out != theirs+"\n65534\n" || !state.Success() {
		t.Errorf("with NetNS: output %q, stderr %q, state %v; want %q", out, errOut, state, theirs+"\n65534\n")
	}
	if out, errOut, state := run(t, sh(`readlink /proc/self/ns/net`)); out != ours+"\n" || !state.Success() {
		t.Errorf("without: output %q, stderr %q, state %v; want %q", out, errOut, state, ours+"\n")
	}
}

func TestTrampolineCallsNotTrapped(t *testing.T) {
	// The trampoline sends the listener with sendmsg, waits with read, closes, and execs: with
	// all of these trapped it must still launch (its own calls carry the cookie).
	checkFDs(t)
	cfg := sh(`echo hi`)
	var mu sync.Mutex
	seen := map[int]int{}
	count := func(r *Request) { mu.Lock(); seen[r.Nr()]++; mu.Unlock(); r.Continue() }
	cfg.Handlers = map[int]Handler{}
	for _, nr := range []int{unix.SYS_SENDMSG, unix.SYS_READ, unix.SYS_WRITE, unix.SYS_CLOSE, unix.SYS_EXECVE, unix.SYS_EXIT_GROUP} {
		cfg.Rules = append(cfg.Rules, Rule{Nr: nr, ArgNonZero: -1})
		cfg.Handlers[nr] = count
	}
	out, errOut, state := run(t, cfg)
	if out != "hi\n" || !state.Success() {
		t.Errorf("output %q, stderr %q, state %v", out, errOut, state)
	}
	if seen[unix.SYS_WRITE] == 0 || seen[unix.SYS_EXIT_GROUP] == 0 {
		t.Errorf("program's calls not trapped: %v", seen)
	}
}

func TestConcurrentSupervisors(t *testing.T) {
	checkFDs(t)
	// B leaves an orphan in a session of its own and keeps running.
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	cfgB := sh(`(setsid sleep 100 & echo $!); exec sleep 100`)
	cfgB.Stdout = outW
	b, err := Start(context.Background(), cfgB)
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 32)
	n, _ := outR.Read(line)
	orphanB := strings.TrimSpace(string(line[:n]))
	if orphanB == "" {
		t.Fatal("no pid from B")
	}
	// A leaves a background child and exits; its Wait must spare B and B's orphan.
	out, _, _ := run(t, sh(`sleep 100 & echo $!`))
	childA := strings.TrimSpace(out)
	if _, err := os.Stat("/proc/" + childA); err == nil {
		t.Errorf("A's background child %s survived A's Wait", childA)
	}
	for _, pid := range []string{strconv.Itoa(b.Pid()), orphanB} {
		if _, err := os.Stat("/proc/" + pid); err != nil {
			t.Errorf("B's process %s was ended by A's Wait", pid)
		}
	}
	b.Signal(syscall.SIGTERM)
	if _, err := b.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + orphanB); err == nil {
		t.Errorf("B's orphan %s survived B's Wait", orphanB)
	}
}
