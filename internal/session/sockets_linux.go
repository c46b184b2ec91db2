package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/wire"
)

// Sockets hands out unconnected TCP sockets made by an agent on this machine in the target's
// network namespace (local targets only: a file descriptor cannot cross machines). It keeps a
// few of each family ready, so a connect need not wait for the agent. It owns the unix socket
// to the agent, the ready sockets and one reader goroutine, until Close.
type Sockets struct {
	conn *os.File

	mu      sync.Mutex
	nextID  uint32
	waiting map[uint32]chan socketResult
	ready   map[int][]*os.File // by family
	filling map[int]bool
	err     error // set once the agent's side is gone
	done    chan struct{}
}

type socketResult struct {
	files []*os.File
	errno syscall.Errno // the agent's answer
	err   error         // the channel failed
}

// poolSize is how many sockets of each family are kept ready. A refill starts when half are
// gone and asks for the rest in batches, so that a program making connections fast costs the
// agent one round trip per batch, not one per socket.
const poolSize = 2 * wire.MaxSocketBatch

// NewSockets starts handing out sockets over conn (a unix SOCK_SEQPACKET socket, non-blocking).
// The ready sockets are asked for with the first Get or TryGet of a family, or by prefill.
func NewSockets(conn *os.File) *Sockets {
	s := &Sockets{conn: conn, waiting: make(map[uint32]chan socketResult), ready: make(map[int][]*os.File),
		filling: make(map[int]bool), done: make(chan struct{})}
	go s.read()
	return s
}

// prefill asks for the first ready sockets of each family now, for a session that takes them
// at the program's first socket(2) or connect.
func (s *Sockets) prefill() {
	s.fill(unix.AF_INET)
	s.fill(unix.AF_INET6)
}

// Get returns a fresh TCP socket of family (unix.AF_INET or AF_INET6) made in the target's
// network namespace.
func (s *Sockets) Get(ctx context.Context, family int) (*os.File, error) {
	s.mu.Lock()
	if pool := s.ready[family]; len(pool) > 0 {
		f := pool[len(pool)-1]
		s.ready[family] = pool[:len(pool)-1]
		s.mu.Unlock()
		s.fill(family)
		return f, nil
	}
	s.mu.Unlock()
	defer s.fill(family)
	files, err := s.request(ctx, family, 1)
	if err != nil {
		return nil, err
	}
	return files[0], nil
}

// TryGet returns a ready socket of family without waiting, if there is one.
func (s *Sockets) TryGet(family int) (*os.File, bool) {
	s.mu.Lock()
	pool := s.ready[family]
	if len(pool) == 0 {
		s.mu.Unlock()
		s.fill(family)
		return nil, false
	}
	f := pool[len(pool)-1]
	s.ready[family] = pool[:len(pool)-1]
	s.mu.Unlock()
	s.fill(family)
	return f, true
}

