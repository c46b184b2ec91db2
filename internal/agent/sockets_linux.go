package agent

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/wire"
)

// serveSockets answers socket requests on conn, a unix SOCK_SEQPACKET socket shared with a
// client on the same machine, with fresh TCP sockets made in the target's network namespace,
// all those of one request attached to one reply.
// It returns when conn is closed or ctx ends.
func (a *agent) serveSockets(ctx context.Context, conn *os.File) {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(deadlinePast) })
	defer stop()
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 8192)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN
		})
		if err != nil || rerr != nil || n == 0 {
			return
		}
		var id uint32
		var fds []int
		if wire.IsFileRequest(buf[:n]) {
			req, perr := wire.ParseFileRequest(buf[:n])
			if perr != nil {
				a.log.Debug("bad file request", "err", perr)
				return
			}
			id = req.ID
			var fd int
			if fd, err = a.openFile(req); err == nil {
				fds = []int{fd}
			}
		} else {
			req, perr := wire.ParseSocketRequest(buf[:n])
			if perr != nil {
				a.log.Debug("bad socket request", "err", perr)
				return
			}
			id = req.ID
			fds, err = a.newSockets(int(req.Family), int(req.Count))
		}
		reply := wire.AppendSocketReply(nil, wire.SocketReply{ID: id, Errno: uint16(errnoOf(err))})
		var oob []byte
		if err == nil {
			reply = wire.AppendSocketReply(nil, wire.SocketReply{ID: id})
			oob = unix.UnixRights(fds...)
		}
		var werr error
		rc.Write(func(fd uintptr) bool {
			werr = unix.Sendmsg(int(fd), reply, oob, nil, unix.MSG_DONTWAIT)
			return werr != unix.EAGAIN
		})
		for _, fd := range fds {
			unix.Close(fd)
		}
		if werr != nil {
			return
		}
	}
}

// newSockets makes n unconnected TCP sockets of family in the target's network namespace.
func (a *agent) newSockets(family, n int) ([]int, error) {
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return nil, errors.New("socket request for a family that is not inet")
	}
	var fds []int
	err := a.target.netns.Do(func() error {
		for range n {
			sfd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
			if err != nil {
				return err
			}
			fds = append(fds, sfd)
		}
		return nil
	})
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	return fds, nil
}

// openFile opens a path inside the target's root for a client on this machine (the descriptor
// is passed to it): "..", absolute symlinks and symlink chains stay inside the root.
func (a *agent) openFile(req wire.FileRequest) (int, error) {
	fd, err := unix.Openat2(a.target.rootfd, req.Path, &unix.OpenHow{
		Flags:   uint64(req.Flags) | unix.O_CLOEXEC,
		Mode:    uint64(req.Mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, err
	}
	return fd, nil
}
