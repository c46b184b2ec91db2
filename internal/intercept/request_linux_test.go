package intercept

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRequestAnswersOnce(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(*Request)
		want   seccompNotifResp
	}{
		{"continue", (*Request).Continue, seccompNotifResp{ID: 7, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}},
		{"return", func(r *Request) { r.Return(-3) }, seccompNotifResp{ID: 7, Val: -3}},
		{"errno", func(r *Request) { r.Errno(syscall.ECONNREFUSED) }, seccompNotifResp{ID: 7, Error: -int32(syscall.ECONNREFUSED)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []seccompNotifResp
			r := &Request{id: 7, reply: func(resp seccompNotifResp) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, resp)
			}}
			tt.answer(r)
			var wg sync.WaitGroup
			for range 10 {
				wg.Go(func() {
					r.Continue()
					r.Return(1)
					r.Errno(syscall.EPERM)
				})
			}
			wg.Wait()
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("replies = %+v, want [%+v]", got, tt.want)
			}
		})
	}
}

func TestRequestConcurrentFirstAnswer(t *testing.T) {
	var mu sync.Mutex
	n := 0
	r := &Request{id: 1, reply: func(seccompNotifResp) { mu.Lock(); n++; mu.Unlock() }}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { r.Return(int64(i)) })
	}
	wg.Wait()
	if n != 1 {
		t.Errorf("%d replies, want 1", n)
	}
}

func TestRequestAccessors(t *testing.T) {
	r := &Request{pid: 42, data: seccompData{Nr: unix.SYS_CONNECT, Args: [6]uint64{1, 2, 3, 4, 5, 6}}}
	if r.Nr() != unix.SYS_CONNECT || r.Pid() != 42 || r.Arg(0) != 1 || r.Arg(5) != 6 {
		t.Errorf("accessors: nr %d pid %d args %d..%d", r.Nr(), r.Pid(), r.Arg(0), r.Arg(5))
	}
	if r.Valid() {
		t.Error("Valid() of a request without supervisor = true")
	}
}

func TestProbe(t *testing.T) {
	feats := Probe()
	if len(feats) == 0 || feats[0].Name != "kernel" || feats[0].Detail == "" {
		t.Fatalf("Probe() = %+v, want the kernel release first", feats)
	}
	for _, f := range feats {
		t.Logf("%-40s %-5s have=%-5v required=%-5v %s", f.Name, f.Kernel, f.Have, f.Required, f.Detail)
	}
	if err := Check(); err != nil {
		t.Skipf("kernel lacks a required feature: %v", err)
	}
}

// TestPidfdCacheDropsGoneThread checks that a cached pidfd serves its thread, and that once the
// thread is gone it is dropped rather than used for another thread given the same id.
func TestPidfdCacheDropsGoneThread(t *testing.T) {
	if !haveThreadPidfd() {
		t.Skip("no PIDFD_THREAD (Linux 6.9)")
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A thread that ends: one locked to a goroutine that returns, unless it is the main thread
	// (which the runtime keeps): then try again.
	var tid int
	var done chan struct{}
	for tid == 0 || tid == os.Getpid() {
		tids := make(chan int)
		done = make(chan struct{})
		go func() {
			runtime.LockOSThread()
			tids <- unix.Gettid()
			<-done
			if unix.Gettid() == os.Getpid() {
				runtime.UnlockOSThread()
			}
		}()
		if tid = <-tids; tid == os.Getpid() {
			close(done)
		}
	}
	pidfd, err := unix.PidfdOpen(tid, unix.PIDFD_THREAD)
	if err != nil {
		t.Fatal(err)
	}
	var c pidfdCache
	defer c.closeAll()
	c.put(tid, pidfd)
	nfd, ok, err := c.getfd(tid, int(f.Fd()))
	if !ok || err != nil {
		t.Fatalf("getfd through the live thread's pidfd: ok %v, err %v", ok, err)
	}
	unix.Close(nfd)
	close(done)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still there", tid)
		}
	}
	if nfd, ok, _ := c.getfd(tid, int(f.Fd())); ok {
		unix.Close(nfd)
		t.Fatal("getfd through a gone thread's pidfd succeeded")
	}
	if _, cached := c.byTID[tid]; cached {
		t.Error("the gone thread's pidfd is still cached")
	}
}
