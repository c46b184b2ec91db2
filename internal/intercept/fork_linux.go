package intercept

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The parent-death signal of a child fires when the THREAD that forked it exits, and Go ends
// threads whose goroutine exits while locked (a common way to discard a thread after setns).
// So programs are forked from one dedicated thread that never exits.
// A program that starts in another network namespace is forked while that thread has entered
// it (a child gets the namespaces of the thread that forks it); the thread enters its own again
// before it forks anything else.
type forkRequest struct {
	name  string
	argv  []string
	attr  *os.ProcAttr
	netns *os.File // nil: the forker's own
	done  chan forkResult
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

func forkExec(name string, argv []string, attr *os.ProcAttr, netns *os.File) (*os.Process, error) {
	forkOnce.Do(func() {
		forkRequests = make(chan forkRequest)
		ready := make(chan struct{})
		go forker(ready)
		<-ready
	})
	req := forkRequest{name: name, argv: argv, attr: attr, netns: netns, done: make(chan forkResult, 1)}
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
		var res forkResult
		if req.netns == nil {
			res.proc, res.err = os.StartProcess(req.name, req.argv, req.attr)
		} else {
			res.proc, res.err = startIn(req)
		}
		req.done <- res
	}
}

// startIn starts req's process from the forker thread while it is in req.netns.
func startIn(req forkRequest) (*os.Process, error) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open this thread's network namespace: %w", err)
	}
	defer own.Close()
	if err := unix.Setns(int(req.netns.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter the target's network namespace: %w", err)
	}
	proc, err := os.StartProcess(req.name, req.argv, req.attr)
	if berr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); berr != nil {
		// Every later program would start in the wrong network: nothing sane goes on.
		panic("intercept: the forker thread cannot enter its own network namespace again: " + berr.Error())
	}
	return proc, err
}
