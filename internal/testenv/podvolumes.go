package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// The pod's volumes, as a kubelet mounts them into a container. Each is a mount of its own in
// the pod process's mount namespace only (so it shows in /proc/<pod pid>/mountinfo); none of
// these paths exists on the machine's own file system. Their contents live under Dir.
const (
	// PodSecretDir is the service account secret volume, mounted read-only, in the layout of
	// the kubelet's atomic writer: the files token, ca.crt and namespace in the directory
	// PodSecretTimestampDir, a symlink ..data to that directory, and one symlink per file
	// pointing into ..data ("token -> ..data/token"). The files have mode 0644, not the 0600
	// a kubelet may give the token, so that an unprivileged program can read them through
	// doppel. /var/run is a symlink to /run in the pod (as on the machine), so mountinfo
	// names the mount point /run/secrets/kubernetes.io/serviceaccount, and a path through
	// /proc/<pid>/root must be resolved inside that root (openat2 RESOLVE_IN_ROOT): the
	// kernel would otherwise follow the absolute symlink to the machine's own /run.
	PodSecretDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// PodSecretTimestampDir is the directory ..data points to in PodSecretDir.
	PodSecretTimestampDir = "..2026_11_26_10_00_00.123456789"
	// PodSATokenPath, PodSACACertPath and PodSANamespacePath are the secret's files, holding
	// PodSAToken, PodSACACert and PodNamespace (no trailing newline, as a kubelet writes them).
	PodSATokenPath     = PodSecretDir + "/token"
	PodSACACertPath    = PodSecretDir + "/ca.crt"
	PodSANamespacePath = PodSecretDir + "/namespace"
	// PodSAToken is the service account token: shaped like a JWT, signed by nobody.
	PodSAToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRvcHBlbC10ZXN0In0." +
		"eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMuY2x1c3Rlci5sb2NhbCIsImt1YmVybmV0ZXMuaW8iOnsibmFtZXNwYWNlIjoic2hvcCIsInNlcnZpY2VhY2NvdW50Ijp7Im5hbWUiOiJkZWZhdWx0In19LCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpkZWZhdWx0In0." +
		"bm90LWEtc2lnbmF0dXJl"
	// PodSACACert is the cluster's CA bundle: a PEM block whose body is not a certificate.
	PodSACACert = "-----BEGIN CERTIFICATE-----\n" +
		"ZG9wcGVsIHRlc3QgY2x1c3RlciBDQTogYSBmaXh0dXJlLCBub3QgYSBjZXJ0aWZpY2F0ZQ==\n" +
		"-----END CERTIFICATE-----\n"

	// PodConfigDir is a ConfigMap volume (shop-config), mounted read-only, in the same atomic
	// writer layout as PodSecretDir: app.yaml and feature-flags.json in PodConfigTimestampDir,
	// ..data pointing there and one symlink per file. Files have mode 0644.
	PodConfigDir = "/etc/shop"
	// PodConfigTimestampDir is the directory ..data points to in PodConfigDir.
	PodConfigTimestampDir = "..2026_11_26_10_00_00.987654321"
	// PodAppConfigPath holds PodAppConfig.
	PodAppConfigPath = PodConfigDir + "/app.yaml"
	// PodAppConfig is the shop's configuration file.
	PodAppConfig = "# shop configuration, from the ConfigMap shop-config\n" +
		"server:\n  port: 8080\n" +
		"database:\n  url: postgres://db.shop:5432/shop\n  pool: 10\n" +
		"features: " + PodFeatureFlagsPath + "\n"
	// PodFeatureFlagsPath holds PodFeatureFlags.
	PodFeatureFlagsPath = PodConfigDir + "/feature-flags.json"
	// PodFeatureFlags is the shop's feature flags.
	PodFeatureFlags = `{"newCheckout": true, "darkMode": false, "maxCartItems": 50}` + "\n"

	// PodDataDir is a plain data volume, mounted read-write: PodBigFilePath, the symlinks
	// PodEscapeAbsPath and PodEscapeRelPath, and the directory PodListDir.
	PodDataDir = "/data"
	// PodBigFilePath is a sparse file of PodBigFileSize bytes: zeros except for markers of
	// PodBigFileMarkerSize bytes at the offsets PodBigFileMarkers gives. It takes a few blocks
	// of disk. PodBigFileAt gives any part of it and PodBigFileSHA256 its digest.
	PodBigFilePath = PodDataDir + "/big.bin"
	// PodBigFileSize is the length of PodBigFilePath: 1 GiB.
	PodBigFileSize = 1 << 30
	// PodBigFileMarkerSize is the length of each marker in PodBigFilePath: 64 lines of 64
	// bytes, each line starting "big.bin@<offset of the marker, 10 digits>:<line, 2 digits> ".
	PodBigFileMarkerSize = 4096
	// PodEscapeAbsPath is a symlink to PodEscapeAbsTarget, an absolute path: resolved inside
	// the pod's root it is the pod's /etc/hostname (PodHostname and a newline); followed
	// naively through /proc/<pid>/root it is the machine's.
	PodEscapeAbsPath   = PodDataDir + "/escape-abs"
	PodEscapeAbsTarget = "/etc/hostname"
	// PodEscapeRelPath is a symlink to PodEscapeRelTarget, which climbs above the root: ".."
	// stops at the pod's root, so it too is the pod's /etc/hostname, also followed through
	// /proc/<pid>/root (the pod's root is the top of its mount namespace).
	PodEscapeRelPath   = PodDataDir + "/escape-rel"
	PodEscapeRelTarget = "../../../../../../etc/hostname"
	// PodListDir is a directory holding the small files of PodListFiles, for listing tests.
	PodListDir = PodDataDir + "/dir"

	// PodWritableDir is an empty volume, mounted read-write, owned by root with mode 0777, for
	// tests that write to the target.
	PodWritableDir = "/var/lib/shop"
)

