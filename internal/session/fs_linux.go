package session

import (
	"context"
	"errors"
	"os"
	"path"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/intercept"
)

// Remote files. A path the rules call remote is opened by the agent inside the target's root,
// and the descriptor is put in the program (local targets: the agent passes it over the
// socket-passing channel). From then on the program's reads, seeks, fstat, mmap and getdents on
// it are the kernel's own, on the target's file: nothing else is trapped, and nothing is copied,
// however large the file. Path calls that do not open (the stat family, access, readlink) are
// answered from a descriptor opened with O_PATH the same way.

// FileClass is what a path is for the program.
type FileClass int

const (
	FileLocal       FileClass = iota // this machine's
	FileRemoteRead                   // the target's, read only: opens for writing stay local
	FileRemoteWrite                  // the target's, read and written there
	FileNotFound                     // does not exist for the program
)

func (c FileClass) String() string {
	switch c {
	case FileRemoteRead:
		return "remote-read"
	case FileRemoteWrite:
		return "remote-write"
	case FileNotFound:
		return "not-found"
	}
	return "local"
}

// FileRules classify the program's paths; rule says which rule decided, for the debug log.
type FileRules interface {
	Classify(path string) (class FileClass, rule string)
}

// FilesOptions turn on remote files.
type FilesOptions struct {
	Rules FileRules
	// Open opens a path inside the target's root with open(2)'s flags and mode; a failure of
	// the open itself is a syscall.Errno (the target's file system's answer).
	Open func(ctx context.Context, path string, flags, mode uint32) (*os.File, error)
	// UID and GIDs are the program's, for access(2) answers.
	UID  int
	GIDs []int
	// OpensBlock says that Open waits for another process (the agent): the path calls are then
	// handled on goroutines of their own, not on the notification goroutine.
	OpensBlock bool
	// Catchall is the rule Classify names for paths no rule matched: their (many) local
	// decisions are not logged, those of every other rule are (debug).
	Catchall string
}

// QuietLocal says whether a local decision by rule goes unlogged.
func (f *FilesOptions) QuietLocal(rule string) bool { return rule == f.Catchall }

// remotePath reads and resolves the path argument of a path call made relative to dirfd, and
// classifies it. ok is false when doppel lets the call through untouched: a local path, a path
// relative to a descriptor other than the working directory (the kernel resolves it, and for
// a descriptor of the target's that stays in the target's tree), or a path it cannot read.
func (r *Redirector) remotePath(q *intercept.Request, dirfd int, pathPtr uint64) (abs string, class FileClass, ok bool) {
	p, err := q.ReadString(pathPtr, unix.PathMax)
	if err != nil {
		return "", FileLocal, false
	}
	return r.classifyPath(q, dirfd, p)
}

// classifyPath is remotePath for a path already read.
func (r *Redirector) classifyPath(q *intercept.Request, dirfd int, p string) (abs string, class FileClass, ok bool) {
	if p == "" {
		return "", FileLocal, false
	}
	if p[0] != '/' {
		if dirfd != unix.AT_FDCWD {
			return "", FileLocal, false
		}
		cwd, err := os.Readlink("/proc/" + strconv.Itoa(q.Pid()) + "/cwd")
		if err != nil {
			return "", FileLocal, false
		}
		p = cwd + "/" + p
	}
	abs = path.Clean(p)
	class, rule := r.opt.RemoteFiles.Rules.Classify(abs)
	if class == FileLocal {
		if !r.opt.RemoteFiles.QuietLocal(rule) {
			r.log.Debug("local file", "path", abs, "rule", rule)
		}
		return abs, class, false
	}
	r.log.Debug("remote file", "path", abs, "class", class, "rule", rule)
	return abs, class, true
}

// writes says whether open flags write or create (O_TMPFILE includes O_DIRECTORY's bit, so it
// is tested whole).
func writes(flags int) bool {
	return flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_APPEND) != 0 ||
		flags&unix.O_TMPFILE == unix.O_TMPFILE
}

