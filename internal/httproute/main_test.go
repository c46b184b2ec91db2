package httproute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ioTimeout bounds every read and write the tests do, so that a bug fails a test instead of
// hanging it.
const ioTimeout = 5 * time.Second

// step is one thing a scripted peer (client or upstream) does on its connection.
type step struct {
	send      string        // write these bytes
	expect    string        // read exactly len(expect) bytes, which must equal expect
	expectEOF bool          // read: the other side must have closed, with no more bytes
	shutWrite bool          // shut down the writing side (half-close)
	hangUp    bool          // close the connection
	pause     time.Duration // sleep
}

// runScript plays steps on c and reports every difference through t.Errorf. It stops at the
// first failed step. It may run on any goroutine.
func runScript(t *testing.T, who string, c net.Conn, steps []step) {
	c.SetDeadline(time.Now().Add(ioTimeout))
	for i, st := range steps {
		var err error
		switch {
		case st.send != "":
			_, err = io.WriteString(c, st.send)
		case st.expect != "":
			got := make([]byte, len(st.expect))
			var n int
			n, err = io.ReadFull(c, got)
			if err == nil && string(got) != st.expect {
				err = fmt.Errorf("read %q, want %q", got, st.expect)
			} else if err != nil {
				err = fmt.Errorf("after reading %q of %q: %w", got[:n], st.expect, err)
			}
		case st.expectEOF:
			var rest []byte
			rest, err = io.ReadAll(c)
			if err == nil && len(rest) > 0 {
				err = fmt.Errorf("read %q, want the connection closed", rest)
			}
		case st.shutWrite:
			err = c.(*net.TCPConn).CloseWrite()
		case st.hangUp:
			err = c.Close()
		case st.pause > 0:
			time.Sleep(st.pause)
		}
		if err != nil {
			t.Errorf("%s step %d (%+v): %v", who, i, st, err)
			return
		}
	}
}

// rawServer is an upstream on 127.0.0.1 that plays one script per connection it accepts, in
// order. Unless a script ends with hangUp, the connection must then be closed by the peer
// with no further bytes (so the upstream got exactly the requests its script expects).
type rawServer struct {
	name    string
	ln      net.Listener
	scripts [][]step

	mu       sync.Mutex
	accepted int
}

func startRawServer(t *testing.T, name string, scripts [][]step) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{name: name, ln: ln, scripts: scripts}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			i := s.accepted
			s.accepted++
			s.mu.Unlock()
			if i >= len(scripts) {
				t.Errorf("%s: unexpected connection #%d", name, i+1)
				c.Close()
				continue
			}
			wg.Go(func() {
				defer c.Close()
				script := scripts[i]
				if len(script) == 0 || !script[len(script)-1].hangUp {
					script = append(script[:len(script):len(script)], step{expectEOF: true})
				}
				runScript(t, fmt.Sprintf("%s connection #%d", name, i+1), c, script)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		if s.accepted != len(scripts) {
			t.Errorf("%s: accepted %d connections, want %d", name, s.accepted, len(scripts))
		}
	})
	return s
}

func (s *rawServer) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.ln.Addr().String())
}

// failingDial is an upstream that cannot be reached.
func failingDial(context.Context) (net.Conn, error) {
	return nil, errors.New("connection refused (test)")
}

// routeLog records the Router's OnRequest calls as "program GET /x" lines.
type routeLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *routeLog) record(method, target string, toProgram bool) {
	where := "original"
	if toProgram {
		where = "program"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, where+" "+method+" "+target)
}

func (l *routeLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// serveOne listens on 127.0.0.1, and serves the first connection with serve on its own
// goroutine. The returned channel gets serve's result.
func serveOne(t *testing.T, serve func(net.Conn) error) (addr string, result <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- serve(c)
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), done
}

// waitResult waits for a serve result.
func waitResult(t *testing.T, result <-chan error) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

// chunk formats data as one chunk of a chunked body.
func chunk(data string) string {
	return fmt.Sprintf("%x\r\n%s\r\n", len(data), data)
}

// bigHeader is a header block over the 64 KiB limit.
var bigHeader = "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n"
