package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/session"
)

// A RemoteRoot against a real agent whose target is this process: the target's files are the
// test's temporary tree, laid out as Kubernetes mounts a ConfigMap (..data links).
func TestRemoteRoot(t *testing.T) {
	addr, secret, _ := startAgent(t, 5*time.Second)
	c := connect(t, addr, secret)
	tree := t.TempDir()
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tree, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, p), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(tree, p)); err != nil {
			t.Fatal(err)
		}
	}
	write("cfg/..2026_11_26/app.yaml", "level: debug\n")
	link("..2026_11_26", "cfg/..data")
	link("..data/app.yaml", "cfg/app.yaml")
	link(filepath.Join(tree, "cfg"), "abs")
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	write("data/big.bin", string(big))
	os.Chtimes(filepath.Join(tree, "data/big.bin"), time.Unix(1700000000, 0), time.Unix(1700000000, 0))

	root, err := session.NewRemoteRoot(c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := func(p string) string {
		t.Helper()
		f, err := root.Open(ctx, filepath.Join(tree, p), unix.O_RDONLY, 0)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return string(b)
	}

	if got := read("cfg/app.yaml"); got != "level: debug\n" {
		t.Errorf("cfg/app.yaml through ..data = %q", got)
	}
	if got := read("abs/app.yaml"); got != "level: debug\n" {
		t.Errorf("through an absolute link = %q", got)
	}
	if got := read("cfg/../cfg/./..data/app.yaml"); got != "level: debug\n" {
		t.Errorf("with .. and . = %q", got)
	}
	if got := read("data/big.bin"); got != string(big) {
		t.Errorf("big.bin: %d bytes, want %d identical ones", len(got), len(big))
	}

	// Opens of one file at once, while its content is fetched: each reads it whole.
	write("data/second.bin", string(big[:len(big)/2]))
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			f, err := root.Open(ctx, filepath.Join(tree, "data/second.bin"), unix.O_RDONLY, 0)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer f.Close()
			if b, err := io.ReadAll(f); err != nil || !bytes.Equal(b, big[:len(big)/2]) {
				errs <- fmt.Sprintf("%d bytes, %v", len(b), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent open of second.bin: %s", e)
	}

	// A directory lists the target's entries.
	d, err := root.Open(ctx, filepath.Join(tree, "cfg"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"..2026_11_26", "..data", "app.yaml"}) {
		t.Errorf("cfg lists %q, %v", names, err)
	}

	// stat through an O_PATH descriptor: the target's size, permissions and time; a last link
	// itself with O_NOFOLLOW.
	f, err := root.Open(ctx, filepath.Join(tree, "data/big.bin"), unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Fstat(int(f.Fd()), &st)
	f.Close()
	if st.Size != int64(len(big)) || st.Mode&0o777 != 0o640 || st.Mtim.Sec != 1700000000 {
		t.Errorf("big.bin stat: size %d mode %o mtime %d", st.Size, st.Mode&0o777, st.Mtim.Sec)
	}
	f, err = root.Open(ctx, filepath.Join(tree, "cfg/..data"), unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Fstat(int(f.Fd()), &st)
	f.Close()
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("..data with O_NOFOLLOW: mode %o, want a symbolic link", st.Mode)
	}

	for _, c := range []struct {
		path  string
		flags int
		want  error
	}{
		{"missing", unix.O_RDONLY, unix.ENOENT},
		{"cfg/missing/x", unix.O_RDONLY, unix.ENOENT},
		{"cfg/app.yaml/x", unix.O_RDONLY, unix.ENOTDIR},
		{"cfg/app.yaml", unix.O_WRONLY, unix.EROFS},
		{"cfg/new", unix.O_RDONLY | unix.O_CREAT, unix.EROFS},
	} {
		f, err := root.Open(ctx, filepath.Join(tree, c.path), uint32(c.flags), 0o644)
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, c.want) {
			t.Errorf("open %s flags %#x: %v, want %v", c.path, c.flags, err, c.want)
		}
	}

	// A ConfigMap update swaps ..data: the next open after the lookup TTL sees the new content.
	write("cfg/..2026_11_27/app.yaml", "level: info, much longer now\n")
	os.Remove(filepath.Join(tree, "cfg/..data"))
	link("..2026_11_27", "cfg/..data")
	time.Sleep(1100 * time.Millisecond)
	if got := read("cfg/app.yaml"); got != "level: info, much longer now\n" {
		t.Errorf("after the update: %q", got)
	}

	dir := root.Dir()
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging directory %s after Close: %v", dir, err)
	}
}