// fill tops up the ready sockets of family in the background once half of them are gone.
func (s *Sockets) fill(family int) {
	s.mu.Lock()
	if s.filling[family] || s.err != nil || len(s.ready[family]) > poolSize/2 {
		s.mu.Unlock()
		return
	}
	s.filling[family] = true
	s.mu.Unlock()
	go func() {
		for {
			s.mu.Lock()
			want := min(poolSize-len(s.ready[family]), wire.MaxSocketBatch)
			if want <= 0 || s.err != nil {
				s.filling[family] = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			files, err := s.request(context.Background(), family, want)
			s.mu.Lock()
			if err != nil || s.err != nil {
				s.filling[family] = false
				s.mu.Unlock()
				for _, f := range files {
					f.Close()
				}
				return
			}
			s.ready[family] = append(s.ready[family], files...)
			s.mu.Unlock()
		}
	}()
}

// request asks the agent for n sockets of family (n at most wire.MaxSocketBatch).
func (s *Sockets) request(ctx context.Context, family, n int) ([]*os.File, error) {
	r, err := s.roundTrip(ctx, func(id uint32) []byte {
		return wire.AppendSocketRequest(nil, wire.SocketRequest{ID: id, Family: uint8(family), Count: uint8(n)})
	})
	if err != nil {
		return nil, fmt.Errorf("ask the agent for a socket: %w", err)
	}
	if r.errno != 0 {
		return nil, fmt.Errorf("agent could not make a socket: %w", r.errno)
	}
	if len(r.files) != n {
		for _, f := range r.files {
			f.Close()
		}
		return nil, fmt.Errorf("agent sent %d sockets for a request of %d", len(r.files), n)
	}
	return r.files, nil
}

// OpenFile opens path inside the target's root with flags and mode (open(2)'s), through the
// agent, and returns the descriptor. A failure of the open itself is the syscall.Errno the
// target's file system gave.
func (s *Sockets) OpenFile(ctx context.Context, path string, flags, mode uint32) (*os.File, error) {
	r, err := s.roundTrip(ctx, func(id uint32) []byte {
		return wire.AppendFileRequest(nil, wire.FileRequest{ID: id, Flags: flags, Mode: mode, Path: path})
	})
	if err != nil {
		return nil, fmt.Errorf("ask the agent to open %s: %w", path, err)
	}
	if r.errno != 0 {
		return nil, r.errno
	}
	if len(r.files) != 1 {
		for _, f := range r.files {
			f.Close()
		}
		return nil, fmt.Errorf("agent sent %d descriptors for %s", len(r.files), path)
	}
	return r.files[0], nil
}

// roundTrip sends the request that encode makes with a fresh ID and waits for its reply.
func (s *Sockets) roundTrip(ctx context.Context, encode func(id uint32) []byte) (socketResult, error) {
	ch := make(chan socketResult, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return socketResult{}, s.err
	}
	s.nextID++
	id := s.nextID
	s.waiting[id] = ch
	s.mu.Unlock()
	if _, err := s.conn.Write(encode(id)); err != nil {
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
		return socketResult{}, err
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
		select {
		case r := <-ch:
			for _, f := range r.files {
				f.Close()
			}
		default:
		}
		return socketResult{}, ctx.Err()
	}
}

// read delivers the agent's replies to their requests.
func (s *Sockets) read() {
	defer close(s.done)
	rc, err := s.conn.SyscallConn()
	if err != nil {
		s.fail(err)
		return
	}
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4*wire.MaxSocketBatch))
	for {
		var n, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err == nil && n == 0 {
			err = errors.New("the agent closed its socket channel")
		}
		if err != nil {
			s.fail(err)
			return
		}
		rep, err := wire.ParseSocketReply(buf[:n])
		if err != nil {
			s.fail(err)
			return
		}
		var res socketResult
		if rep.Errno != 0 {
			res.errno = syscall.Errno(rep.Errno)
		} else if files, err := filesFromRights(oob[:oobn]); err != nil {
			res.err = err
		} else {
			res.files = files
		}
		s.mu.Lock()
		ch, ok := s.waiting[rep.ID]
		delete(s.waiting, rep.ID)
		s.mu.Unlock()
		if ok {
			ch <- res
		} else {
			for _, f := range res.files {
				f.Close()
			}
		}
	}
}

func filesFromRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("agent's socket reply carries no sockets")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, errors.New("agent's socket reply carries no sockets")
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "target-socket")
	}
	return files, nil
}

func (s *Sockets) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	for id, ch := range s.waiting {
		ch <- socketResult{err: s.err}
		delete(s.waiting, id)
	}
}

// Close stops handing out sockets and closes the ready ones.
func (s *Sockets) Close() {
	s.fail(errors.New("closed"))
	s.conn.Close()
	<-s.done
	s.mu.Lock()
	for fam, pool := range s.ready {
		for _, f := range pool {
			f.Close()
		}
		delete(s.ready, fam)
	}
	s.mu.Unlock()
}