// PodListFiles returns the names and contents of the files in PodListDir (mode 0644).
func PodListFiles() map[string]string {
	return map[string]string{"alpha.txt": "alpha\n", "bravo.txt": "bravo\n", "charlie.txt": "charlie\n"}
}

// podVolume is one of the pod's volumes: a directory under Dir bind-mounted at mountPoint in
// the pod's mount namespace.
type podVolume struct {
	source     string // under Dir()/volumes
	mountPoint string
	mode       string // "ro" or "rw"
}

var podVolumes = []podVolume{
	{"serviceaccount", PodSecretDir, "ro"},
	{"shop-config", PodConfigDir, "ro"},
	{"data", PodDataDir, "rw"},
	{"shop-state", PodWritableDir, "rw"},
}

// makeVolumes writes the contents of the pod's volumes under tp.dir/volumes, and the empty
// directories the pod's start script mounts its root on.
func (tp *Topology) makeVolumes() {
	tp.t.Helper()
	vol := filepath.Join(tp.dir, "volumes")
	for _, d := range []string{"podfs", "rootfs", "volumes"} {
		if err := os.Mkdir(filepath.Join(tp.dir, d), 0o755); err != nil {
			tp.t.Fatal(err)
		}
	}
	err := writeAtomicVolume(filepath.Join(vol, "serviceaccount"), PodSecretTimestampDir, map[string]string{
		"token": PodSAToken, "ca.crt": PodSACACert, "namespace": PodNamespace,
	})
	if err == nil {
		err = writeAtomicVolume(filepath.Join(vol, "shop-config"), PodConfigTimestampDir, map[string]string{
			"app.yaml": PodAppConfig, "feature-flags.json": PodFeatureFlags,
		})
	}
	if err == nil {
		err = writeDataVolume(filepath.Join(vol, "data"))
	}
	if err == nil {
		err = mkdirMode(filepath.Join(vol, "shop-state"), 0o777)
	}
	if err != nil {
		tp.t.Fatalf("make the pod's volumes: %v", err)
	}
}

