package capture

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Probe checks that this kernel and process can open the packet socket and ring a Capture
// uses (AF_PACKET with CAP_NET_RAW, TPACKET_V3: Linux 3.2), without capturing anything.
func Probe() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket (needs CAP_NET_RAW): %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3: %w", err)
	}
	return nil
}
