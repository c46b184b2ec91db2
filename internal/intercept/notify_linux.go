package intercept

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's UAPI structures (linux/seccomp.h).
type seccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type seccompNotifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

type seccompNotifSizes struct {
	Notif, NotifResp, Data uint16
}

func getNotifSizes() (seccompNotifSizes, error) {
	var sz seccompNotifSizes
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&sz)))
	if errno != 0 {
		return sz, fmt.Errorf("seccomp(SECCOMP_GET_NOTIF_SIZES): %w", errno)
	}
	return sz, nil
}

// Request is one trapped system call. Its methods may be called from any goroutine.
type Request struct {
	s        *Supervisor
	id       uint64
	pid      int
	data     seccompData
	answered atomic.Bool
	// reply sends the answer; it is s.reply except in tests.
	reply func(resp seccompNotifResp)
}

// Nr is the system call number.
func (r *Request) Nr() int { return int(r.data.Nr) }

// Arg is the i-th system call argument (0..5).
func (r *Request) Arg(i int) uint64 { return r.data.Args[i] }

// Pid is the calling thread's id, as the notification gives it (in this process's pid namespace).
func (r *Request) Pid() int { return r.pid }

// Continue lets the kernel run the system call as the program made it. Only the first answer
// to a Request counts.
func (r *Request) Continue() {
	r.answer(seccompNotifResp{ID: r.id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE})
}

// Return makes the system call return val without running it.
func (r *Request) Return(val int64) {
	r.answer(seccompNotifResp{ID: r.id, Val: val})
}

// Errno makes the system call fail with e without running it.
func (r *Request) Errno(e syscall.Errno) {
	r.answer(seccompNotifResp{ID: r.id, Error: -int32(e)})
}

func (r *Request) answer(resp seccompNotifResp) {
	if !r.answered.CompareAndSwap(false, true) {
		return
	}
	r.reply(resp)
}

// ioctl runs an ioctl on the listener unless Wait has closed it.
func (s *Supervisor) ioctl(req uintptr, arg unsafe.Pointer) (uintptr, error) {
	s.listenerMu.RLock()
	defer s.listenerMu.RUnlock()
	if s.listener < 0 {
		return 0, os.ErrClosed
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.listener), req, uintptr(arg))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// reply sends an answer. ENOENT means the caller is gone (killed, or interrupted by a signal:
// then the call is re-issued as a new notification); there is no one left to tell.
func (s *Supervisor) reply(resp seccompNotifResp) {
	buf := make([]byte, max(int(s.sizes.NotifResp), int(unsafe.Sizeof(resp))))
	*(*seccompNotifResp)(unsafe.Pointer(&buf[0])) = resp
	_, err := s.ioctl(unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&buf[0]))
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, os.ErrClosed) {
		s.log.Debug("seccomp notification reply failed", "id", resp.ID, "err", err)
	}
}

// Valid reports whether the request is still pending: the caller has not been killed nor
// interrupted, so a pid read or opened since the notification still names the same thread.
func (r *Request) Valid() bool {
	if r.s == nil {
		return false
	}
	id := r.id
	_, err := r.s.ioctl(unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
	return err == nil
}

func (r *Request) checkValid(what string) error {
	if !r.Valid() {
		return fmt.Errorf("%s of thread %d: %w (request no longer valid)", what, r.pid, unix.ENOENT)
	}
	return nil
}

// ReadMem reads exactly len(buf) bytes at addr in the caller's memory.
func (r *Request) ReadMem(addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(r.pid, local, remote, 0)
	if err != nil {
		return fmt.Errorf("read %d bytes at %#x of thread %d: %w", len(buf), addr, r.pid, err)
	}
	if n != len(buf) {
		return fmt.Errorf("read %d bytes at %#x of thread %d: short read (%d): %w", len(buf), addr, r.pid, n, unix.EFAULT)
	}
	return r.checkValid("read memory")
}

// WriteMem writes data at addr in the caller's memory, all of it or an error.
func (r *Request) WriteMem(addr uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &data[0]}}
	local[0].SetLen(len(data))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(data)}}
	n, err := unix.ProcessVMWritev(r.pid, local, remote, 0)
	if err != nil {
		return fmt.Errorf("write %d bytes at %#x of thread %d: %w", len(data), addr, r.pid, err)
	}
	if n != len(data) {
		return fmt.Errorf("write %d bytes at %#x of thread %d: short write (%d): %w", len(data), addr, r.pid, n, unix.EFAULT)
	}
	return nil
}

