package session

import "golang.org/x/sys/unix"

// sysOpen is open(2), which only some architectures have.
const sysOpen = unix.SYS_OPEN

// sysEpollCreate is epoll_create(2), which only some architectures have.
const sysEpollCreate = unix.SYS_EPOLL_CREATE

// sysAccept is accept(2), which only some architectures have (all have accept4).
const sysAccept = unix.SYS_ACCEPT
