package incoming

import (
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"doppel.dev/doppel/internal/wire"
)

// The copies of a mirror or capture subscription go to the client as one feed of frames on the
// subscription's stream (wire.AppendFeedOpen and the rest), not as a stream per connection.

// feedLimit bounds the bytes a feed may queue for the client; the copies of connections that
// would go past it are cut (ended incomplete), so the real traffic never waits.
const feedLimit = 64 << 20

// flushTimeout bounds how long closing a feed waits for what is queued to go out.
const flushTimeout = 30 * time.Second

// A feed writes at most every feedLinger while it has less than feedBatch bytes to write.
const (
	feedBatch  = 32 << 10
	feedLinger = 500 * time.Microsecond
)

// feed encodes the frames of all the mirrored or captured connections of one port into one
// buffer, which a goroutine writes to the client: whoever copies a connection only appends.
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
		if len(f.buf) < feedBatch && !f.closed {
			// Copies are not in a hurry: gather a little more, so that a busy port's copies
			// go out in few large writes instead of one small write each.
			f.mu.Unlock()
			time.Sleep(feedLinger)
			f.mu.Lock()
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