// ReadString reads a NUL-terminated string of at most max bytes (NUL excluded) at addr, page by
// page so that it never reads across into an unmapped page past the string's end.
func (r *Request) ReadString(addr uint64, max int) (string, error) {
	pageSize := uint64(os.Getpagesize())
	var out []byte
	for len(out) <= max {
		n := int(pageSize - addr%pageSize)
		n = min(n, max+1-len(out))
		chunk := make([]byte, n)
		local := []unix.Iovec{{Base: &chunk[0]}}
		local[0].SetLen(n)
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: n}}
		got, err := unix.ProcessVMReadv(r.pid, local, remote, 0)
		if err != nil {
			return "", fmt.Errorf("read string at %#x of thread %d: %w", addr, r.pid, err)
		}
		if got == 0 {
			return "", fmt.Errorf("read string at %#x of thread %d: %w", addr, r.pid, unix.EFAULT)
		}
		if i := bytes.IndexByte(chunk[:got], 0); i >= 0 {
			out = append(out, chunk[:i]...)
			if err := r.checkValid("read string"); err != nil {
				return "", err
			}
			return string(out), nil
		}
		out = append(out, chunk[:got]...)
		addr += uint64(got)
	}
	return "", fmt.Errorf("read string at %#x of thread %d: longer than %d bytes: %w", addr, r.pid, max, unix.ENAMETOOLONG)
}

// maxIov is UIO_MAXIOV, the kernel's limit on an iovec array.
const maxIov = 1024

// readIovecs reads the caller's struct iovec array.
func (r *Request) readIovecs(iovAddr uint64, iovCnt int) ([]unix.RemoteIovec, error) {
	if iovCnt < 0 || iovCnt > maxIov {
		return nil, fmt.Errorf("iovec count %d: %w", iovCnt, unix.EINVAL)
	}
	if iovCnt == 0 {
		return nil, nil
	}
	raw := make([]byte, 16*iovCnt)
	if err := r.ReadMem(iovAddr, raw); err != nil {
		return nil, err
	}
	iovs := make([]unix.RemoteIovec, iovCnt)
	for i := range iovs {
		base := *(*uint64)(unsafe.Pointer(&raw[16*i]))
		length := *(*uint64)(unsafe.Pointer(&raw[16*i+8]))
		if int64(length) < 0 {
			return nil, fmt.Errorf("iovec %d length %d: %w", i, length, unix.EINVAL)
		}
		iovs[i] = unix.RemoteIovec{Base: uintptr(base), Len: int(length)}
	}
	return iovs, nil
}

// clip cuts iovs down to at most limit bytes in total, dropping empty entries.
func clip(iovs []unix.RemoteIovec, limit int) ([]unix.RemoteIovec, int) {
	var out []unix.RemoteIovec
	total := 0
	for _, v := range iovs {
		if total == limit {
			break
		}
		v.Len = min(v.Len, limit-total)
		if v.Len > 0 {
			out = append(out, v)
			total += v.Len
		}
	}
	return out, total
}

// ReadIov gathers what the caller's struct iovec array at iovAddr points at, at most max bytes.
func (r *Request) ReadIov(iovAddr uint64, iovCnt int, max int) ([]byte, error) {
	iovs, err := r.readIovecs(iovAddr, iovCnt)
	if err != nil {
		return nil, err
	}
	iovs, total := clip(iovs, max)
	if total == 0 {
		return []byte{}, nil
	}
	buf := make([]byte, total)
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(total)
	n, err := unix.ProcessVMReadv(r.pid, local, iovs, 0)
	if err != nil {
		return nil, fmt.Errorf("read iovecs of thread %d: %w", r.pid, err)
	}
	if n != total {
		return nil, fmt.Errorf("read iovecs of thread %d: short read (%d of %d): %w", r.pid, n, total, unix.EFAULT)
	}
	return buf, r.checkValid("read iovecs")
}

