package session

import "golang.org/x/sys/unix"

// sysOpen is open(2), which only some architectures have.
const sysOpen = unix.SYS_OPEN

// sysEpollCreate is epoll_create(2), which only some architectures have.
const sysEpollCreate = unix.SYS_EPOLL_CREATE

// sysAccept is accept(2), which only some architectures have (all have accept4).
const sysAccept = unix.SYS_ACCEPT

// The path calls that arm64 has only in their *at form.
const (
	sysStat     = unix.SYS_STAT
	sysLstat    = unix.SYS_LSTAT
	sysAccess   = unix.SYS_ACCESS
	sysReadlink = unix.SYS_READLINK
	sysUnlink   = unix.SYS_UNLINK
	sysRmdir    = unix.SYS_RMDIR
	sysMkdir    = unix.SYS_MKDIR
	sysRename   = unix.SYS_RENAME
	sysRenameat = unix.SYS_RENAMEAT
)
