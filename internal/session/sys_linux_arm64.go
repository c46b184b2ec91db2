package session

// sysOpen is open(2), which arm64 does not have.
const sysOpen = -1

// sysEpollCreate is epoll_create(2), which arm64 does not have.
const sysEpollCreate = -1

// sysAccept is accept(2), which arm64 does not have (accept4 only).
const sysAccept = -1
