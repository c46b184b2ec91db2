package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/config"
	"doppel.dev/doppel/internal/environ"
	"doppel.dev/doppel/internal/intercept"
	"doppel.dev/doppel/internal/session"
	"doppel.dev/doppel/internal/target"
	"doppel.dev/doppel/internal/wire"
)

func (o *execOptions) run(cmd *cobra.Command, args []string) error {
	fail := func(err error) error { return &exitError{code: exitFailure, err: err} }
	cfg, err := o.loadConfig()
	if err != nil {
		return fail(err)
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return fail(err)
	}
	tgt, err := target.Parse(cfg.Target)
	if err != nil {
		return fail(err)
	}
	if tgt.None && cfg.Incoming.IsEnabled() {
		// Without a target there is no incoming traffic: the program's listens stay here.
		off := false
		cfg.Incoming.Enabled = &off
	}
	if err := tgt.Check(); err != nil {
		return fail(err)
	}
	if err := intercept.Check(); err != nil {
		return fail(err)
	}
	if tgt.Local() && os.Geteuid() != 0 {
		return fail(fmt.Errorf("doppel exec needs root to start the agent for the local target %s: run it with sudo (the program still runs as you)", tgt))
	}

	ctx, cancel := context.WithCancelCause(cmd.Context())
	defer cancel(nil)
	// A signal that arrives while the session starts cancels the start; once the program runs,
	// signals are passed on to it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	starting := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			cancel(fmt.Errorf("interrupted by %v while starting", sig))
		case <-starting:
		}
	}()
	fail = func(err error) error {
		if c := context.Cause(ctx); c != nil {
			err = c
		}
		return &exitError{code: exitFailure, err: err}
	}

	var ag sessionAgent
	if tgt.Local() {
		ag, err = startAgent(tgt, cfg)
	} else {
		ag, err = startKubeAgent(ctx, tgt, cfg, o.kube, log)
	}
	if err != nil {
		return fail(err)
	}
	defer ag.stop()
	client, err := ag.connect(ctx)
	if err != nil {
		return fail(err)
	}
	defer client.Close()

	info, err := client.Info(ctx)
	if err != nil {
		return fail(fmt.Errorf("ask the agent about %s: %w", tgt, err))
	}
	if info.EnvNote != "" && cfg.Env.IsEnabled() {
		if ka, ok := ag.(*kubeAgent); ok {
			info.Env, info.EnvNote = ka.specEnv(ctx, info.Env, info.EnvNote)
		}
		log.Warn(info.EnvNote)
	}
	files := map[string][]byte{}
	if cfg.DNS.IsEnabled() {
		if files, err = targetFiles(ctx, client, info); err != nil {
			return fail(err)
		}
	}

	run, err := programRun(cfg, info, args)
	if err != nil {
		return err
	}

	matcher, err := cfg.Outgoing.Matcher()
	if err != nil {
		return fail(err)
	}
	remote, stopFiles, err := remoteFiles(cfg, info, run, ag, client)
	if err != nil {
		return fail(err)
	}
	defer stopFiles()
	var netns *os.File
	if tgt.Local() && ag.passedSockets() != nil && cfg.Outgoing.JoinsNetns() {
		if netns, err = targetNetns(tgt.PID); err != nil {
			return fail(err)
		}
		if netns != nil {
			defer netns.Close()
		}
	}
	red, err := session.NewRedirector(session.Options{
		Client:      client,
		Outgoing:    cfg.Outgoing.IsEnabled(),
		Route:       matcher,
		DNS:         cfg.DNS.IsEnabled(),
		Incoming:    incomingOptions(cfg, run),
		RemoteFiles: remote,
		Sockets:     ag.passedSockets(),
		TargetNetns: netns,
		Files:       files,
		Hostname:    info.Hostname,
		Logger:      log,
	})
	if err != nil {
		return fail(err)
	}
	defer red.Close()

	sup, err := intercept.Start(ctx, intercept.Config{
		Path:       run.path,
		Argv:       args,
		Env:        run.env,
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Credential: run.cred,
		Foreground: isTerminal(os.Stdin),
		NetNS:      red.ProgramNetns(),
		Rules:      red.Rules(),
		Handlers:   red.Handlers(),
		Logger:     log,
	})
	if err != nil {
		return startError(args[0], err)
	}
	log.Debug("program started", "pid", sup.Pid(), "target", tgt)
	ag.started()

	close(starting)
	if ctx.Err() != nil {
		sup.Signal(syscall.SIGTERM) // the signal came as the program started: it is the program's
	}
	var lost error
	exited := make(chan struct{})
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		for lost == nil {
			select {
			case sig := <-sigs:
				sup.Signal(sig)
			case <-client.Done():
				lost = ag.lost()
			case <-ag.done():
				lost = fmt.Errorf("the agent stopped (%v)", ag.why())
			case <-exited:
				return
			}
		}
		sup.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			sup.Signal(syscall.SIGKILL)
		}
	}()
	state, err := sup.Wait()
	close(exited)
	<-watcher
	if err != nil {
		return fail(err)
	}
	if lost != nil {
		return fail(fmt.Errorf("%v; stopped the program", lost))
	}
	return &exitError{code: exitStatus(state)}
}

