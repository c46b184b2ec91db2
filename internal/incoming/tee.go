package incoming

import (
	"io"
	"sync"
	"time"
)

// tee sends a copy of a connection's bytes to w without ever making the connection wait: the
// bytes queue in memory up to limit, and a copy that falls further behind is cut (w is
// closed) rather than slowing the real client down.
type tee struct {
	w     io.WriteCloser
	limit int
	// open, when set, makes w on the goroutine before the first write (a failure drops the
	// copy); frame writes a chunk (default: as it is); end writes a trailer before w closes.
	open  func() (io.WriteCloser, error)
	frame func(w io.Writer, b []byte) error
	end   func(w io.Writer, cut bool)

	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte
	queued int
	done   bool // no more writes: flush and close
	cut    bool // fell behind, or w failed
	exited chan struct{}
}

func newTee(w io.WriteCloser, limit int) *tee {
	t := &tee{w: w, limit: limit}
	t.start()
	return t
}

func (t *tee) start() {
	t.exited = make(chan struct{})
	t.cond = sync.NewCond(&t.mu)
	if t.frame == nil {
		t.frame = func(w io.Writer, b []byte) error { _, err := w.Write(b); return err }
	}
	go t.run()
}

// write queues a copy of b. It reports false the first time the copy is cut for falling behind.
func (t *tee) write(b []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cut || t.done {
		return true
	}
	if t.queued+len(b) > t.limit {
		t.cut = true
		t.queue, t.queued = nil, 0
		t.cond.Signal()
		return false
	}
	t.queue = append(t.queue, append([]byte(nil), b...))
	t.queued += len(b)
	t.cond.Signal()
	return true
}

// flushTimeout bounds how long close waits for the queued copy to go out.
const flushTimeout = 30 * time.Second

// close flushes what is queued, then closes w (a half-close for a stream), and waits for it,
// at most flushTimeout: a writer that is stuck longer has its write deadline set in the past.
func (t *tee) close() {
	t.mu.Lock()
	t.done = true
	t.cond.Signal()
	t.mu.Unlock()
	select {
	case <-t.exited:
		return
	case <-time.After(flushTimeout):
	}
	t.mu.Lock()
	w := t.w
	t.mu.Unlock()
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(time.Unix(1, 0))
	}
	<-t.exited
}

func (t *tee) run() {
	defer close(t.exited)
	if t.open != nil {
		w, err := t.open()
		t.mu.Lock()
		if err != nil {
			t.cut = true
			t.queue, t.queued = nil, 0
		}
		t.w = w
		t.mu.Unlock()
		if err != nil {
			return
		}
	}
	defer t.w.Close()
	for {
		t.mu.Lock()
		for len(t.queue) == 0 && !t.done && !t.cut {
			t.cond.Wait()
		}
		if t.cut || (t.done && len(t.queue) == 0) {
			cut := t.cut
			t.mu.Unlock()
			if t.end != nil {
				t.end(t.w, cut)
			}
			return
		}
		// Everything queued goes in one write: fewer, larger frames when the copy lags.
		b := t.queue[0]
		if len(t.queue) > 1 {
			b = nil
			for _, q := range t.queue {
				b = append(b, q...)
			}
		}
		t.queue = t.queue[:0]
		t.mu.Unlock()
		err := t.frame(t.w, b)
		t.mu.Lock()
		t.queued -= len(b)
		if err != nil {
			t.cut = true
			t.queue, t.queued = nil, 0
		}
		t.mu.Unlock()
	}
}