// writeAtomicVolume lays out files in dir as the kubelet's atomic writer does: the files in
// dir/tsDir, a symlink dir/..data -> tsDir, and a symlink dir/<name> -> ..data/<name> each.
func writeAtomicVolume(dir, tsDir string, files map[string]string) error {
	if err := mkdirMode(dir, 0o755); err != nil {
		return err
	}
	if err := mkdirMode(filepath.Join(dir, tsDir), 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := writeFileMode(filepath.Join(dir, tsDir, name), content, 0o644); err != nil {
			return err
		}
	}
	if err := os.Symlink(tsDir, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		if err := os.Symlink("..data/"+name, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func writeDataVolume(dir string) error {
	if err := mkdirMode(dir, 0o755); err != nil {
		return err
	}
	if err := writeBigFile(filepath.Join(dir, filepath.Base(PodBigFilePath))); err != nil {
		return err
	}
	if err := os.Symlink(PodEscapeAbsTarget, filepath.Join(dir, filepath.Base(PodEscapeAbsPath))); err != nil {
		return err
	}
	if err := os.Symlink(PodEscapeRelTarget, filepath.Join(dir, filepath.Base(PodEscapeRelPath))); err != nil {
		return err
	}
	list := filepath.Join(dir, filepath.Base(PodListDir))
	if err := mkdirMode(list, 0o755); err != nil {
		return err
	}
	for name, content := range PodListFiles() {
		if err := writeFileMode(filepath.Join(list, name), content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mkdirMode makes dir with exactly mode, whatever the umask.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// writeFileMode writes a new file with exactly mode, whatever the umask.
func writeFileMode(path, content string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// writeBigFile makes PodBigFilePath's content at path: a hole of PodBigFileSize bytes
// (ftruncate) with the markers written into it, so it takes a few blocks and no time.
func writeBigFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = f.Truncate(PodBigFileSize)
	for _, off := range PodBigFileMarkers() {
		if err == nil {
			_, err = f.WriteAt(podBigFileMarker(off), off)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// PodBigFileMarkers returns the offsets of the markers in PodBigFilePath: its start, its
// middle (512 MiB) and its last PodBigFileMarkerSize bytes.
func PodBigFileMarkers() []int64 {
	return []int64{0, PodBigFileSize / 2, PodBigFileSize - PodBigFileMarkerSize}
}

// podBigFileMarker returns the marker at off: 64 lines of 64 bytes, each naming off and its
// line number and followed by a pattern shifted by one per line.
func podBigFileMarker(off int64) []byte {
	b := make([]byte, 0, PodBigFileMarkerSize)
	for i := 0; len(b) < PodBigFileMarkerSize; i++ {
		b = fmt.Appendf(b, "big.bin@%010d:%02d ", off, i)
		for j := len(b) % 64; j < 63; j++ {
			b = append(b, podBigPattern[(i+j)%len(podBigPattern)])
		}
		b = append(b, '\n')
	}
	return b
}

// PodBigFileAt returns the n bytes of PodBigFilePath at off, fewer where the file ends.
func PodBigFileAt(off int64, n int) []byte {
	if off < 0 || off >= PodBigFileSize {
		return nil
	}
	n = int(min(int64(n), PodBigFileSize-off))
	p := make([]byte, n)
	podBigFileFill(p, off)
	return p
}

// podBigFileFill writes into p what PodBigFilePath holds at off (p must fit in the file).
func podBigFileFill(p []byte, off int64) {
	clear(p)
	for _, m := range PodBigFileMarkers() {
		if m+PodBigFileMarkerSize <= off || m >= off+int64(len(p)) {
			continue
		}
		marker := podBigFileMarker(m)
		if m >= off {
			copy(p[m-off:], marker)
		} else {
			copy(p, marker[off-m:])
		}
	}
}

// PodBigFileSHA256 returns the SHA-256 of PodBigFilePath's content, in hex, computed from its
// definition (not from the file) the first time it is called: about a second.
func PodBigFileSHA256() string { return podBigFileSHA256() }

var podBigFileSHA256 = sync.OnceValue(func() string {
	h := sha256.New()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < PodBigFileSize; off += int64(len(buf)) {
		podBigFileFill(buf, off)
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))
})

// podStartScript runs as the pod process, in the mount namespace `ip netns exec` made for it,
// and ends as `sleep infinity`. Its arguments: the hostname, Dir, the directory of the pod's
// /etc files (/etc/netns/<pod>), then a source, mount point and "ro" or "rw" per volume.
//
// It gives the pod a root of its own, as a container runtime does, because a volume such as
// /data needs a mount point that the machine's root file system does not have, and making it
// there would change the machine. The root is an overlay: the machine's root file system as
// the lower layer (read-only, seen as it is; later changes to it may or may not show), the
// pod's own changes (mount points, files the pod writes) in a tmpfs of this namespace. /proc,
// /sys and /dev are the namespace's own, and /tmp is the machine's /tmp itself, so that the
// test programs built there run in the pod. After pivot_root the old root is detached, so the
// pod's mountinfo lists what a container's does: /, /proc, /sys, /dev, /tmp, /etc/resolv.conf,
// /etc/hosts, /etc/hostname and the volumes. Mount points are made after pivot_root, so that
// symlinks on their way (/var/run -> /run) resolve inside the pod's root. Everything is
// mounted with -n (no /run/mount/utab) and is private to the namespace: it ends with the pod
// process.
const podStartScript = `set -eu
hostname "$1"
dir=$2 etc=$3
shift 3
mount -n --make-rprivate /
mount -n -t tmpfs -o mode=0755,size=64m podfs "$dir/podfs"
mkdir "$dir/podfs/upper" "$dir/podfs/work"
mount -n -t overlay -o "lowerdir=/,upperdir=$dir/podfs/upper,workdir=$dir/podfs/work" podroot "$dir/rootfs"
root=$dir/rootfs
mount -n --rbind /proc "$root/proc"
mount -n --rbind /sys "$root/sys"
mount -n --rbind /dev "$root/dev"
mount -n --bind /tmp "$root/tmp"
mkdir "$root/.oldroot"
cd "$root"
pivot_root . .oldroot
umount -n -l /.oldroot
rmdir /.oldroot
cd /
for f in "$etc"/*; do
	name=${f##*/}
	[ -e "/etc/$name" ] || touch "/etc/$name"
	mount -n --bind "$f" "/etc/$name"
done
while [ $# -ge 3 ]; do
	mkdir -p "$2"
	mount -n --bind "$1" "$2"
	if [ "$3" = ro ]; then mount -n -o remount,bind,ro "$2"; fi
	shift 3
done
exec sleep infinity
`
