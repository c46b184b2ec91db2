package agent

import (
	"encoding/json"
	"errors"
	"net"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/wire"
)

// Bounds of a lookup: symbolic links followed (as the kernel's), directory entries returned.
const (
	maxSymlinks      = 40
	maxLookupEntries = 4096
)

// lookup serves a KindLookup stream: the resolution of p inside the target's root.
func (a *agent) lookup(st net.Conn, p string) {
	res := lookupPath(a.target.rootfd, p)
	if reply(st, nil) != nil {
		return
	}
	json.NewEncoder(st).Encode(res)
}

// lookupPath resolves p inside root name by name, as open(2) does with RESOLVE_IN_ROOT ("..",
// and absolute symbolic links, stay inside root; a last symbolic link is followed), and
// returns every name it visited. A client that creates those names under a directory of its
// own resolves p there the same way.
func lookupPath(root int, p string) wire.Lookup {
	var res wire.Lookup
	seen := map[string]bool{}
	add := func(e wire.Entry) {
		if !seen[e.Path] {
			seen[e.Path] = true
			res.Entries = append(res.Entries, e)
		}
	}
	rest := strings.Split(p, "/")
	cur, links := "/", 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		e, err := lstatIn(root, next)
		if err != nil {
			res.Errno = int(errnoOf(err))
			return res
		}
		add(e)
		switch e.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			if links++; links > maxSymlinks {
				res.Errno = int(unix.ELOOP)
				return res
			}
			if path.IsAbs(e.Link) {
				cur = "/"
			}
			rest = append(strings.Split(e.Link, "/"), rest...)
			continue
		case unix.S_IFDIR:
		default:
			if moreNames(rest) {
				res.Errno = int(unix.ENOTDIR)
				return res
			}
		}
		cur = next
	}
	e, err := lstatIn(root, cur)
	if err != nil {
		res.Errno = int(errnoOf(err))
		return res
	}
	add(e)
	if e.Mode&unix.S_IFMT == unix.S_IFDIR {
		res.Truncated = listDir(root, cur, add)
	}
	return res
}

// moreNames says whether names hold a name other than "" and ".".
func moreNames(names []string) bool {
	for _, n := range names {
		if n != "" && n != "." {
			return true
		}
	}
	return false
}

// lstatIn is lstat(2) of p (which has no symbolic link before its last name) inside root.
func lstatIn(root int, p string) (wire.Entry, error) {
	fd, err := unix.Openat2(root, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return wire.Entry{}, err
	}
	defer unix.Close(fd)
	return entryAt(fd, "", p)
}

// entryAt reads the entry name of directory dirfd ("" for dirfd itself) as lstat does.
func entryAt(dirfd int, name, p string) (wire.Entry, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW|unix.AT_EMPTY_PATH); err != nil {
		return wire.Entry{}, err
	}
	e := wire.Entry{Path: p, Mode: st.Mode, UID: st.Uid, GID: st.Gid, Size: st.Size, Mtime: st.Mtim.Nano()}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return wire.Entry{}, err
		}
		e.Link = string(buf[:n])
	}
	return e, nil
}

// listDir adds the entries of directory dir; it returns true when there were more than
// maxLookupEntries.
func listDir(root int, dir string, add func(wire.Entry)) bool {
	fd, err := unix.Openat2(root, dir, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	buf := make([]byte, 32<<10)
	count := 0
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n <= 0 {
			return false
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if count++; count > maxLookupEntries {
				return true
			}
			e, err := entryAt(fd, name, path.Join(dir, name))
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			if err == nil {
				add(e)
			}
		}
	}
}