// incomingOptions are the redirector's incoming settings, nil when incoming traffic is off.
func incomingOptions(cfg *config.Config, run *programSpec) *session.IncomingOptions {
	in := cfg.Incoming
	if !in.IsEnabled() {
		return nil
	}

	opt := &session.IncomingOptions{
		Mode:       wire.ModeMirror,
		TargetPort: in.TargetPort,
		UID:        os.Geteuid(),
	}
	switch in.Mirror {
	case config.MirrorCapture:
		opt.Mode = wire.ModeCapture
	case config.MirrorTap:
		opt.Mode = wire.ModeTap
	}
	if in.Steals() {
		opt.Mode = wire.ModeSteal
		opt.Filter = wire.HTTPFilter{Headers: in.HTTP.Headers, Path: in.HTTP.Path, Methods: in.HTTP.Methods}
	}
	if run.cred != nil {
		opt.UID = int(run.cred.Uid)
	}
	return opt
}

// run is what the program is started with.
type programSpec struct {
	path string
	env  []string
	cred *syscall.Credential
}

// programRun works out who the program runs as, with which environment, and which file it is.
func programRun(cfg *config.Config, info wire.Info, args []string) (*programSpec, error) {
	env := os.Environ()
	var cred *syscall.Credential
	if uid := os.Getenv("SUDO_UID"); uid != "" && uid != "0" && os.Geteuid() == 0 {
		u, err := user.LookupId(uid)
		if err != nil {
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("look up the user who called sudo (uid %s): %w", uid, err)}
		}
		cred, err = credentialOf(u)
		if err != nil {
			return nil, &exitError{code: exitFailure, err: err}
		}
		env = environ.ForUser(env, u)
	}
	var targetEnv []string
	if cfg.Env.IsEnabled() {
		targetEnv = info.Env
	}
	env = environ.Merge(env, targetEnv, environ.Options{Include: cfg.Env.Include, Exclude: cfg.Env.Exclude, Override: cfg.Env.Override})
	path, err := lookPath(args[0], env)
	if err != nil {
		return nil, err
	}
	return &programSpec{path: path, env: env, cred: cred}, nil
}

func credentialOf(u *user.User) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q", u.Username, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q", u.Username, u.Gid)
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				c.Groups = append(c.Groups, uint32(n))
			}
		}
	}
	return c, nil
}

// lookPath finds the program in the PATH of its own environment.
func lookPath(name string, env []string) (string, error) {
	notFound := &exitError{code: exitNotFound, err: fmt.Errorf("%s: command not found", name)}
	if strings.Contains(name, "/") {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", notFound
		}
		if _, err := os.Stat(abs); err != nil {
			return "", &exitError{code: exitNotFound, err: fmt.Errorf("%s: %w", name, errors.Unwrap(err))}
		}
		return abs, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return filepath.Abs(p)
		}
	}
	return "", notFound
}

// startError turns a failed start into the exit status env(1) would give.
func startError(name string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return &exitError{code: exitNotFound, err: fmt.Errorf("%s: %w", name, err)}
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.ENOEXEC), errors.Is(err, syscall.EPERM):
		return &exitError{code: exitCannotExec, err: fmt.Errorf("%s: %w", name, err)}
	}
	return &exitError{code: exitFailure, err: fmt.Errorf("start %s: %w", name, err)}
}

func exitStatus(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalShift + int(ws.Signal())
	}
	return st.ExitCode()
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// targetFiles fetches the files a resolver reads, as the target has them.
func targetFiles(ctx context.Context, c *session.Client, info wire.Info) (map[string][]byte, error) {
	files := make(map[string][]byte)
	for _, p := range session.TargetFiles {
		b, err := c.ReadFile(ctx, p)
		var re *wire.RemoteError
		if errors.As(err, &re) && syscall.Errno(re.Errno) == syscall.ENOENT {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s of the target: %w", p, err)
		}
		files[p] = b
	}
	if info.Hostname != "" {
		if _, ok := files["/etc/hostname"]; !ok {
			files["/etc/hostname"] = []byte(info.Hostname + "\n")
		}
		files["/proc/sys/kernel/hostname"] = []byte(info.Hostname + "\n")
	}
	return files, nil
}

