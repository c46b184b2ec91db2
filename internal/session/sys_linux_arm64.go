package session

import "golang.org/x/sys/unix"

// sysOpen is open(2), which arm64 does not have.
const sysOpen = -1

// sysEpollCreate is epoll_create(2), which arm64 does not have.
const sysEpollCreate = -1

// sysAccept is accept(2), which arm64 does not have (accept4 only).
const sysAccept = -1

// arm64 has the path calls only in their *at form.
const (
	sysStat     = -1
	sysLstat    = -1
	sysAccess   = -1
	sysReadlink = -1
	sysUnlink   = -1
	sysRmdir    = -1
	sysMkdir    = -1
	sysRename   = -1
	sysRenameat = unix.SYS_RENAMEAT
)