// openRemote answers an open of a remote path: the agent opens it and the descriptor goes in
// the program. It returns false when the open stays local (writing to a read-only path).
func (r *Redirector) openRemote(q *intercept.Request, abs string, class FileClass, flags int, mode uint32) bool {
	switch {
	case class == FileNotFound:
		q.Errno(unix.ENOENT)
		return true
	case class == FileRemoteRead && writes(flags):
		return false // read mode: writes go to this machine's file
	}
	f, err := r.openTarget(abs, uint32(flags&^unix.O_CLOEXEC), mode)
	if err != nil {
		q.Errno(errnoOfFile(err))
		return true
	}
	defer f.Close()
	fd, err := q.AddFD(f, flags&unix.O_CLOEXEC != 0)
	if err != nil {
		q.Errno(errnoOf(err))
		return true
	}
	q.Return(int64(fd))
	return true
}

func (r *Redirector) openTarget(abs string, flags, mode uint32) (*os.File, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	return r.opt.RemoteFiles.Open(ctx, abs, flags, mode)
}

// errnoOfFile is the errno a failed remote file operation gives the program.
func errnoOfFile(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

// withPathFD opens abs with O_PATH in the target (not following a last symlink when nofollow)
// and runs fn with the descriptor; NotFound paths and failed opens answer q with their errno.
func (r *Redirector) withPathFD(q *intercept.Request, abs string, class FileClass, nofollow bool, fn func(fd int)) {
	if class == FileNotFound {
		q.Errno(unix.ENOENT)
		return
	}
	flags := uint32(unix.O_PATH)
	if nofollow {
		flags |= unix.O_NOFOLLOW
	}
	r.withTargetFD(q, abs, flags, fn)
}

// withTargetFD opens abs in the target with flags and runs fn with the descriptor; a failed
// open answers q with its errno.
func (r *Redirector) withTargetFD(q *intercept.Request, abs string, flags uint32, fn func(fd int)) {
	f, err := r.openTarget(abs, flags, 0)
	if err != nil {
		q.Errno(errnoOfFile(err))
		return
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		q.Errno(unix.EIO)
		return
	}
	rc.Control(func(fd uintptr) { fn(int(fd)) })
}

// onNewfstatat handles newfstatat(dirfd, path, statbuf, flags).
func (r *Redirector) onNewfstatat(q *intercept.Request) {
	flags := int(q.Arg(3))
	if flags&unix.AT_EMPTY_PATH != 0 {
		if p, err := q.ReadString(q.Arg(1), 1); err == nil && p == "" {
			q.Continue() // fstat of a descriptor
			return
		}
	}
	abs, class, ok := r.remotePath(q, int(int32(q.Arg(0))), q.Arg(1))
	if !ok {
		q.Continue()
		return
	}
	r.statRemote(q, abs, class, flags&unix.AT_SYMLINK_NOFOLLOW != 0, q.Arg(2))
}

// onStat handles stat(path, statbuf) and, with nofollow, lstat.
func (r *Redirector) onStat(q *intercept.Request, nofollow bool) {
	abs, class, ok := r.remotePath(q, unix.AT_FDCWD, q.Arg(0))
	if !ok {
		q.Continue()
		return
	}
	r.statRemote(q, abs, class, nofollow, q.Arg(1))
}

func (r *Redirector) statRemote(q *intercept.Request, abs string, class FileClass, nofollow bool, buf uint64) {
	r.withPathFD(q, abs, class, nofollow, func(fd int) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			q.Errno(errnoOfFile(err))
			return
		}
		if err := q.WriteMem(buf, unsafe.Slice((*byte)(unsafe.Pointer(&st)), unsafe.Sizeof(st))); err != nil {
			q.Errno(unix.EFAULT)
			return
		}
		q.Return(0)
	})
}

// onStatx handles statx(dirfd, path, flags, mask, statxbuf).
func (r *Redirector) onStatx(q *intercept.Request) {
	flags := int(q.Arg(2))
	if flags&unix.AT_EMPTY_PATH != 0 {
		if p, err := q.ReadString(q.Arg(1), 1); err == nil && p == "" {
			q.Continue()
			return
		}
	}
	abs, class, ok := r.remotePath(q, int(int32(q.Arg(0))), q.Arg(1))
	if !ok {
		q.Continue()
		return
	}
	r.withPathFD(q, abs, class, flags&unix.AT_SYMLINK_NOFOLLOW != 0, func(fd int) {
		var stx unix.Statx_t
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|flags&atStatxSyncType, int(q.Arg(3)), &stx); err != nil {
			q.Errno(errnoOfFile(err))
			return
		}
		if err := q.WriteMem(q.Arg(4), unsafe.Slice((*byte)(unsafe.Pointer(&stx)), unsafe.Sizeof(stx))); err != nil {
			q.Errno(unix.EFAULT)
			return
		}
		q.Return(0)
	})
}

