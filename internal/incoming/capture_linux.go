package incoming

import (
	"fmt"
	"io"
	"net/netip"
	"sync"

	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/wire"
)

// Passive capture (wire.ModeCapture) and tap (wire.ModeTap): no rules and no proxy; a packet
// socket, or an eBPF program at the interfaces' ingress, in the target's network namespace sees
// the clients' segments, and the reassembled connections of a port go to the client as one feed
// of frames on the subscription's own stream. The engine starts the capture with its first
// such subscription, which chooses between the two for the engine's life, and stops it at Close.

// subscribeCapture adds sub's port to the capture. e.mu is held.
func (e *Engine) subscribeCapture(s *subscription, w io.Writer) (unsubscribe func(), err error) {
	if w == nil {
		return nil, fmt.Errorf("port %d: a capture subscription needs its feed", s.sub.Port)
	}
	port := s.sub.Port
	if e.capture == nil {
		c, err := capture.Start(capture.Options{
			NetnsFD: e.opt.NetnsFD,
			InNetns: e.opt.InNetns,
			Logger:  e.log,
			Open:    e.openCaptured,
			Tap:     s.sub.Mode == wire.ModeTap,
			// Other sessions' agents pass connections on from marked sockets: copies of
			// connections seen already, on their way in.
			IgnoreMark: markDoppel, IgnoreMarkMask: markMask,
		})
		if err != nil {
			if s.sub.Mode == wire.ModeTap {
				return nil, err // "tap: ..." says what failed
			}
			return nil, fmt.Errorf("passive capture: %w", err)
		}
		e.capture, e.captureMode = c, s.sub.Mode
	} else if s.sub.Mode != e.captureMode {
		return nil, fmt.Errorf("port %d: this session copies with %s, and %s was asked", port, e.captureMode, s.sub.Mode)
	}
	s.feed = newFeed(w, feedLimit)
	e.captured[port] = s
	if err := e.capture.SetPorts(e.capturedPorts()); err != nil {
		delete(e.captured, port)
		s.feed.close()
		return nil, fmt.Errorf("passive capture of port %d: %w", port, err)
	}
	e.log.Info("capturing", "port", port, "with", e.captureMode)
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			if e.captured[port] == s {
				delete(e.captured, port)
				if !e.closed {
					e.capture.SetPorts(e.capturedPorts())
				}
			}
			e.mu.Unlock()
			s.feed.close()
			e.log.Info("no longer capturing", "port", port)
		})
	}, nil
}

func (e *Engine) capturedPorts() []uint16 { return sortedPorts(e.captured) }

// openCaptured starts a new captured connection in its port's feed. It runs on the capture
// goroutine and never waits.
func (e *Engine) openCaptured(remote, local netip.AddrPort) (capture.Sink, error) {
	e.mu.Lock()
	s := e.captured[local.Port()]
	e.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("port %d is not captured", local.Port())
	}
	return s.feed.open(unmap(remote), unmap(local)), nil
}
