package incoming

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"

	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/wire"
)

// Passive capture (wire.ModeCapture): no rules and no proxy; a packet socket in the target's
// network namespace sees the clients' segments, and each connection's reassembled bytes go to
// the client as capture frames. The engine starts the capture with its first capture
// subscription and stops it at Close.

// subscribeCapture adds sub's port to the capture. e.mu is held.
func (e *Engine) subscribeCapture(s *subscription) (unsubscribe func(), err error) {
	port := s.sub.Port
	if e.capture == nil {
		c, err := capture.Start(capture.Options{
			NetnsFD: e.opt.NetnsFD,
			InNetns: e.opt.InNetns,
			Logger:  e.log,
			Open:    e.openCaptured,
		})
		if err != nil {
			return nil, fmt.Errorf("passive capture: %w", err)
		}
		e.capture = c
	}
	e.captured[port] = s
	if err := e.capture.SetPorts(e.capturedPorts()); err != nil {
		delete(e.captured, port)
		return nil, fmt.Errorf("passive capture of port %d: %w", port, err)
	}
	e.log.Info("capturing", "port", port)
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.captured[port] != s {
				return
			}
			delete(e.captured, port)
			if !e.closed {
				e.capture.SetPorts(e.capturedPorts())
			}
			e.log.Info("no longer capturing", "port", port)
		})
	}, nil
}

func (e *Engine) capturedPorts() []uint16 { return sortedPorts(e.captured) }

// openCaptured gives a new captured connection a sink that queues its bytes (the capture
// goroutine never waits) for a goroutine that opens the stream to the client and writes them.
func (e *Engine) openCaptured(remote, local netip.AddrPort) (capture.Sink, error) {
	e.mu.Lock()
	s := e.captured[local.Port()]
	e.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("port %d is not captured", local.Port())
	}
	in := wire.Incoming{Port: local.Port(), Mode: wire.ModeCapture, Remote: unmap(remote), Local: unmap(local)}
	cs := &captureSink{}
	cs.t = &tee{
		limit: mirrorLimit,
		open: func() (io.WriteCloser, error) {
			st, err := s.deliver(context.Background(), in)
			if err != nil {
				e.log.Debug("client unreachable; a captured connection is not copied", "remote", in.Remote, "err", err)
			}
			return st, err
		},
		frame: wire.WriteCaptureData,
		end: func(w io.Writer, cut bool) {
			complete, reason := cs.complete, cs.reason
			if cut {
				complete, reason = false, "the copy fell behind by more than the limit"
			}
			wire.WriteCaptureEnd(w, complete, reason)
		},
	}
	cs.t.start()
	return cs, nil
}

// captureSink is a capture.Sink over a tee whose frames are capture frames.
type captureSink struct {
	t        *tee
	complete bool
	reason   string
}

func (c *captureSink) Write(p []byte) error {
	if !c.t.write(p) {
		return fmt.Errorf("the copy fell behind by more than %d bytes", mirrorLimit)
	}
	return nil
}

func (c *captureSink) End(complete bool, reason string) {
	c.complete, c.reason = complete, reason
	go c.t.close() // close waits for the flush; the capture goroutine must not
}