// onAccess handles faccessat and faccessat2 (dirfd, path, mode[, flags]) and, with atFD false,
// access(path, mode).
func (r *Redirector) onAccess(q *intercept.Request, atFD bool, withFlags bool) {
	dirfd, pathArg, modeArg := unix.AT_FDCWD, 0, 1
	if atFD {
		dirfd, pathArg, modeArg = int(int32(q.Arg(0))), 1, 2
	}
	abs, class, ok := r.remotePath(q, dirfd, q.Arg(pathArg))
	if !ok {
		q.Continue()
		return
	}
	mode := uint32(q.Arg(modeArg))
	nofollow := withFlags && int(q.Arg(3))&unix.AT_SYMLINK_NOFOLLOW != 0
	r.withPathFD(q, abs, class, nofollow, func(fd int) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			q.Errno(errnoOfFile(err))
			return
		}
		if mode&unix.W_OK != 0 && class == FileRemoteRead {
			q.Errno(unix.EROFS) // read mode: the target's files are not written
			return
		}
		if !r.permits(&st, mode) {
			q.Errno(unix.EACCES)
			return
		}
		q.Return(0)
	})
}

// permits checks mode (R_OK, W_OK, X_OK) against the file's permission bits for the
// program's user, as the kernel would for a process with no capabilities.
func (r *Redirector) permits(st *unix.Stat_t, mode uint32) bool {
	if mode == unix.F_OK {
		return true
	}
	uid := r.opt.RemoteFiles.UID
	var bits uint32
	switch {
	case uid == 0:
		// root may read and write anything, and run what has any execute bit.
		if mode&unix.X_OK != 0 && st.Mode&0o111 == 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return false
		}
		return true
	case int(st.Uid) == uid:
		bits = (st.Mode >> 6) & 7
	case r.inGroup(int(st.Gid)):
		bits = (st.Mode >> 3) & 7
	default:
		bits = st.Mode & 7
	}
	return bits&mode == mode
}

func (r *Redirector) inGroup(gid int) bool {
	for _, g := range r.opt.RemoteFiles.GIDs {
		if g == gid {
			return true
		}
	}
	return false
}

// onReadlink handles readlinkat(dirfd, path, buf, size) and, with atFD false,
// readlink(path, buf, size).
func (r *Redirector) onReadlink(q *intercept.Request, atFD bool) {
	dirfd, arg := unix.AT_FDCWD, 0
	if atFD {
		dirfd, arg = int(int32(q.Arg(0))), 1
	}
	abs, class, ok := r.remotePath(q, dirfd, q.Arg(arg))
	if !ok {
		q.Continue()
		return
	}
	buf, size := q.Arg(arg+1), int(int32(q.Arg(arg+2)))
	if size <= 0 {
		q.Errno(unix.EINVAL)
		return
	}
	r.withPathFD(q, abs, class, true, func(fd int) {
		b := make([]byte, min(size, unix.PathMax))
		n, err := unix.Readlinkat(fd, "", b)
		if err != nil {
			q.Errno(errnoOfFile(err))
			return
		}
		if err := q.WriteMem(buf, b[:n]); err != nil {
			q.Errno(unix.EFAULT)
			return
		}
		q.Return(int64(n))
	})
}

// atStatxSyncType is AT_STATX_SYNC_TYPE, the mask of statx's sync flags.
const atStatxSyncType = 0x6000

// withParent opens the directory of abs (O_PATH) in the target and runs fn with it and the
// last element; for paths written on the target only (write mode).
func (r *Redirector) withParent(q *intercept.Request, abs string, fn func(dirfd int, name string)) {
	dir, name := path.Split(abs)
	if name == "" || name == "." || name == ".." {
		q.Errno(unix.EINVAL)
		return
	}
	r.withTargetFD(q, path.Clean(dir), unix.O_PATH|unix.O_DIRECTORY, func(fd int) { fn(fd, name) })
}

