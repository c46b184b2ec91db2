package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// WebsocketsEnv set to "false" makes port-forward use SPDY only, as kubectl's
// KUBECTL_PORT_FORWARD_WEBSOCKETS=false does: for a proxy that breaks WebSocket upgrades in a way
// the fallback does not catch.
const WebsocketsEnv = "DOPPEL_PORT_FORWARD_WEBSOCKETS"

// DialPod opens one TCP connection to port on the loopback of pod through the API server's
// port-forward, as kubectl port-forward does: SPDY tunnelled over a WebSocket, falling back to
// plain SPDY where the API server or a proxy cannot upgrade to WebSocket. The connection lives
// until it is closed, or until the API server, the kubelet or the pod's port ends it.
func DialPod(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, ns, pod string, port int) (net.Conn, error) {
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward")
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, req.URL())
	if os.Getenv(WebsocketsEnv) != "false" {
		ws, err := portforward.NewSPDYOverWebsocketDialer(req.URL(), cfg)
		if err != nil {
			return nil, err
		}
		dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}

	type result struct {
		conn httpstream.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		done <- result{c, err}
	}()
	var streams httpstream.Connection
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("port-forward to pod %s/%s: %w", ns, pod, r.err)
		}
		streams = r.conn
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}

	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(port))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := streams.CreateStream(headers)
	if err != nil {
		streams.Close()
		return nil, fmt.Errorf("port-forward to pod %s/%s: error stream: %w", ns, pod, err)
	}
	errStream.Close() // nothing is written on it
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := streams.CreateStream(headers)
	if err != nil {
		streams.Close()
		return nil, fmt.Errorf("port-forward to pod %s/%s: data stream: %w", ns, pod, err)
	}
	c := &forwardConn{streams: streams, data: data, addr: forwardAddr(fmt.Sprintf("%s/%s:%d", ns, pod, port))}
	c.errDone = make(chan struct{})
	go func() {
		defer close(c.errDone)
		msg, err := io.ReadAll(errStream)
		c.mu.Lock()
		switch {
		case len(msg) > 0:
			c.remoteErr = errors.New(string(msg))
		case err != nil:
			c.remoteErr = err
		}
		c.mu.Unlock()
		if len(msg) > 0 {
			data.Reset() // the kubelet could not reach the port: unblock the reader
		}
	}()
	return c, nil
}

// forwardConn is a port-forward data stream as a net.Conn. A deadline resets the stream when it
// passes (the handshake is the only user of deadlines on this connection).
type forwardConn struct {
	streams httpstream.Connection
	data    httpstream.Stream
	addr    forwardAddr
	errDone chan struct{}

	mu        sync.Mutex
	remoteErr error // what the kubelet reported on the error stream
	timer     *time.Timer
	closed    bool
}

func (c *forwardConn) Read(p []byte) (int, error) {
	n, err := c.data.Read(p)
	if err != nil {
		err = c.explain(err)
	}
	return n, err
}

func (c *forwardConn) Write(p []byte) (int, error) {
	n, err := c.data.Write(p)
	if err != nil {
		err = c.explain(err)
	}
	return n, err
}

// explain replaces a stream error with the kubelet's reason when it gave one.
func (c *forwardConn) explain(err error) error {
	select {
	case <-c.errDone:
	case <-time.After(100 * time.Millisecond):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remoteErr != nil && c.remoteErr != io.EOF {
		return fmt.Errorf("port-forward to %s: %w", c.addr, c.remoteErr)
	}
	return err
}

func (c *forwardConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.data.Reset()
	return c.streams.Close()
}

func (c *forwardConn) LocalAddr() net.Addr  { return c.addr }
func (c *forwardConn) RemoteAddr() net.Addr { return c.addr }

func (c *forwardConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if !t.IsZero() {
		c.timer = time.AfterFunc(time.Until(t), func() { c.data.Reset() })
	}
	return nil
}

func (c *forwardConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *forwardConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// forwardAddr names a port-forwarded pod port.
type forwardAddr string

func (a forwardAddr) Network() string { return "portforward" }
func (a forwardAddr) String() string  { return string(a) }
