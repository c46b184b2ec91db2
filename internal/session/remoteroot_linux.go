package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/wire"
)

// lookupTTL is how long a lookup of a path stands before the next open of it asks again: a
// target's file that changes (a ConfigMap update) is seen within that time.
const lookupTTL = time.Second

// RemoteRoot gives the program the files of a target that is not on this machine (a pod in a
// cluster), where no descriptor can be passed: a copy of the target's names under a staging
// directory of this machine, made as the program reaches them. Each open first asks the agent
// to resolve the path (wire.Lookup) and creates every name the resolution visited, with the
// target's type, permissions, size and modification time (and owner, when doppel is root); a
// directory's entries come with it, so listing works. A regular file is created sparse with the
// target's size, and its content is fetched the first time it is opened for reading. Paths are
// then opened inside the staging directory with openat2(RESOLVE_IN_ROOT), which resolves them
// as the target does. Opens that write are refused (EROFS): the copy is read-only. A RemoteRoot
// lives as long as the session; Close removes the staging directory.
type RemoteRoot struct {
	client *Client
	dir    string
	root   int // O_PATH descriptor of dir
	owners bool

	mu       sync.Mutex
	looked   map[string]time.Time   // path -> when it was last looked up
	staged   map[string]wire.Entry  // path -> what the target said of it when it was staged
	fetched  map[uint64]bool        // inode of a staged regular file -> its content is here
	files    map[uint64]string      // inode of a staged regular file -> its target path
	gen      map[uint64]uint64      // inode -> how many times the target's file was seen to change
	fetching map[uint64]*sync.Mutex // inode -> held while its content is fetched
}

