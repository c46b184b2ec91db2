package session

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/intercept"
)

// TargetFiles are the files the program reads from the target when DNS is on: what a resolver
// and hostname lookups read.
var TargetFiles = []string{"/etc/resolv.conf", "/etc/hosts", "/etc/hostname"}

// onOpen handles open(path, flags, mode) (atFD false) and openat(dirfd, path, flags, mode).
func (r *Redirector) onOpen(q *intercept.Request, atFD bool) {
	if atFD {
		r.serveFile(q, int(int32(q.Arg(0))), q.Arg(1), int(q.Arg(2)), uint32(q.Arg(3)))
		return
	}
	r.serveFile(q, unix.AT_FDCWD, q.Arg(0), int(q.Arg(1)), uint32(q.Arg(2)))
}

func (r *Redirector) onOpenat2(q *intercept.Request) {
	var how unix.OpenHow
	if q.Arg(3) < uint64(unsafe.Sizeof(how)) {
		q.Continue()
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&how)), unsafe.Sizeof(how))
	if q.ReadMem(q.Arg(2), b) != nil {
		q.Continue()
		return
	}
	if how.Resolve != 0 && r.opt.RemoteFiles != nil {
		// Resolution rules of the program's own (RESOLVE_BENEATH and the like) are kept by
		// the kernel only on its own files.
		q.Continue()
		return
	}
	r.serveFile(q, int(int32(q.Arg(0))), q.Arg(1), int(how.Flags), uint32(how.Mode))
}

// serveFile answers an open: the target's resolver files with a sealed, read-only copy, and
// remote paths with the target's file. Any other path continues untouched.
func (r *Redirector) serveFile(q *intercept.Request, dirfd int, pathPtr uint64, flags int, mode uint32) {
	path, err := q.ReadString(pathPtr, 4096)
	if err != nil {
		q.Continue()
		return
	}
	if content, ok := r.opt.Files[path]; ok && flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_DIRECTORY) == 0 {
		r.serveCopy(q, path, content, flags)
		return
	}
	if r.opt.RemoteFiles != nil {
		if abs, class, ok := r.classifyPath(q, dirfd, path); ok && r.openRemote(q, abs, class, flags, mode) {
			return
		}
	}
	q.Continue()
}

// serveCopy answers an open with a sealed, read-only copy of content.
func (r *Redirector) serveCopy(q *intercept.Request, path string, content []byte, flags int) {
	f, err := sealedFile(path, content)
	if err != nil {
		r.log.Warn("serve target file", "path", path, "err", err)
		q.Continue()
		return
	}
	defer f.Close()
	fd, err := q.AddFD(f, flags&unix.O_CLOEXEC != 0)
	if err != nil {
		q.Errno(errnoOf(err))
		return
	}
	r.log.Debug("served target file", "path", path, "rule", "dns", "fd", fd)
	q.Return(int64(fd))
}

// sealedFile returns a read-only file description holding content: a memfd sealed against
// change, reopened read-only.
func sealedFile(name string, content []byte) (*os.File, error) {
	mfd, err := unix.MemfdCreate("doppel:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	m := os.NewFile(uintptr(mfd), name)
	defer m.Close()
	if _, err := m.Write(content); err != nil {
		return nil, err
	}
	seals := unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(m.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", mfd), os.O_RDONLY, 0)
}

// onUname answers uname with the local system's fields and the target's hostname.
func (r *Redirector) onUname(q *intercept.Request) {
	if r.opt.Hostname == "" {
		q.Continue()
		return
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		q.Continue()
		return
	}
	clear(u.Nodename[:])
	copy(u.Nodename[:len(u.Nodename)-1], r.opt.Hostname)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&u)), unsafe.Sizeof(u))
	if err := q.WriteMem(q.Arg(0), b); err != nil {
		q.Errno(unix.EFAULT)
		return
	}
	q.Return(0)
}

// parseNameservers returns the nameserver addresses of a resolv.conf.
func parseNameservers(conf []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// parseHosts returns the names of each address of a hosts file.
func parseHosts(hosts []byte) map[netip.Addr][]string {
	out := make(map[netip.Addr][]string)
	sc := bufio.NewScanner(bytes.NewReader(hosts))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if a, err := netip.ParseAddr(f[0]); err == nil {
			out[a.Unmap()] = append(out[a.Unmap()], f[1:]...)
		}
	}
	return out
}

// learnDNS records the names of the addresses in a DNS answer, so that host name rules can
// route connections to them.
func (r *Redirector) learnDNS(msg []byte) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response {
		return
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return
	}
	answers, err := p.AllAnswers()
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range answers {
		var ip netip.Addr
		switch b := a.Body.(type) {
		case *dnsmessage.AResource:
			ip = netip.AddrFrom4(b.A)
		case *dnsmessage.AAAAResource:
			ip = netip.AddrFrom16(b.AAAA).Unmap()
		default:
			continue
		}
		names := []string{strings.TrimSuffix(a.Header.Name.String(), ".")}
		for _, q := range qs {
			names = append(names, strings.TrimSuffix(q.Name.String(), "."))
		}
		for _, n := range names {
			if !slices.Contains(r.names[ip], n) {
				r.names[ip] = append(r.names[ip], n)
			}
		}
	}
}

func nativeUint32(b []byte) uint32       { return binary.NativeEndian.Uint32(b) }
func putNativeUint32(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }
