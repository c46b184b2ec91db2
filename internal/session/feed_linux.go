package session

import (
	"fmt"
	"net"
	"sync"

	"doppel.dev/doppel/internal/wire"
)

// The feed of a mirror or capture subscription: one stream brings the copies of every
// connection to a port, as frames. Each connection gets a goroutine that connects to the program and writes its
// bytes from a queue; the feed reader never waits for one.

// feedQueueLimit bounds what one connection's copy may queue before it is cut.
const feedQueueLimit = 8 << 20

// readFeed delivers the connections of a feed until it ends.
func (r *Redirector) readFeed(st net.Conn, port uint16, mode wire.Mode) {
	defer st.Close()
	conns := make(map[uint32]*captured)
	defer func() {
		for _, c := range conns {
			c.finish(false, "the capture feed ended")
		}
	}()
	buf := make([]byte, wire.MaxBody)
	for {
		f, err := wire.ReadFeedFrame(st, buf)
		if err != nil {
			return
		}
		switch f.Type {
		case wire.FeedOpen:
			c := &captured{in: wire.Incoming{Port: port, Mode: mode, Remote: f.Remote, Local: f.Local}}
			c.cond = sync.NewCond(&c.mu)
			conns[f.ID] = c
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.deliverCaptured(c)
			}()
		case wire.FeedData:
			if c := conns[f.ID]; c != nil {
				c.push(f.Data)
			}
		case wire.FeedEnd:
			if c := conns[f.ID]; c != nil {
				c.finish(f.Complete, f.Reason)
				delete(conns, f.ID)
			}
		}
	}
}

// captured is one captured connection on its way to the program.
type captured struct {
	in wire.Incoming

	mu       sync.Mutex
	cond     *sync.Cond
	queue    [][]byte
	queued   int
	ended    bool
	complete bool
	reason   string
}

func (c *captured) push(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if c.queued+len(p) > feedQueueLimit {
		// The program takes the copy slower than the client sends: cut it here, never later
		// with a hole in it.
		c.ended, c.complete, c.reason = true, false, fmt.Sprintf("the program fell behind the copy by more than %d bytes", feedQueueLimit)
		c.cond.Signal()
		return
	}
	c.queue = append(c.queue, append([]byte(nil), p...))
	c.queued += len(p)
	c.cond.Signal()
}

func (c *captured) finish(complete bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended, c.complete, c.reason = true, complete, reason
	c.cond.Signal()
}

// next returns the queued bytes, waiting for some; ok is false once the connection ended and
// everything queued was taken.
func (c *captured) next() (b [][]byte, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 && !c.ended {
		c.cond.Wait()
	}
	b, c.queue, c.queued = c.queue, nil, 0
	return b, len(b) > 0
}

// deliverCaptured connects to the program and writes the connection's bytes as they come. A
// complete copy ends like the real connection; an incomplete one is reset after the bytes
// before the loss, so the program sees an error rather than a clean end.
func (r *Redirector) deliverCaptured(c *captured) {
	conn, done, err := r.connectProgram(c.in)
	if err != nil {
		c.finish(false, "")
		for _, ok := c.next(); ok; _, ok = c.next() {
		}
		return
	}
	defer done()
	failed := false
	for {
		b, ok := c.next()
		if !ok {
			break
		}
		if failed {
			continue
		}
		bufs := net.Buffers(b)
		if _, err := bufs.WriteTo(conn); err != nil {
			failed = true // the program closed it; drain the rest
		}
	}
	c.mu.Lock()
	complete, reason := c.complete, c.reason
	c.mu.Unlock()
	if !complete {
		r.log.Warn("a captured connection is incomplete: the program got what came before the loss, then a reset",
			"remote", c.in.Remote, "local", c.in.Local, "reason", reason)
		conn.SetLinger(0)
		return
	}
	r.endMirrored(conn)
}
