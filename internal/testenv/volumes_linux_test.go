package testenv_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/testenv"
)

// TestTopologyVolumes checks the pod's volumes, in the pod (commands run by InPod) and through
// /proc/<pod pid>/root as doppel reads them: the secret and config map in the atomic writer
// layout, the sparse big file and its digest, the symlinks that point out of /data, the
// listing directory, the writable directory, and that the volumes are mounts of the pod's
// mount namespace only. After the topology's cleanup nothing of them is left on the machine.
func TestTopologyVolumes(t *testing.T) {
	testenv.Privileged(t)

	var dir string
	t.Run("up", func(t *testing.T) {
		tp := testenv.NewTopology(t)
		dir = tp.Dir()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pid := tp.PodPID()
		procRoot := "/proc/" + strconv.Itoa(pid) + "/root"
		root, err := unix.Open(procRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Registered after NewTopology's cleanup, so it runs first: the fd would keep the pod's
		// root mounted after the pod is gone.
		t.Cleanup(func() { unix.Close(root) })

		// inPod runs argv in the pod and returns its stdout.
		inPod := func(argv ...string) (string, error) {
			var stderr bytes.Buffer
			cmd := tp.InPod(ctx, argv[0], argv[1:]...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				return string(out), errors.New(strings.TrimSpace(err.Error() + ": " + stderr.String()))
			}
			return string(out), nil
		}

		// The secret's and the config map's files, read as nobody in the pod and in the pod's
		// root from here.
		files := map[string]string{
			testenv.PodSATokenPath:      testenv.PodSAToken,
			testenv.PodSACACertPath:     testenv.PodSACACert,
			testenv.PodSANamespacePath:  testenv.PodNamespace,
			testenv.PodAppConfigPath:    testenv.PodAppConfig,
			testenv.PodFeatureFlagsPath: testenv.PodFeatureFlags,
		}
		for path, want := range files {
			if got, err := inPod(testenv.AsNobody("cat", path)...); err != nil || got != want {
				t.Errorf("cat %s as nobody in the pod = %q, %v; want %q", path, got, err, want)
			}
			if got, err := readInRoot(root, path); err != nil || string(got) != want {
				t.Errorf("%s in the pod's root = %q, %v; want %q", path, got, err, want)
			}
		}

		// The atomic writer layout: ..data -> the timestamped directory, <name> -> ..data/<name>,
		// the files themselves 0644 in the timestamped directory.
		for _, v := range []struct {
			dir, tsDir string
			names      []string
		}{
			{testenv.PodSecretDir, testenv.PodSecretTimestampDir, []string{"ca.crt", "namespace", "token"}},
			{testenv.PodConfigDir, testenv.PodConfigTimestampDir, []string{"app.yaml", "feature-flags.json"}},
		} {
			links := map[string]string{"..data": v.tsDir}
			for _, name := range v.names {
				links[name] = "..data/" + name
			}
			for name, want := range links {
				path := v.dir + "/" + name
				if got, err := inPod("readlink", path); err != nil || got != want+"\n" {
					t.Errorf("readlink %s in the pod = %q, %v; want %q", path, got, err, want)
				}
				if got, err := readlinkInRoot(root, path); err != nil || got != want {
					t.Errorf("readlink %s in the pod's root = %q, %v; want %q", path, got, err, want)
				}
			}
			out, err := inPod("ls", "-A", v.dir)
			if want := strings.Join(append([]string{v.tsDir, "..data"}, v.names...), "\n") + "\n"; err != nil || !sameLines(out, want) {
				t.Errorf("ls -A %s in the pod = %q, %v; want the lines of %q", v.dir, out, err, want)
			}
			for _, name := range v.names {
				path := v.dir + "/" + v.tsDir + "/" + name
				if st, err := statInRoot(root, path); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o7777 != 0o644 {
					t.Errorf("%s in the pod's root: mode %o, %v; want a regular file with mode 0644", path, st.Mode, err)
				}
			}
			// The volume is mounted read-only.
			if out, err := inPod("sh", "-c", "echo x > "+v.dir+"/"+v.tsDir+"/"+v.names[0]); err == nil || !strings.Contains(err.Error(), "Read-only") {
				t.Errorf("writing into %s in the pod as root = %q, %v; want a read-only file system", v.dir, out, err)
			}
		}

		// The big file: 1 GiB, sparse, with the digest PodBigFileSHA256 computes.
		if out, err := inPod("stat", "-c", "%s", testenv.PodBigFilePath); err != nil || out != strconv.Itoa(testenv.PodBigFileSize)+"\n" {
			t.Errorf("stat %s in the pod = %q, %v; want size %d", testenv.PodBigFilePath, out, err, testenv.PodBigFileSize)
		}
		st, err := statInRoot(root, testenv.PodBigFilePath)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != testenv.PodBigFileSize || st.Blocks*512 > 1<<20 {
			t.Errorf("%s in the pod's root: size %d, %d blocks of 512 bytes; want %d bytes in at most 1 MiB of disk",
				testenv.PodBigFilePath, st.Size, st.Blocks, testenv.PodBigFileSize)
		}
		start := time.Now()
		want := testenv.PodBigFileSHA256()
		t.Logf("PodBigFileSHA256 computed in %v", time.Since(start))
		start = time.Now()
		got, err := sha256InRoot(root, testenv.PodBigFilePath)
		t.Logf("sha256 of %s read in %v", testenv.PodBigFilePath, time.Since(start))
		if err != nil || got != want {
			t.Errorf("sha256 of %s in the pod's root = %s, %v; want %s", testenv.PodBigFilePath, got, err, want)
		}
		for _, off := range testenv.PodBigFileMarkers() {
			want := testenv.PodBigFileAt(off, testenv.PodBigFileMarkerSize)
			if !bytes.HasPrefix(want, fmt.Appendf(nil, "big.bin@%010d:00 ", off)) {
				t.Errorf("PodBigFileAt(%d) starts %q; want its marker", off, want[:32])
			}
			got, err := preadInRoot(root, testenv.PodBigFilePath, off, len(want))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("marker at %d of %s: %q..., %v; want %q...", off, testenv.PodBigFilePath, head(got), err, head(want))
			}
		}

		// The symlinks out of /data stay in the pod's root when resolved there; ".." stops at
		// the root even when followed from here, an absolute target does not.
		for _, l := range []struct{ path, target string }{
			{testenv.PodEscapeAbsPath, testenv.PodEscapeAbsTarget},
			{testenv.PodEscapeRelPath, testenv.PodEscapeRelTarget},
		} {
			if got, err := readlinkInRoot(root, l.path); err != nil || got != l.target {
				t.Errorf("readlink %s in the pod's root = %q, %v; want %q", l.path, got, err, l.target)
			}
			if got, err := inPod(testenv.AsNobody("cat", l.path)...); err != nil || got != testenv.PodHostname+"\n" {
				t.Errorf("cat %s in the pod = %q, %v; want the pod's hostname", l.path, got, err)
			}
			if got, err := readInRoot(root, l.path); err != nil || string(got) != testenv.PodHostname+"\n" {
				t.Errorf("%s in the pod's root (RESOLVE_IN_ROOT) = %q, %v; want the pod's hostname", l.path, got, err)
			}
		}
		if got, err := os.ReadFile(procRoot + testenv.PodEscapeRelPath); err != nil || string(got) != testenv.PodHostname+"\n" {
			t.Errorf("%s%s = %q, %v; want the pod's hostname", procRoot, testenv.PodEscapeRelPath, got, err)
		}
		if got, _ := os.ReadFile(procRoot + testenv.PodEscapeAbsPath); string(got) == testenv.PodHostname+"\n" {
			t.Errorf("%s%s, followed by the kernel from here, is the pod's hostname; want the machine's /etc/hostname", procRoot, testenv.PodEscapeAbsPath)
		}

		// The listing directory.
		var names []string
		for name := range testenv.PodListFiles() {
			names = append(names, name)
		}
		slices.Sort(names)
		if out, err := inPod("ls", "-A", testenv.PodListDir); err != nil || out != strings.Join(names, "\n")+"\n" {
			t.Errorf("ls -A %s in the pod = %q, %v; want %q", testenv.PodListDir, out, err, names)
		}
		entries, err := os.ReadDir(procRoot + testenv.PodListDir)
		if err != nil || len(entries) != len(names) {
			t.Errorf("%s%s holds %v, %v; want %q", procRoot, testenv.PodListDir, entries, err, names)
		}
		for name, want := range testenv.PodListFiles() {
			if got, err := readInRoot(root, testenv.PodListDir+"/"+name); err != nil || string(got) != want {
				t.Errorf("%s/%s in the pod's root = %q, %v; want %q", testenv.PodListDir, name, got, err, want)
			}
		}

		// The writable directory: root's, mode 0777, and nobody writes into it in the pod.
		if st, err := statInRoot(root, testenv.PodWritableDir); err != nil || st.Mode&0o7777 != 0o777 || st.Uid != 0 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("%s in the pod's root: mode %o, uid %d, %v; want a directory of root with mode 0777", testenv.PodWritableDir, st.Mode, st.Uid, err)
		}
		probe := testenv.PodWritableDir + "/probe"
		if out, err := inPod(testenv.AsNobody("sh", "-c", "echo written > "+probe)...); err != nil {
			t.Errorf("writing %s as nobody in the pod: %q, %v", probe, out, err)
		}
		if got, err := readInRoot(root, probe); err != nil || string(got) != "written\n" {
			t.Errorf("%s in the pod's root = %q, %v; want %q", probe, got, err, "written\n")
		}

		// The volumes are mounts of the pod's mount namespace, where the paths resolve in the pod
		// (/var/run/secrets/... is /run/secrets/... where /var/run is a symlink to /run); the
		// pod's root is an overlay.
		mounts := readMountinfo(t, "/proc/"+strconv.Itoa(pid)+"/mountinfo")
		for _, v := range []struct {
			path string
			ro   bool
		}{{testenv.PodSecretDir, true}, {testenv.PodConfigDir, true}, {testenv.PodDataDir, false}, {testenv.PodWritableDir, false}} {
			real, err := inPod("readlink", "-f", v.path)
			if err != nil {
				t.Errorf("readlink -f %s in the pod: %v", v.path, err)
				continue
			}
			real = strings.TrimSuffix(real, "\n")
			m, ok := mounts[real]
			if !ok {
				t.Errorf("the pod's mountinfo lacks %s (%s)", real, v.path)
				continue
			}
			if m.ro != v.ro {
				t.Errorf("%s is mounted with %s; want read-only %v", real, m.options, v.ro)
			}
		}
		if m := mounts["/"]; m.fstype != "overlay" {
			t.Errorf("the pod's root is %q, want an overlay", m.fstype)
		}

		// None of it is on the machine's own file system, nor mounted in its namespace.
		for _, path := range []string{
			testenv.PodSecretDir, testenv.PodSATokenPath, "/run/secrets", testenv.PodConfigDir,
			testenv.PodAppConfigPath, testenv.PodDataDir, testenv.PodBigFilePath, testenv.PodWritableDir,
		} {
			host, err := os.Stat(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Errorf("stat %s on the machine: %v", path, err)
				continue
			}
			pod, err := statInRoot(root, path)
			if err == nil && host.Sys().(*unix.Stat_t).Ino == pod.Ino && host.Sys().(*unix.Stat_t).Dev == pod.Dev {
				t.Errorf("%s on the machine is the pod's", path)
			}
		}
		checkNoMounts(t, dir)
		if t.Failed() {
			for _, m := range mounts {
				t.Logf("pod mount: %s %s %s", m.point, m.fstype, m.options)
			}
		}
	})
	if dir == "" {
		t.Fatal("no topology")
	}
	checkNoMounts(t, dir)
	bigFile := filepath.Join(dir, "volumes", "data", filepath.Base(testenv.PodBigFilePath))
	for _, path := range []string{bigFile, dir} {
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v)", path, err)
		}
	}
}

