// Package session is doppel's client half: the connection to the agent and everything that
// routes a supervised program's syscalls into it. A Client owns the one connection to the agent
// and its multiplexed streams; a RemoteRoot owns the staging directory of a pod's files; a
// Redirector owns the local TCP proxy listeners, the UDP relay sockets, the tables that map the
// program's sockets to the addresses it asked for, the target's files it serves, the
// subscriptions to the target's ports its listeners receive, and the local connections that
// deliver that incoming traffic to the program. All live for one doppel exec: from the
// handshake until the program has exited and Close is called.
package session

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/yamux"

	"doppel.dev/doppel/internal/wire"
)

// Client is a session with an agent.
type Client struct {
	mux *yamux.Session
}

// NewSecret returns a fresh random session secret.
func NewSecret() [wire.SecretSize]byte {
	var s [wire.SecretSize]byte
	rand.Read(s[:])
	return s
}

// ErrRejected is wrapped by errors for a handshake the agent refused.
var ErrRejected = errors.New("agent refused the session")

// Connect dials the agent at addr and opens a session with secret.
func Connect(ctx context.Context, addr string, secret [wire.SecretSize]byte) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to agent at %s: %w", addr, err)
	}
	c, err := Handshake(ctx, conn, secret, 0)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Handshake opens a session on an established connection to an agent; window is the streams'
// receive window (wire.MuxConfig).
func Handshake(ctx context.Context, conn net.Conn, secret [wire.SecretSize]byte, window uint32) (*Client, error) {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	if err := wire.WriteHello(conn, wire.Hello{Version: wire.Version, Secret: secret}); err != nil {
		return nil, fmt.Errorf("agent handshake: %w", err)
	}
	w, err := wire.ReadWelcome(conn)
	if err != nil {
		return nil, fmt.Errorf("agent handshake: %w", err)
	}
	if w.Status != wire.WelcomeOK {
		return nil, fmt.Errorf("%w: %s", ErrRejected, w.Message)
	}
	conn.SetDeadline(time.Time{})
	mux, err := yamux.Client(wire.MuxConn(conn), wire.MuxConfig(window))
	if err != nil {
		return nil, err
	}
	return &Client{mux: mux}, nil
}

// Done is closed when the session ends, by Close or because the agent went away.
func (c *Client) Done() <-chan struct{} { return c.mux.CloseChan() }

// Close ends the session.
func (c *Client) Close() error { return c.mux.Close() }

// open opens a stream and sends req; it returns the stream once the agent said OK.
func (c *Client) open(ctx context.Context, req wire.Request) (net.Conn, error) {
	st, err := c.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open stream to agent: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()) })
	defer stop()
	if err := wire.WriteRequest(st, req); err != nil {
		st.Close()
		return nil, fmt.Errorf("send %s request: %w", req.Kind, err)
	}
	rep, err := wire.ReadReply(st)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("read %s reply: %w", req.Kind, err)
	}
	if err := rep.Err(); err != nil {
		st.Close()
		return nil, err
	}
	if !stop() {
		st.Close()
		return nil, ctx.Err()
	}
	return st, nil
}

// DialTCP connects to addr from the target's network. A refusal by the target's network comes
// back as a *wire.RemoteError carrying the errno.
func (c *Client) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return c.open(ctx, wire.Request{Kind: wire.KindDialTCP, Addr: addr})
}

// OpenUDP opens a UDP flow: datagrams written to it with wire.WriteDatagram leave from one
// socket in the target's network; replies come back as datagram frames.
func (c *Client) OpenUDP(ctx context.Context) (net.Conn, error) {
	return c.open(ctx, wire.Request{Kind: wire.KindUDP})
}

// ReadFile reads a file from inside the target's root.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	st, err := c.open(ctx, wire.Request{Kind: wire.KindReadFile, Path: path})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return io.ReadAll(st)
}

// CopyFile copies a file from inside the target's root to w.
func (c *Client) CopyFile(ctx context.Context, path string, w io.Writer) (int64, error) {
	st, err := c.open(ctx, wire.Request{Kind: wire.KindReadFile, Path: path})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()) })
	defer stop()
	return io.Copy(w, st)
}

// Lookup resolves a path inside the target's root, name by name (wire.Lookup).
func (c *Client) Lookup(ctx context.Context, path string) (wire.Lookup, error) {
	var res wire.Lookup
	st, err := c.open(ctx, wire.Request{Kind: wire.KindLookup, Path: path})
	if err != nil {
		return res, err
	}
	defer st.Close()
	if err := json.NewDecoder(st).Decode(&res); err != nil {
		return res, fmt.Errorf("decode lookup of %s: %w", path, err)
	}
	return res, nil
}

// Info asks for the target's identity: pid, hostname and environment.
func (c *Client) Info(ctx context.Context) (wire.Info, error) {
	var info wire.Info
	st, err := c.open(ctx, wire.Request{Kind: wire.KindInfo})
	if err != nil {
		return info, err
	}
	defer st.Close()
	if err := json.NewDecoder(st).Decode(&info); err != nil {
		return info, fmt.Errorf("decode target info: %w", err)
	}
	return info, nil
}

// Subscribe asks the agent for the incoming connections to a port of the target. The
// subscription lasts until the returned stream is closed; with wire.ModeCapture the stream then
// carries the capture feed (wire.ReadFeedFrame).
func (c *Client) Subscribe(ctx context.Context, sub wire.Subscription) (net.Conn, error) {
	return c.open(ctx, wire.Request{Kind: wire.KindSubscribe, Sub: sub})
}

// ServeIncoming hands each incoming connection the agent opens to handle, on a goroutine of
// its own, until the session ends. handle owns the stream and closes it.
func (c *Client) ServeIncoming(handle func(in wire.Incoming, st net.Conn)) {
	for {
		st, err := c.mux.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			req, err := wire.ReadRequest(st)
			st.SetReadDeadline(time.Time{})
			if err != nil || req.Kind != wire.KindIncoming {
				st.Close() // an agent that speaks garbage loses this stream, not the session
				return
			}
			handle(req.Incoming, st)
		}()
	}
}
