// Package agent is doppel's in-target half. An agent serves one session at a time over one TCP
// connection, multiplexed into streams, and does every piece of work it is asked for inside the
// target: TCP dials and UDP flows from the target's network namespace, files read through
// /proc/PID/root, the environment from /proc/PID/environ, the hostname from the target's UTS
// namespace, and the target's incoming traffic (an incoming.Engine: its nftables table, capture
// and connections in flight). It owns its listener, the session's connection and streams, the
// sockets it opens for them, the incoming engine and a pidfd of the target; all of them live
// until Run returns, which happens when the context ends (SIGTERM), when the target exits, or
// when no client has been connected for the grace period.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"doppel.dev/doppel/internal/incoming"
	"doppel.dev/doppel/internal/wire"
)

// Options configure an agent.
type Options struct {
	PID int // the target process
	// ContainerID, when set, is the runtime id of the container whose first process PID is:
	// the environment then comes from the container's bundle (bundleEnv).
	ContainerID string
	Listener    net.Listener // where clients connect; the caller decides the address (loopback by default)
	Secret      [wire.SecretSize]byte
	// Grace is how long the agent waits for a client, at start and after one is lost, before
	// it exits.
	Grace time.Duration
	// Sockets, when set, is a unix SOCK_SEQPACKET socket to a client on this machine, on which
	// the agent hands out TCP sockets made in the target's network namespace (local targets).
	Sockets *os.File
	// StreamWindow is each stream's receive window (wire.MuxConfig; 0: the default).
	StreamWindow uint32
	Logger       *slog.Logger
}

// deadlinePast is a deadline that has passed: setting it wakes a blocked read.
var deadlinePast = time.Unix(1, 0)

// handshakeTimeout bounds how long a connecting peer may take to say hello.
const handshakeTimeout = 10 * time.Second

// Run serves clients until ctx ends, the target exits or no client came for the grace period.
// It closes the listener before it returns.
func Run(ctx context.Context, opt Options) error {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Grace <= 0 {
		opt.Grace = 5 * time.Second
	}
	t, err := openTarget(opt.PID)
	if err != nil {
		opt.Listener.Close()
		return err
	}
	defer t.Close()

	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Go(func() {
		if err := t.waitExit(ctx); err == nil {
			cancel(fmt.Errorf("target pid %d exited", opt.PID))
		}
	})

	a := &agent{opt: opt, target: t, log: opt.Logger, conns: make(chan net.Conn)}
	a.incoming = t.newIncoming(opt.Logger)
	// Last out: remove the incoming rules, then let connections in flight finish.
	defer a.incoming.Close()
	defer opt.Listener.Close()
	wg.Go(func() { a.acceptLoop(ctx) })
	if opt.Sockets != nil {
		wg.Go(func() { a.serveSockets(ctx, opt.Sockets) })
	}

	var active *yamux.Session
	idle := time.NewTimer(opt.Grace)
	defer idle.Stop()
	sessionDone := make(chan struct{})
	for {
		select {
		case <-ctx.Done():
			if active != nil {
				active.Close()
			}
			if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
				return c
			}
			return nil
		case <-idle.C:
			a.log.Info("no client; exiting", "grace", opt.Grace)
			return nil
		case <-sessionDone:
			a.log.Info("client gone; waiting for it to come back", "grace", opt.Grace)
			active = nil
			sessionDone = make(chan struct{})
			idle.Reset(opt.Grace)
		case conn := <-a.conns:
			if active != nil && !active.IsClosed() {
				wire.WriteWelcome(conn, wire.Welcome{Version: wire.Version, Status: wire.WelcomeBusy,
					Message: "this agent already serves a session"})
				conn.Close()
				continue
			}
			if err := a.welcome(conn); err != nil {
				a.log.Warn("refused a client", "remote", conn.RemoteAddr(), "err", err)
				conn.Close()
				continue
			}
			s, err := yamux.Server(wire.MuxConn(conn), wire.MuxConfig(a.opt.StreamWindow))
			if err != nil {
				conn.Close()
				continue
			}
			idle.Stop()
			active = s
			a.log.Info("client connected", "remote", conn.RemoteAddr())
			go func(s *yamux.Session, done chan struct{}) {
				a.serve(ctx, s)
				close(done)
			}(s, sessionDone)
		}
	}
}

type agent struct {
	opt      Options
	target   *target
	log      *slog.Logger
	conns    chan net.Conn
	incoming *incoming.Engine
}

func (a *agent) acceptLoop(ctx context.Context) {
	for {
		c, err := a.opt.Listener.Accept()
		if err != nil {
			return
		}
		select {
		case a.conns <- c:
		case <-ctx.Done():
			c.Close()
			return
		}
	}
}