// NewRemoteRoot makes a staging directory under parent ("" for the system's temporary
// directory) for the files of c's target.
func NewRemoteRoot(c *Client, parent string) (*RemoteRoot, error) {
	dir, err := os.MkdirTemp(parent, "doppel-root-")
	if err != nil {
		return nil, fmt.Errorf("staging directory for the target's files: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &RemoteRoot{client: c, dir: dir, root: fd, owners: os.Geteuid() == 0,
		looked: map[string]time.Time{}, staged: map[string]wire.Entry{}, fetched: map[uint64]bool{}, files: map[uint64]string{},
		gen: map[uint64]uint64{}, fetching: map[uint64]*sync.Mutex{}}, nil
}

// Dir is the staging directory.
func (r *RemoteRoot) Dir() string { return r.dir }

// Close removes the staging directory.
func (r *RemoteRoot) Close() error {
	unix.Close(r.root)
	return os.RemoveAll(r.dir)
}

// Open opens p of the target with open(2)'s flags, as FilesOptions.Open.
func (r *RemoteRoot) Open(ctx context.Context, p string, flags, mode uint32) (*os.File, error) {
	if writes(int(flags)) {
		return nil, unix.EROFS
	}
	p = path.Clean("/" + p)
	errno, err := r.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	if errno != 0 && flags&unix.O_NOFOLLOW == 0 {
		return nil, errno
	}
	fd, err := unix.Openat2(r.root, p, &unix.OpenHow{
		Flags:   uint64(flags) | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	if flags&unix.O_PATH == 0 {
		if err := r.fill(ctx, fd); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// lookup asks the agent to resolve p, unless it did within lookupTTL, and stages what it
// visited. It returns the resolution's errno.
func (r *RemoteRoot) lookup(ctx context.Context, p string) (unix.Errno, error) {
	r.mu.Lock()
	at, ok := r.looked[p]
	r.mu.Unlock()
	if ok && time.Since(at) < lookupTTL {
		return 0, nil
	}
	res, err := r.client.Lookup(ctx, p)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range res.Entries {
		if !validEntry(e) {
			return 0, fmt.Errorf("the agent's lookup of %s names %q, not a clean absolute path", p, e.Path)
		}
		if err := r.stage(e); err != nil {
			return 0, fmt.Errorf("stage %s of the target: %w", e.Path, err)
		}
	}
	now := time.Now()
	if res.Errno == 0 {
		r.looked[p] = now
	}
	// A directory's regular files need no lookup of their own until the TTL passes:
	// their lstat came with the listing.
	for _, e := range res.Entries {
		if e.Mode&unix.S_IFMT == unix.S_IFREG {
			r.looked[e.Path] = now
		}
	}
	return unix.Errno(res.Errno), nil
}

// validEntry says whether e names a path that stays inside the staging directory: clean and
// absolute. An agent that sends anything else is broken or hostile.
func validEntry(e wire.Entry) bool {
	return path.IsAbs(e.Path) && path.Clean(e.Path) == e.Path && !strings.ContainsRune(e.Path, 0)
}

// stage creates (or updates) e under the staging directory. Its parent is already staged: a
// lookup lists every name on the way first.
func (r *RemoteRoot) stage(e wire.Entry) error {
	if e.Path == "/" {
		return nil
	}
	if old, ok := r.staged[e.Path]; ok && old == e {
		return nil
	}
	dir, name := path.Split(e.Path)
	dfd, err := unix.Openat2(r.root, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	old, had := r.staged[e.Path]
	if had && old.Mode&unix.S_IFMT != e.Mode&unix.S_IFMT || had && old.Link != e.Link {
		if err := removeAt(dfd, name); err != nil {
			return err
		}
		had = false
	}
	perm := e.Mode & 0o7777
	switch e.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if !had {
			if err := unix.Mkdirat(dfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
		}
		if !r.owners {
			perm |= 0o700 // doppel itself creates the directory's entries
		}
	case unix.S_IFLNK:
		if !had {
			if err := unix.Symlinkat(e.Link, dfd, name); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
		}
	default: // regular files; anything else is staged as an empty regular file
		size := e.Size
		if e.Mode&unix.S_IFMT != unix.S_IFREG {
			size = 0
		}
		fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		if err == nil && (!had || old.Size != e.Size || old.Mtime != e.Mtime) {
			// New or changed on the target: the content is fetched again at the next open.
			if err = unix.Ftruncate(fd, 0); err == nil {
				err = unix.Ftruncate(fd, size)
			}
			delete(r.fetched, st.Ino)
			r.gen[st.Ino]++
		}
		if err == nil {
			r.files[st.Ino] = e.Path
			if size == 0 {
				r.fetched[st.Ino] = true
			}
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
		if !r.owners {
			perm |= 0o600 // doppel itself writes the content and reads it for the program
		}
	}
	if e.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(dfd, name, perm, 0); err != nil {
			return err
		}
	}
	if r.owners {
		if err := unix.Fchownat(dfd, name, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	mtime := unix.NsecToTimespec(e.Mtime)
	unix.UtimesNanoAt(dfd, name, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	r.staged[e.Path] = e
	return nil
}

func removeAt(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
		// A directory: remove its staged tree through the path (nothing in it is a mount).
		return os.RemoveAll(fmt.Sprintf("/proc/self/fd/%d/%s", dfd, name))
	}
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// fill fetches the content of the staged regular file open at fd, unless it is here already.
func (r *RemoteRoot) fill(ctx context.Context, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return err
	}
	r.mu.Lock()
	p, ok := r.files[st.Ino]
	if r.fetched[st.Ino] || !ok {
		r.mu.Unlock()
		return nil
	}
	// One fetch per file at a time (a second open of it waits for the first), while lookups
	// and other files go on.
	lock := r.fetching[st.Ino]
	if lock == nil {
		lock = new(sync.Mutex)
		r.fetching[st.Ino] = lock
	}
	r.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()
	r.mu.Lock()
	done, gen := r.fetched[st.Ino], r.gen[st.Ino]
	r.mu.Unlock()
	if done {
		return nil
	}
	w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := r.client.CopyFile(ctx, p, w); err != nil {
		var re *wire.RemoteError
		if errors.As(err, &re) {
			return unix.Errno(re.Errno)
		}
		return err
	}
	r.mu.Lock()
	if r.gen[st.Ino] != gen {
		// The target's file changed while it was fetched: the next open fetches it again.
		r.mu.Unlock()
		return nil
	}
	r.fetched[st.Ino] = true
	// Writing the content set the modification time: give it back the target's.
	mtime := unix.NsecToTimespec(r.staged[p].Mtime)
	r.mu.Unlock()
	return unix.UtimesNanoAt(int(w.Fd()), "", []unix.Timespec{mtime, mtime}, unix.AT_EMPTY_PATH)
}