// WriteIov scatters data into the caller's struct iovec array at iovAddr and returns the number
// of bytes written: len(data), or less if the buffers are smaller.
func (r *Request) WriteIov(iovAddr uint64, iovCnt int, data []byte) (int, error) {
	iovs, err := r.readIovecs(iovAddr, iovCnt)
	if err != nil {
		return 0, err
	}
	iovs, total := clip(iovs, len(data))
	if total == 0 {
		return 0, nil
	}
	local := []unix.Iovec{{Base: &data[0]}}
	local[0].SetLen(total)
	n, err := unix.ProcessVMWritev(r.pid, local, iovs, 0)
	if err != nil {
		return 0, fmt.Errorf("write iovecs of thread %d: %w", r.pid, err)
	}
	if n != total {
		return n, fmt.Errorf("write iovecs of thread %d: short write (%d of %d): %w", r.pid, n, total, unix.EFAULT)
	}
	return n, nil
}

// pidfd opens a pidfd for the calling thread (PIDFD_THREAD), or for its thread group on kernels
// before 6.9.
func (r *Request) pidfd() (int, error) {
	if haveThreadPidfd() {
		fd, err := unix.PidfdOpen(r.pid, unix.PIDFD_THREAD)
		if err != nil {
			return -1, fmt.Errorf("pidfd_open(%d, PIDFD_THREAD): %w", r.pid, err)
		}
		return fd, nil
	}
	tgid, err := threadGroup(r.pid)
	if err != nil {
		return -1, err
	}
	fd, err := unix.PidfdOpen(tgid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open(%d): %w", tgid, err)
	}
	return fd, nil
}

// threadGroup reads the Tgid of thread tid from /proc.
func threadGroup(tid int) (int, error) {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no Tgid in /proc/%d/status", tid)
}

// GetFD returns a copy of the caller's file descriptor fd (pidfd_getfd): the same open file
// description, close-on-exec in this process. The caller closes it. Beware that calling Fd on
// it puts the shared description (the program's too) in blocking mode; GetRawFD avoids that.
func (r *Request) GetFD(fd int) (*os.File, error) {
	nfd, err := r.GetRawFD(fd)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "fd "+strconv.Itoa(fd)+" of "+strconv.Itoa(r.pid)), nil
}

// GetRawFD is GetFD returning the bare descriptor, which the caller closes with unix.Close.
func (r *Request) GetRawFD(fd int) (int, error) {
	if r.s != nil && haveThreadPidfd() {
		if nfd, ok, err := r.s.pidfds.getfd(r.pid, fd); ok {
			if err != nil {
				return -1, fmt.Errorf("pidfd_getfd(thread %d, fd %d): %w", r.pid, fd, err)
			}
			return nfd, nil
		}
	}
	pidfd, err := r.pidfd()
	if err != nil {
		return -1, err
	}
	nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		unix.Close(pidfd)
		return -1, fmt.Errorf("pidfd_getfd(thread %d, fd %d): %w", r.pid, fd, err)
	}
	if err := r.checkValid("get fd"); err != nil {
		unix.Close(pidfd)
		unix.Close(nfd)
		return -1, err
	}
	if r.s != nil && haveThreadPidfd() {
		r.s.pidfds.put(r.pid, pidfd)
	} else {
		unix.Close(pidfd)
	}
	return nfd, nil
}

// pidfdCache keeps the thread pidfds (PIDFD_THREAD) of the program's threads that GetRawFD
// opened, by thread id. A pidfd names one thread for good: once the thread is gone, any
// pidfd_getfd through it fails with ESRCH, even when its id has been given to a new thread.
// So a cached pidfd that works is the calling thread's, and needs no check that the request is
// still valid, which a fresh one does (the id may have been reused before the open).
type pidfdCache struct {
	mu    sync.Mutex
	byTID map[int]int
}

// maxPidfds bounds the cache: past it, every entry is dropped (threads come and go).
const maxPidfds = 256

// getfd is pidfd_getfd of descriptor fd through the cached pidfd of thread tid; ok is false
// when there is none that works (none cached, or its thread is gone: the id is another's now).
// The lock is held through the call, so that no pidfd is closed while in use.
func (c *pidfdCache) getfd(tid, fd int) (nfd int, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pidfd, ok := c.byTID[tid]
	if !ok {
		return -1, false, nil
	}
	nfd, err = unix.PidfdGetfd(pidfd, fd, 0)
	if errors.Is(err, unix.ESRCH) {
		unix.Close(pidfd)
		delete(c.byTID, tid)
		return -1, false, nil
	}
	return nfd, true, err
}