// welcome runs the handshake on a new connection and answers it.
func (a *agent) welcome(conn net.Conn) error {
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	h, err := wire.ReadHello(conn)
	if err != nil {
		return err
	}
	if h.Version != wire.Version {
		msg := fmt.Sprintf("agent speaks protocol version %d, client %d: use the same doppel release for both", wire.Version, h.Version)
		wire.WriteWelcome(conn, wire.Welcome{Version: wire.Version, Status: wire.WelcomeBadVersion, Message: msg})
		return errors.New(msg)
	}
	if !wire.SecretEqual(h.Secret, a.opt.Secret) {
		wire.WriteWelcome(conn, wire.Welcome{Version: wire.Version, Status: wire.WelcomeBadSecret, Message: "wrong session secret"})
		return errors.New("wrong session secret")
	}
	return wire.WriteWelcome(conn, wire.Welcome{Version: wire.Version, Status: wire.WelcomeOK})
}

// serve handles the streams of one session until it closes.
func (a *agent) serve(ctx context.Context, s *yamux.Session) {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.CloseChan():
		}
	}()
	for {
		st, err := s.AcceptStream()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer st.Close()
			a.handle(ctx, s, st)
		}()
	}
}

func (a *agent) handle(ctx context.Context, s *yamux.Session, st net.Conn) {
	st.SetReadDeadline(time.Now().Add(handshakeTimeout))
	req, err := wire.ReadRequest(st)
	if err != nil {
		a.log.Debug("bad request", "err", err)
		return
	}
	st.SetReadDeadline(time.Time{})
	switch req.Kind {
	case wire.KindDialTCP:
		a.dialTCP(ctx, st, req.Addr)
	case wire.KindUDP:
		a.udpFlow(ctx, st)
	case wire.KindReadFile:
		a.readFile(st, req.Path)
	case wire.KindLookup:
		a.lookup(st, req.Path)
	case wire.KindInfo:
		a.info(st)
	case wire.KindSubscribe:
		a.subscribe(s, st, req.Sub)
	}
}

// incomingAnswerTimeout bounds the wait for the client's answer to an incoming stream (it
// dials the program's listener first, within 10 s).
const incomingAnswerTimeout = 15 * time.Second

// errIncomingRefused: the client could not give the connection to its program.
var errIncomingRefused = errors.New("the client's program did not take the connection")

// openIncoming opens a stream for one incoming connection and returns it once the client says
// that its program took the connection. Otherwise (refused, the stream closed, no answer in
// time, ctx done) it returns an error, and the caller gives the connection to the target's own
// service: nothing of it was sent yet.
func openIncoming(ctx context.Context, s *yamux.Session, in wire.Incoming) (net.Conn, error) {
	c, err := s.OpenStream()
	if err != nil {
		return nil, err
	}
	if err := wire.WriteRequest(c, wire.Request{Kind: wire.KindIncoming, Incoming: in}); err != nil {
		c.Close()
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(incomingAnswerTimeout))
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) }) // (a yamux stream's Close does not end its Read)
	var answer [1]byte
	_, err = io.ReadFull(c, answer[:])
	stopped := stop()
	switch {
	case err != nil:
		c.Close()
		return nil, fmt.Errorf("%w: %v", errIncomingRefused, err)
	case answer[0] != wire.IncomingTaken:
		c.Close()
		return nil, errIncomingRefused
	case !stopped:
		c.Close()
		return nil, ctx.Err()
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}

// subscribe redirects a port of the target to the agent for as long as the stream stays open;
// each connection goes to the client on a stream the agent opens.
func (a *agent) subscribe(s *yamux.Session, st net.Conn, sub wire.Subscription) {
	deliver := func(ctx context.Context, in wire.Incoming) (net.Conn, error) {
		return openIncoming(ctx, s, in)
	}
	// The capture feed goes on this stream, after the OK reply.
	fw := &feedWriter{st: st}
	unsubscribe, err := a.incoming.Subscribe(sub, deliver, fw)
	if err != nil {
		a.log.Warn("subscription refused", "port", sub.Port, "err", err)
		reply(st, err)
		return
	}
	defer unsubscribe()
	if fw.ok() != nil {
		return
	}
	// The client sends nothing more; the stream's end (or the session's) ends the subscription.
	io.Copy(io.Discard, st)
}

func reply(w io.Writer, err error) error {
	if err == nil {
		return wire.WriteReply(w, wire.Reply{OK: true})
	}
	return wire.WriteReply(w, wire.Reply{Errno: uint16(errnoOf(err)), Message: err.Error()})
}

// feedWriter writes a subscription's OK reply before anything else on its stream.
type feedWriter struct {
	mu      sync.Mutex
	st      net.Conn
	replied bool
	err     error
}

func (w *feedWriter) ok() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.replied {
		w.replied = true
		w.err = reply(w.st, nil)
	}
	return w.err
}

func (w *feedWriter) Write(p []byte) (int, error) {
	if err := w.ok(); err != nil {
		return 0, err
	}
	return w.st.Write(p)
}