// checkNoMounts fails t if this process's mount namespace has a mount at or below dir.
func checkNoMounts(t *testing.T, dir string) {
	t.Helper()
	for point := range readMountinfo(t, "/proc/self/mountinfo") {
		if point == dir || strings.HasPrefix(point, dir+"/") {
			t.Errorf("%s is mounted on the machine", point)
		}
	}
}

type mountEntry struct {
	point, fstype, options string
	ro                     bool
}

// readMountinfo returns the mounts of a mountinfo file by mount point (the last one mounted
// on a point wins). Mount points with escaped characters are left escaped.
func readMountinfo(t *testing.T, path string) map[string]mountEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mounts := make(map[string]mountEntry)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 6 || sep < 0 || sep+1 >= len(f) {
			t.Fatalf("%s: malformed line %q", path, sc.Text())
		}
		mounts[f[4]] = mountEntry{point: f[4], fstype: f[sep+1], options: f[5], ro: slices.Contains(strings.Split(f[5], ","), "ro")}
	}
	return mounts
}

// openInRoot opens path with the pod's root as "/": symlinks, absolute ones too, and ".."
// resolve inside it, as doppel's agent resolves them.
func openInRoot(root int, path string, flags int) (int, error) {
	fd, err := unix.Openat2(root, path, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return -1, &fs.PathError{Op: "openat2", Path: path, Err: err}
	}
	return fd, nil
}

func readInRoot(root int, path string) ([]byte, error) {
	fd, err := openInRoot(root, path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return io.ReadAll(f)
}

func preadInRoot(root int, path string, off int64, n int) ([]byte, error) {
	fd, err := openInRoot(root, path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	b := make([]byte, n)
	n, err = f.ReadAt(b, off)
	return b[:n], err
}

func sha256InRoot(root int, path string) (string, error) {
	fd, err := openInRoot(root, path, unix.O_RDONLY)
	if err != nil {
		return "", err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readlinkInRoot reads the symlink at path, whose directories resolve inside the pod's root.
func readlinkInRoot(root int, path string) (string, error) {
	fd, err := openInRoot(root, path, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	b := make([]byte, 4096)
	n, err := unix.Readlinkat(fd, "", b)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: path, Err: err}
	}
	return string(b[:n]), nil
}

// statInRoot stats what path resolves to inside the pod's root.
func statInRoot(root int, path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := openInRoot(root, path, unix.O_PATH)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}

// sameLines reports whether a and b hold the same lines in any order.
func sameLines(a, b string) bool {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	slices.Sort(la)
	slices.Sort(lb)
	return slices.Equal(la, lb)
}

func head(b []byte) []byte { return b[:min(len(b), 32)] }
