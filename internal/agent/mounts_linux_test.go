package agent

import (
	"slices"
	"testing"
)

func TestMountPoints(t *testing.T) {
	mi := "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n" +
		"30 22 0:27 / /etc/shop rw - tmpfs tmpfs rw\n" +
		"31 22 0:28 / /data/with\\040space rw - tmpfs tmpfs rw\n" +
		"short line\n"
	got := mountPoints([]byte(mi))
	want := []string{"/", "/etc/shop", "/data/with space"}
	if !slices.Equal(got, want) {
		t.Errorf("mountPoints: %q, want %q", got, want)
	}
}

func TestOwnMounts(t *testing.T) {
	self := "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n23 22 0:5 / /proc rw - proc proc rw\n"
	target := "40 39 8:1 / / rw - ext4 /dev/sda1 rw\n41 40 0:5 / /proc rw - proc proc rw\n" +
		"42 40 0:30 / /etc/shop rw - tmpfs tmpfs rw\n43 40 8:1 /var/lib/kubelet/pods/x/volumes/secret /var/run/secrets rw - ext4 /dev/sda1 rw\n"
	if got, want := ownMounts([]byte(target), []byte(self)), []string{"/etc/shop", "/var/run/secrets"}; !slices.Equal(got, want) {
		t.Errorf("ownMounts: %q, want %q", got, want)
	}
}