func (c *pidfdCache) put(tid, pidfd int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byTID == nil || len(c.byTID) >= maxPidfds {
		c.closeAllLocked()
		c.byTID = make(map[int]int)
	}
	if old, ok := c.byTID[tid]; ok {
		unix.Close(old)
	}
	c.byTID[tid] = pidfd
}

func (c *pidfdCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeAllLocked()
}

func (c *pidfdCache) closeAllLocked() {
	for tid, fd := range c.byTID {
		unix.Close(fd)
		delete(c.byTID, tid)
	}
}

// FDInode returns the inode number of the caller's file descriptor fd (for a socket, the
// socket's inode, which stays the same across dup and fork).
func (r *Request) FDInode(fd int) (uint64, error) {
	var st unix.Stat_t
	path := "/proc/" + strconv.Itoa(r.pid) + "/fd/" + strconv.Itoa(fd)
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	if err := r.checkValid("stat fd"); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// AddFD installs a copy of f in the caller (SECCOMP_IOCTL_NOTIF_ADDFD, without the SEND flag)
// and returns its number there; the handler then answers Return(int64(fd)). The copy is
// close-on-exec there if cloexec is set.
func (r *Request) AddFD(f *os.File, cloexec bool) (int, error) {
	return r.addFD(f, -1, cloexec)
}

// AddFDAt installs a copy of f in the caller as its descriptor target, replacing what target
// was (SECCOMP_ADDFD_FLAG_SETFD). Epoll registrations of the replaced file are lost.
func (r *Request) AddFDAt(f *os.File, target int, cloexec bool) error {
	_, err := r.addFD(f, target, cloexec)
	return err
}

// AddRawFDAt is AddFDAt for a bare descriptor of this process, which stays open here.
func (r *Request) AddRawFDAt(fd, target int, cloexec bool) error {
	_, err := r.addRawFD(fd, target, cloexec)
	return err
}

// AddRawFD is AddFD for a bare descriptor of this process, which stays open here.
func (r *Request) AddRawFD(fd int, cloexec bool) (int, error) {
	return r.addRawFD(fd, -1, cloexec)
}

func (r *Request) addFD(f *os.File, target int, cloexec bool) (int, error) {
	rc, err := f.SyscallConn() // not f.Fd(), which would make f blocking
	if err != nil {
		return -1, fmt.Errorf("add fd: %w", err)
	}
	newfd := -1
	var addErr error
	err = rc.Control(func(fd uintptr) { newfd, addErr = r.addRawFD(int(fd), target, cloexec) })
	runtime.KeepAlive(f)
	if err != nil {
		return -1, fmt.Errorf("add fd: %w", err)
	}
	return newfd, addErr
}

// ReturnFD answers the call by installing a copy of the bare descriptor fd (which stays open
// here) in the caller at its lowest free number and making the call return that number, in one
// step (SECCOMP_ADDFD_FLAG_SEND, Linux 5.14): the way to answer socket(2) with a socket made
// elsewhere. When it fails the request is still unanswered, unless the caller is gone. Call it
// only from the handler itself, on the notification thread: a signal reaching the thread that
// makes this call was measured to hand the program descriptor 0 (interception.md), and that
// thread blocks them.
func (r *Request) ReturnFD(fd int, cloexec bool) error {
	if r.s == nil {
		return os.ErrClosed
	}
	if r.answered.Load() {
		return errors.New("return fd: request already answered")
	}
	add := seccompNotifAddfd{ID: r.id, Srcfd: uint32(fd), Flags: unix.SECCOMP_ADDFD_FLAG_SEND}
	if cloexec {
		add.NewfdFlags = unix.O_CLOEXEC
	}
	if _, err := r.s.ioctl(unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&add)); err != nil {
		return fmt.Errorf("return fd to thread %d: %w", r.pid, err)
	}
	r.answered.Store(true)
	return nil
}

func (r *Request) addRawFD(fd, target int, cloexec bool) (int, error) {
	if r.s == nil {
		return -1, os.ErrClosed
	}
	add := seccompNotifAddfd{ID: r.id, Srcfd: uint32(fd)}
	if target >= 0 {
		add.Flags = unix.SECCOMP_ADDFD_FLAG_SETFD
		add.Newfd = uint32(target)
	}
	if cloexec {
		add.NewfdFlags = unix.O_CLOEXEC
	}
	newfd, err := r.s.ioctl(unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&add))
	if err != nil {
		return -1, fmt.Errorf("add fd to thread %d: %w", r.pid, err)
	}
	return int(newfd), nil
}
