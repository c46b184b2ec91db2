package intercept

import (
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The parent-death signal of a child fires when the THREAD that forked it exits, and Go ends
// threads whose goroutine exits while locked (a common way to discard a thread after setns).
// So programs are forked from one dedicated thread that never exits.
type forkRequest struct {
	name string
	argv []string
	attr *os.ProcAttr
	done chan forkResult
}

type forkResult struct {
	proc *os.Process
	err  error
}

var (
	forkOnce     sync.Once
	forkRequests chan forkRequest
	// forkerFilters is the number of seccomp filters on the forker thread (usually 0); the
	// program has one more, its descendants at least that many.
	forkerFilters int
)

func forkExec(name string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	forkOnce.Do(func() {
		forkRequests = make(chan forkRequest)
		ready := make(chan struct{})
		go forker(ready)
		<-ready
	})
	req := forkRequest{name: name, argv: argv, attr: attr, done: make(chan forkResult, 1)}
	forkRequests <- req
	res := <-req.done
	return res.proc, res.err
}

func forker(ready chan<- struct{}) {
	runtime.LockOSThread() // for the life of the process
	if st, err := readStatusFile("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/status"); err == nil {
		forkerFilters = max(st.filters, 0)
	}
	close(ready)
	for req := range forkRequests {
		proc, err := os.StartProcess(req.name, req.argv, req.attr)
		req.done <- forkResult{proc, err}
	}
}
