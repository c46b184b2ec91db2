//go:build linux && !amd64 && !arm64

package session

// sysOpen and sysEpollCreate are open(2) and epoll_create(2), which the architectures doppel
// has not been built for here are not assumed to have.
const (
	sysOpen        = -1
	sysEpollCreate = -1
)
