package intercept

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel features the design notes (interception.md) list, in the order of the kernels that brought them.
const (
	featUserNotif      = "SECCOMP_RET_USER_NOTIF"
	featNewListener    = "SECCOMP_FILTER_FLAG_NEW_LISTENER"
	featNotifSizes     = "SECCOMP_GET_NOTIF_SIZES"
	featIDValid        = "SECCOMP_IOCTL_NOTIF_ID_VALID"
	featPidfdOpen      = "pidfd_open"
	featContinue       = "SECCOMP_USER_NOTIF_FLAG_CONTINUE"
	featPidfdGetfd     = "pidfd_getfd"
	featTsyncESRCH     = "SECCOMP_FILTER_FLAG_TSYNC_ESRCH"
	featAddfd          = "SECCOMP_IOCTL_NOTIF_ADDFD"
	featAddfdSend      = "SECCOMP_ADDFD_FLAG_SEND"
	featWaitKillable   = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
	featSyncWakeUp     = "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP"
	featPidfdThread    = "PIDFD_THREAD"
	featProcessVMReadv = "process_vm_readv"
)

// Probe reports the kernel features the supervisor uses. The first entry, "kernel", carries the
// release in Detail. Features that can only be tried on a live listener (ioctls, reply flags)
// are inferred from a probed feature of a later kernel, or else from the release.
func Probe() []Feature {
	return append([]Feature(nil), probe()...)
}

var probe = sync.OnceValue(func() []Feature {
	release := kernelRelease()
	feats := []Feature{{Name: "kernel", Have: true, Detail: release}}
	add := func(name, kernel string, required, have bool, detail string) {
		feats = append(feats, Feature{Name: name, Kernel: kernel, Required: required, Have: have, Detail: detail})
	}
	// infer: implied by a probed feature of a later kernel, or by the release.
	infer := func(name, kernel string, required bool, impliedBy string, implied bool) {
		switch {
		case implied:
			add(name, kernel, required, true, "implied by "+impliedBy)
		case releaseAtLeast(release, kernel):
			add(name, kernel, required, true, "inferred from the kernel release")
		default:
			add(name, kernel, required, false, "not probed; kernel release older than "+kernel)
		}
	}

	userNotif, userNotifDetail := probeActionAvail(unix.SECCOMP_RET_USER_NOTIF)
	add(featUserNotif, "5.0", true, userNotif, userNotifDetail)
	newListener, d := probeFilterFlags(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
	add(featNewListener, "5.0", true, newListener, d)
	sizes, err := getNotifSizes()
	if err == nil {
		add(featNotifSizes, "5.0", false, true, "notif "+strconv.Itoa(int(sizes.Notif))+", resp "+strconv.Itoa(int(sizes.NotifResp))+", data "+strconv.Itoa(int(sizes.Data))+" bytes")
	} else {
		add(featNotifSizes, "5.0", false, false, err.Error())
	}
	infer(featIDValid, "5.0", false, featUserNotif, userNotif)

	pidfd, err := unix.PidfdOpen(unix.Getpid(), 0)
	add(featPidfdOpen, "5.3", false, err == nil, errDetail(err))
	tsyncESRCH, tsyncDetail := probeFilterFlags(unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH)
	infer(featContinue, "5.5", true, featTsyncESRCH, tsyncESRCH)
	getfd := false
	getfdDetail := "no pidfd_open"
	if err == nil {
		fd, err := unix.PidfdGetfd(pidfd, pidfd, 0)
		if err == nil {
			unix.Close(fd)
		}
		unix.Close(pidfd)
		getfd, getfdDetail = err == nil, errDetail(err)
	}
	add(featPidfdGetfd, "5.6", true, getfd, getfdDetail)
	add(featTsyncESRCH, "5.7", false, tsyncESRCH, tsyncDetail)
	waitKillable, waitKillableDetail := probeFilterFlags(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
	infer(featAddfd, "5.9", true, featWaitKillable, waitKillable)
	infer(featAddfdSend, "5.14", false, featWaitKillable, waitKillable)
	add(featWaitKillable, "6.0", true, waitKillable, waitKillableDetail)
	threadPidfd, err := unix.PidfdOpen(unix.Getpid(), unix.PIDFD_THREAD)
	if err == nil {
		unix.Close(threadPidfd)
	}
	infer(featSyncWakeUp, "6.6", false, featPidfdThread, err == nil)
	add(featPidfdThread, "6.9", false, err == nil, errDetail(err))

	var word uint64 = 1
	var got uint64
	local := []unix.Iovec{{Base: (*byte)(unsafe.Pointer(&got))}}
	local[0].SetLen(8)
	remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&word)), Len: 8}}
	_, err = unix.ProcessVMReadv(unix.Getpid(), local, remote, 0)
	add(featProcessVMReadv, "3.2", true, err == nil && got == 1, errDetail(err))
	return feats
})

// haveThreadPidfd reports whether pidfd_open accepts PIDFD_THREAD (Linux 6.9). Looked up once:
// every GetRawFD asks.
var haveThreadPidfd = sync.OnceValue(func() bool { return have(featPidfdThread) })

// CanReturnFD reports whether Request.ReturnFD works here (SECCOMP_ADDFD_FLAG_SEND, Linux 5.14).
// Looked up once: the connect and send handlers ask.
var CanReturnFD = sync.OnceValue(func() bool { return have(featAddfdSend) })

func have(name string) bool {
	for _, f := range probe() {
		if f.Name == name {
			return f.Have
		}
	}
	return false
}

// Check returns an *UnsupportedFeatureError for the first required feature the kernel lacks.
func Check() error {
	feats := probe()
	for _, f := range feats {
		if f.Required && !f.Have {
			return &UnsupportedFeatureError{Name: f.Name, MinKernel: f.Kernel, Have: feats[0].Detail}
		}
	}
	if nativeArch == 0 {
		return fmt.Errorf("seccomp filter for %s: %w", runtime.GOARCH, ErrNotSupported)
	}
	return nil
}

func errDetail(err error) string {
	if err != nil {
		return err.Error()
	}
	return "probed"
}

// probeFilterFlags asks seccomp to install a NULL filter with flags: EFAULT means the kernel
// knows the flags (it validates them before reading the filter), EINVAL that it does not.
func probeFilterFlags(flags uintptr) (bool, string) {
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, 0)
	switch errno {
	case unix.EFAULT:
		return true, "probed"
	case unix.EINVAL:
		return false, "flag unknown to the kernel"
	case 0:
		return false, "unexpected success"
	default:
		return false, errno.Error()
	}
}

// probeActionAvail asks seccomp whether it knows a filter return action.
func probeActionAvail(action uint32) (bool, string) {
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	if errno != 0 {
		return false, errno.Error()
	}
	return true, "probed"
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// releaseAtLeast compares the major.minor of a release like "6.18.44-foo" with "5.9".
func releaseAtLeast(release, want string) bool {
	have, ok1 := majorMinor(release)
	min, ok2 := majorMinor(want)
	if !ok1 || !ok2 {
		return false
	}
	return have[0] > min[0] || (have[0] == min[0] && have[1] >= min[1])
}

func majorMinor(v string) ([2]int, bool) {
	var out [2]int
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return out, false
	}
	for i := range 2 {
		digits := parts[i]
		if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = digits[:j]
		}
		n, err := strconv.Atoi(digits)
		if err != nil {
			return out, false
		}
		out[i] = n
	}
	return out, true
}