// sessionAgent is the agent of a session: a process on this machine for a local target, a
// pod in the cluster for a Kubernetes target.
type sessionAgent interface {
	// connect opens the session.
	connect(ctx context.Context) (*session.Client, error)
	// stop ends the agent; its rules go with it.
	stop()
	// done is closed when the agent stopped by itself; why then says why.
	done() <-chan struct{}
	why() error
	// lost explains a session connection that ended while the program ran.
	lost() error
	// started is told that the program started.
	started()
	// channel is the socket-passing channel of an agent on this machine: sockets of the
	// target's network and descriptors of the target's files. nil for an agent elsewhere.
	channel() *session.Sockets
	// passedSockets is channel when TCP sockets are put in place (nil with
	// --no-socket-passing and for an agent elsewhere).
	passedSockets() *session.Sockets
}

// targetNetns opens the network namespace of a local target's process, or returns nil when it
// is doppel's own (a target in this machine's network: nothing to enter).
func targetNetns(pid int) (*os.File, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open the network namespace of pid %d: %w", pid, err)
	}
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &theirs); err != nil {
		f.Close()
		return nil, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err != nil {
		f.Close()
		return nil, fmt.Errorf("doppel's own network namespace: %w", err)
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		f.Close()
		return nil, nil
	}
	return f, nil
}

// localAgent is the agent process of a local target.
type localAgent struct {
	cmd    *exec.Cmd
	addr   string
	secret [wire.SecretSize]byte
	exited chan struct{} // closed when the process has exited; err is then set
	err    error
	ch     *session.Sockets
	socks  *session.Sockets
}

func (a *localAgent) done() <-chan struct{}           { return a.exited }
func (a *localAgent) why() error                      { return a.err }
func (a *localAgent) lost() error                     { return errors.New("lost the connection to the agent") }
func (a *localAgent) started()                        {}
func (a *localAgent) channel() *session.Sockets       { return a.ch }
func (a *localAgent) passedSockets() *session.Sockets { return a.socks }

// startAgent starts `doppel agent` for the target as a child process, listening on an inherited
// loopback socket.
func startAgent(tgt target.Target, cfg *config.Config) (*localAgent, error) {
	ln, err := net.Listen("tcp", cfg.Agent.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen for the agent on %s: %w", cfg.Agent.Listen, err)
	}
	lf, err := ln.(*net.TCPListener).File()
	addr := ln.Addr().String()
	ln.Close()
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	secret := session.NewSecret()
	level := "warn"
	if cfg.LogLevel == "debug" {
		level = "debug"
	}
	args := []string{"agent", "--pid", strconv.Itoa(tgt.PID), "--listen-fd", "3",
		"--grace", time.Duration(cfg.Agent.GracePeriod).String(), "--log-level", level}
	extra := []*os.File{lf}
	// The agent shares this machine: it can hand over sockets of the target's network and
	// descriptors of the target's files.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket pair for the agent: %w", err)
	}
	unix.SetNonblock(pair[0], true)
	sockets := os.NewFile(uintptr(pair[0]), "agent-sockets")
	theirs := os.NewFile(uintptr(pair[1]), "agent-sockets")
	defer theirs.Close()
	extra = append(extra, theirs)
	args = append(args, "--sockets-fd", "4")
	cmd := exec.Command(self, args...)
	cmd.ExtraFiles = extra
	cmd.Stdin = strings.NewReader(hex.EncodeToString(secret[:]) + "\n")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	// Its own process group keeps a terminal's ^C from reaching it before the program has
	// shut down; Pdeathsig ends it if doppel dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		sockets.Close()
		return nil, fmt.Errorf("start the agent: %w", err)
	}
	a := &localAgent{cmd: cmd, addr: addr, secret: secret, exited: make(chan struct{})}
	a.ch = session.NewSockets(sockets)
	if cfg.Outgoing.IsEnabled() && cfg.Outgoing.PassesSockets() {
		a.socks = a.ch
	}
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
	}()
	return a, nil
}

func (a *localAgent) connect(ctx context.Context) (*session.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := session.Connect(ctx, a.addr, a.secret)
	if err != nil {
		select {
		case <-a.exited:
			return nil, fmt.Errorf("the agent exited before the session started (%v)", a.err)
		default:
		}
		return nil, err
	}
	return c, nil
}

// stop ends the agent (SIGTERM, then SIGKILL after a few seconds) and waits until it is gone.
func (a *localAgent) stop() {
	a.ch.Close()
	select {
	case <-a.exited:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(3 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
	}
}
