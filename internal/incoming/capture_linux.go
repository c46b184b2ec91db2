package incoming

import (
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/wire"
)

// Passive capture (wire.ModeCapture): no rules and no proxy; a packet socket in the target's
// network namespace sees the clients' segments, and the reassembled connections of a port go
// to the client as one feed of frames on the subscription's own stream. The engine starts the
// capture with its first capture subscription and stops it at Close.

// feedLimit bounds the bytes a feed may queue for the client; the copies of connections that
// would go past it are cut (ended incomplete), so the real traffic never waits.
const feedLimit = 64 << 20

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
		})
		if err != nil {
			return nil, fmt.Errorf("passive capture: %w", err)
		}
		e.capture = c
	}
	s.feed = newFeed(w, feedLimit)
	e.captured[port] = s
	if err := e.capture.SetPorts(e.capturedPorts()); err != nil {
		delete(e.captured, port)
		s.feed.close()
		return nil, fmt.Errorf("passive capture of port %d: %w", port, err)
	}
	e.log.Info("capturing", "port", port)
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

// feed encodes the frames of all the captured connections of one port into one buffer, which
// a goroutine writes to the client: the capture goroutine only appends.
type feed struct {
	w     io.Writer
	limit int

	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	spare  []byte
	nextID uint32
	cut    map[uint32]bool // connections whose copy was cut for falling behind
	closed bool
	failed bool // the client stopped taking the feed
	exited chan struct{}
}

func newFeed(w io.Writer, limit int) *feed {
	f := &feed{w: w, limit: limit, cut: make(map[uint32]bool), exited: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	go f.run()
	return f
}

func (f *feed) open(remote, local netip.AddrPort) *feedSink {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := f.nextID
	if !f.failed {
		f.buf = wire.AppendFeedOpen(f.buf, id, remote, local)
		f.cond.Signal()
	}
	return &feedSink{f: f, id: id}
}

// feedSink is one captured connection's capture.Sink.
type feedSink struct {
	f  *feed
	id uint32
}

func (s *feedSink) Write(p []byte) error {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed {
		return nil // nobody takes the feed; the bytes go nowhere
	}
	if f.cut[s.id] {
		return errCopyCut
	}
	if len(f.buf)+len(p) > f.limit {
		f.cut[s.id] = true
		f.buf = wire.AppendFeedEnd(f.buf, s.id, false, errCopyCut.Error())
		f.cond.Signal()
		return errCopyCut
	}
	f.buf = wire.AppendFeedData(f.buf, s.id, p)
	f.cond.Signal()
	return nil
}

var errCopyCut = fmt.Errorf("the copy fell behind by more than %d bytes", feedLimit)

func (s *feedSink) End(complete bool, reason string) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut[s.id] {
		delete(f.cut, s.id) // its end went out when it was cut
		return
	}
	if !f.failed {
		f.buf = wire.AppendFeedEnd(f.buf, s.id, complete, reason)
		f.cond.Signal()
	}
}

// run writes what is buffered, in batches, until close.
func (f *feed) run() {
	defer close(f.exited)
	for {
		f.mu.Lock()
		for len(f.buf) == 0 && !f.closed {
			f.cond.Wait()
		}
		if len(f.buf) == 0 || f.failed {
			f.mu.Unlock()
			return
		}
		b := f.buf
		f.buf, f.spare = f.spare[:0], nil
		f.mu.Unlock()
		_, err := f.w.Write(b)
		f.mu.Lock()
		f.spare = b
		if err != nil {
			f.failed = true
			f.buf = nil
		}
		f.mu.Unlock()
	}
}

// close flushes the feed (at most flushTimeout) and stops its goroutine.
func (f *feed) close() {
	f.mu.Lock()
	f.closed = true
	f.cond.Signal()
	f.mu.Unlock()
	select {
	case <-f.exited:
	case <-time.After(flushTimeout):
		f.mu.Lock()
		f.failed = true
		f.mu.Unlock()
	}
}