// writablePath classifies a path that a call would change: ok true with the path when the
// target's copy is to change (write mode); a NotFound path is answered ENOENT here.
func (r *Redirector) writablePath(q *intercept.Request, dirfd int, pathPtr uint64) (abs string, ok bool) {
	abs, class, remote := r.remotePath(q, dirfd, pathPtr)
	switch {
	case !remote || class == FileRemoteRead:
		q.Continue() // read mode: changes happen on this machine
		return "", false
	case class == FileNotFound:
		q.Errno(unix.ENOENT)
		return "", false
	}
	return abs, true
}

// answer ends q with err's errno, or 0.
func answer(q *intercept.Request, err error) {
	if err != nil {
		q.Errno(errnoOfFile(err))
		return
	}
	q.Return(0)
}

// onUnlink handles unlinkat(dirfd, path, flags) (atFD), unlink(path) and rmdir(path) (dir).
func (r *Redirector) onUnlink(q *intercept.Request, atFD, dir bool) {
	dirfd, arg, flags := unix.AT_FDCWD, 0, 0
	if atFD {
		dirfd, arg, flags = int(int32(q.Arg(0))), 1, int(q.Arg(2))
	}
	if dir {
		flags = unix.AT_REMOVEDIR
	}
	abs, ok := r.writablePath(q, dirfd, q.Arg(arg))
	if !ok {
		return
	}
	r.withParent(q, abs, func(pfd int, name string) { answer(q, unix.Unlinkat(pfd, name, flags)) })
}

// onMkdir handles mkdirat(dirfd, path, mode) (atFD) and mkdir(path, mode).
func (r *Redirector) onMkdir(q *intercept.Request, atFD bool) {
	dirfd, arg := unix.AT_FDCWD, 0
	if atFD {
		dirfd, arg = int(int32(q.Arg(0))), 1
	}
	abs, ok := r.writablePath(q, dirfd, q.Arg(arg))
	if !ok {
		return
	}
	mode := uint32(q.Arg(arg + 1))
	r.withParent(q, abs, func(pfd int, name string) { answer(q, unix.Mkdirat(pfd, name, mode)) })
}

// onRename handles renameat2(olddirfd, old, newdirfd, new, flags), renameat (no flags) and
// rename(old, new). Both paths must be the target's (write mode), or both this machine's:
// across the two it is EXDEV, as between two file systems.
func (r *Redirector) onRename(q *intercept.Request, atFD, withFlags bool) {
	oldDir, oldArg, newDir, newArg, flags := unix.AT_FDCWD, 0, unix.AT_FDCWD, 1, 0
	if atFD {
		oldDir, oldArg, newDir, newArg = int(int32(q.Arg(0))), 1, int(int32(q.Arg(2))), 3
		if withFlags {
			flags = int(q.Arg(4))
		}
	}
	oldAbs, oldClass, oldRemote := r.remotePath(q, oldDir, q.Arg(oldArg))
	newAbs, newClass, newRemote := r.remotePath(q, newDir, q.Arg(newArg))
	oldW := oldRemote && oldClass == FileRemoteWrite
	newW := newRemote && newClass == FileRemoteWrite
	switch {
	case oldClass == FileNotFound && oldRemote:
		q.Errno(unix.ENOENT)
	case !oldW && !newW:
		q.Continue()
	case oldW != newW:
		q.Errno(unix.EXDEV)
	default:
		r.withParent(q, oldAbs, func(opfd int, oldName string) {
			r.withParent(q, newAbs, func(npfd int, newName string) {
				answer(q, unix.Renameat2(opfd, oldName, npfd, newName, uint(flags)))
			})
		})
	}
}

// onTruncate handles truncate(path, length).
func (r *Redirector) onTruncate(q *intercept.Request) {
	abs, ok := r.writablePath(q, unix.AT_FDCWD, q.Arg(0))
	if !ok {
		return
	}
	f, err := r.openTarget(abs, unix.O_WRONLY, 0)
	if err != nil {
		q.Errno(errnoOfFile(err))
		return
	}
	defer f.Close()
	answer(q, f.Truncate(int64(q.Arg(1))))
}
